"""The DeepLesion study's CPU configs (tools/deeplesion_study.sh): one schedule, seed and data for every row, each
row's model as its name says, the synthetic set's soft-tissue window beside real data's DeepLesion window. That every
config builds and trains a step: test_configs.py."""
import os
import re

import pytest

import volumetric_attention
from volumetric_attention import get_va_cfg

CONFIG_DIR = os.path.join(os.path.dirname(volumetric_attention.__file__), "..", "configs", "DeepLesion")
ROOT = os.path.join(os.path.dirname(volumetric_attention.__file__), "..", "..", "..")
ROWS = {
    "baseline": "faster_rcnn_R_18_FPN_GN_baseline.yaml",
    "early_fusion": "faster_rcnn_R_18_FPN_GN_early_fusion.yaml",
    "threedce": "faster_rcnn_R_18_FPN_GN_3dce_bag3.yaml",
    "va": "faster_rcnn_R_18_FPN_GN_va_bag3.yaml",
    "va_context_features": "faster_rcnn_R_18_FPN_GN_va_context_bag3.yaml",
    "dconv_baseline": "faster_rcnn_R_18_FPN_GN_dconv_baseline.yaml",
    "dconv_va_context_features": "faster_rcnn_R_18_FPN_GN_dconv_va_context_bag3.yaml",
}
DEFORM_KEYS = ("DEFORM_ON_PER_STAGE", "DEFORM_MODULATED", "DEFORM_NUM_GROUPS")


def _cfg(name):
    return get_va_cfg(os.path.join(CONFIG_DIR, name))


@pytest.mark.parametrize("row", sorted(ROWS))
def test_rows_share_schedule_seed_data_and_evaluation(row):
    va, cfg = _cfg(ROWS["va"]), _cfg(ROWS[row])
    for key in ("SOLVER", "SEED", "INPUT", "DATASETS", "DATALOADER", "TEST"):
        assert cfg[key] == va[key], key
    for key in ("FPN", "ANCHOR_GENERATOR", "RPN", "ROI_HEADS", "ROI_BOX_HEAD"):
        assert cfg.MODEL[key] == va.MODEL[key], key
    resnets = {k: v for k, v in cfg.MODEL.RESNETS.items() if k not in DEFORM_KEYS}
    assert resnets == {k: v for k, v in va.MODEL.RESNETS.items() if k not in DEFORM_KEYS}


def test_each_row_is_its_model():
    cfgs = {row: _cfg(name) for row, name in ROWS.items()}
    assert not cfgs["baseline"].MODEL.VA.ENABLED
    assert cfgs["early_fusion"].MODEL.BACKBONE.NAME == "build_early_fusion_resnet_fpn_backbone"
    assert cfgs["threedce"].MODEL.BACKBONE.NAME == "build_3dce_resnet_fpn_backbone"
    for row in ("early_fusion", "threedce", "va", "va_context_features"):
        assert cfgs[row].MODEL.VA.ENABLED and cfgs[row].MODEL.VA.BAG_SIZE == 3, row  # the same 9 slices
    for row in ("va", "va_context_features"):
        va = cfgs[row].MODEL.VA
        assert cfgs[row].MODEL.BACKBONE.NAME == "build_va_resnet_fpn_backbone"
        assert va.SIMILARITY == "cosine" and va.GATE_BIAS_INIT == 0.0, row  # gates at 0.5 from scratch
    context = cfgs["va_context_features"].clone()
    assert context.MODEL.VA.CONTEXT_FEATURES and not cfgs["va"].MODEL.VA.CONTEXT_FEATURES
    context.defrost()
    context.MODEL.VA.CONTEXT_FEATURES = False
    assert context.dump() == cfgs["va"].dump()
    # the deformable rows are their plain rows with deformable res3-res5, nothing else
    for row in ("baseline", "va_context_features"):
        deform = cfgs[f"dconv_{row}"].clone()
        assert list(deform.MODEL.RESNETS.DEFORM_ON_PER_STAGE) == [False, True, True, True], row
        deform.defrost()
        deform.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False] * 4
        assert deform.dump() == cfgs[row].dump(), row


def test_synthetic_rows_use_a_soft_tissue_window_real_data_configs_deeplesions():
    for name in ROWS.values():
        cfg = _cfg(name)
        assert tuple(cfg.INPUT.CT.HU_WINDOW) == (-200.0, 300.0) and cfg.MODEL.PIXEL_MEAN[:3] == [120.0] * 3, name
    for name in ("faster_rcnn_R_50_FPN_baseline.yaml", "faster_rcnn_R_50_FPN_va_bag3.yaml"):
        assert tuple(_cfg(name).INPUT.CT.HU_WINDOW) == (-1024.0, 3071.0), name


def test_the_study_script_names_these_configs():
    with open(os.path.join(ROOT, "tools", "deeplesion_study.sh"), encoding="utf-8") as f:
        script = f.read()
    named = dict(re.findall(r"\[(\w+)\]=\$\{C\}(_\w+\.yaml)", script))
    assert {row: "faster_rcnn_R_18_FPN_GN" + suffix for row, suffix in named.items()} == ROWS
