"""The DeepLesion study's rows (tools/deeplesion_study.sh): what each config builds, that the rows' models differ
only in the part the study compares, and that the one data preparation the script runs serves every row. That every
config trains a step: test_configs.py."""
import os
import re

import numpy as np
import pytest
import torch

import volumetric_attention
from volumetric_attention import get_va_cfg
from volumetric_attention.config import bag_size_from_cfg
from volumetric_attention.data.bag import bag_slice_indices
from volumetric_attention.data.cache import make_settings, write_index
from volumetric_attention.data.dataset_checks import DatasetCheckError, check_datasets, datasets_of
from volumetric_attention.data.deeplesion import DEFAULT_HU_WINDOW, DEFAULT_SLICE_SPACING
from volumetric_attention.data.prepare import settings_from_args
from volumetric_attention.modeling import VAFPN, BagConcatFusion, DeformBasicBlock, VolumetricAttention

from detectron2.modeling import build_model
from detectron2.modeling.backbone import FPN

ROOT = os.path.join(os.path.dirname(volumetric_attention.__file__), "..", "..", "..")
SCRIPT = os.path.join(ROOT, "tools", "deeplesion_study.sh")
SIZE = 64


def _script():
    with open(SCRIPT, encoding="utf-8") as f:
        return f.read()


def _rows():
    """{row: config path} as the study script runs them (its CONFIG map, ``${C}`` expanded)."""
    script = _script()
    prefix = re.search(r"^C=(\S+)$", script, re.M).group(1)
    return {row: os.path.join(ROOT, prefix + suffix)
            for row, suffix in re.findall(r"\[(\w+)\]=\$\{C\}(_\w+\.yaml)", script)}


ROWS = _rows()
# row -> the row it extends, and what it adds (the study's description of its rows)
EXTENDS = {
    "early_fusion": "baseline",  # the 9 slices as the stem's input channels
    "threedce": "baseline",  # late fusion of the bag, per FPN level
    "va": "baseline",  # volumetric attention, per FPN level
    "va_context_features": "va",  # plus context features
    "dconv_baseline": "baseline",  # deformable res3-res5
    "dconv_va_context_features": "va_context_features",
}


@pytest.fixture(scope="module")
def models():
    """Each row's model as its config builds it (no size overrides), in eval mode, built once."""
    built = {}

    def get(row):
        if row not in built:
            torch.manual_seed(0)
            built[row] = build_model(get_va_cfg(ROWS[row])).eval()
        return built[row]

    return get


def _bag_input(channels, seed=0):
    return torch.randn(1, channels, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _stem_in(model):
    return model.backbone.bottom_up.stem.conv1.weight.shape[1]


def _shapes(model):
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


def _read_levels(model):
    return set(model.proposal_generator.in_features) | set(model.roi_heads.in_features)


def test_the_script_runs_every_row_tested_here():
    assert set(ROWS) == {"baseline", *EXTENDS}
    assert all(os.path.isfile(p) for p in ROWS.values()), ROWS


def test_each_row_builds_its_backbone(models):
    baseline = models("baseline")
    assert type(baseline.backbone) is VAFPN and baseline.backbone.va is None and _stem_in(baseline) == 3
    early = models("early_fusion")
    assert type(early.backbone) is FPN and _stem_in(early) == 9  # one network, 9 slices at the first conv
    kinds = {"threedce": BagConcatFusion, "va": VolumetricAttention, "va_context_features": VolumetricAttention,
             "dconv_va_context_features": VolumetricAttention}
    for row, kind in kinds.items():
        backbone = models(row).backbone
        assert type(backbone) is VAFPN and backbone.bag_size == 3 and _stem_in(models(row)) == 3, row
        assert all(type(m) is kind for m in backbone.va.values()), row
        if kind is VolumetricAttention:
            assert all((m.context_proj is not None) == ("context" in row) for m in backbone.va.values()), row
    for row in ROWS:
        stages = models(row).backbone.bottom_up.stages
        deformable = [all(isinstance(b, DeformBasicBlock) for b in s) for s in stages]
        assert not any(isinstance(b, DeformBasicBlock) for s, d in zip(stages, deformable) if not d for b in s), row
        assert deformable == ([False, True, True, True] if row.startswith("dconv") else [False] * 4), row


@pytest.mark.parametrize("row", ["threedce", "va", "va_context_features"])
def test_the_bag_reaches_every_level_the_detector_reads(models, row):
    model = models(row)
    backbone = model.backbone
    assert set(backbone.va) == set(backbone.va_levels) == _read_levels(model)
    if row == "threedce":
        for m in backbone.va.values():  # a trained fusion: at init it passes the target's map through
            torch.nn.init.normal_(m.reduce.weight, std=0.05)
    x = _bag_input(9)
    other_context = x.clone()
    other_context[:, :3] = _bag_input(3, seed=1)  # another slice above the target, the target's slices kept
    with torch.no_grad():
        a, b = backbone(x), backbone(other_context)
        target_only = backbone.extract_features(x[:, 3:6])
    for level in sorted(_read_levels(model)):
        assert float((a[level] - b[level]).abs().max()) > 1e-4, (row, level)
        assert float((a[level] - target_only[level]).abs().max()) > 1e-4, (row, level)


def test_baseline_sees_the_target_image_and_early_fusion_the_whole_bag(models):
    baseline, early = models("baseline"), models("early_fusion")
    assert baseline.pixel_mean.numel() == 3 and early.pixel_mean.numel() == 9
    x = _bag_input(9)
    other_context = x.clone()
    other_context[:, 6:] = _bag_input(3, seed=2)
    with torch.no_grad():
        a, b = early.backbone(x), early.backbone(other_context)
    assert set(a) >= _read_levels(early)
    for level in _read_levels(early):
        assert float((a[level] - b[level]).abs().max()) > 1e-4, level


def _non_learned(model):
    """What a model does besides its parameters: anchors, sampling, NMS, pooling, detections kept, input scale."""
    rpn, heads = model.proposal_generator, model.roi_heads
    predictor = heads.box_predictor
    pooler = heads.box_pooler
    return {
        "anchors": [a.tolist() for a in rpn.anchor_generator.cell_anchors],
        "rpn": (rpn.in_features, rpn.pre_nms_topk, rpn.post_nms_topk, rpn.nms_thresh, rpn.batch_size_per_image,
                rpn.positive_fraction, rpn.min_box_size),
        "roi": (heads.in_features, heads.batch_size_per_image, heads.positive_fraction, heads.num_classes),
        "pooler": (pooler.output_size, [float(m.spatial_scale) for m in pooler.level_poolers],
                   type(pooler.level_poolers[0]).__name__),
        "test": (predictor.test_score_thresh, predictor.test_nms_thresh, predictor.test_topk_per_image),
        # per slice of a 2.5D image: every row normalises each slice alike
        "pixels": [t.view(-1, 3).unique(dim=0).tolist() for t in (model.pixel_mean, model.pixel_std)],
        "size_divisibility": model.backbone.size_divisibility,
    }


def test_rows_differ_from_the_row_they_extend_only_in_the_studied_part(models):
    reference = _non_learned(models("baseline"))
    for row in ROWS:
        assert _non_learned(models(row)) == reference, row
    for row, base in EXTENDS.items():
        shapes, base_shapes = _shapes(models(row)), _shapes(models(base))
        added = set(shapes) - set(base_shapes)
        assert set(base_shapes) <= set(shapes), row  # nothing removed
        changed = [n for n in base_shapes if shapes[n] != base_shapes[n]]
        levels = _read_levels(models(row))
        if row == "early_fusion":
            assert not added and changed == ["backbone.bottom_up.stem.conv1.weight"]
            assert shapes[changed[0]][1] == 3 * base_shapes[changed[0]][1]
            continue
        assert not changed, row
        if row in ("threedce", "va"):
            assert added and {n.split(".")[2] for n in added} == levels, row
            assert all(n.startswith("backbone.va.") for n in added), row
        elif row == "va_context_features":
            assert added == {f"backbone.va.{f}.context_proj.{p}" for f in levels for p in ("weight", "bias")}
        else:  # deformable: an offset conv for the second conv of every res3-res5 block
            blocks = {n.rsplit(".conv2_offset.", 1)[0] for n in added}
            assert all(".conv2_offset." in n for n in added), row
            assert blocks == {f"backbone.bottom_up.res{s}.{i}" for s in (3, 4, 5) for i in range(2)}, row


@pytest.mark.parametrize("row", ["va_context_features", "dconv_baseline", "dconv_va_context_features", "threedce"])
def test_an_extended_row_starts_as_the_row_it_extends(models, row):
    """With the reference row's weights, the extension computes what the reference computes at init (zero context
    projection, zero offsets, identity fusion): the rows compare what training makes of the added part."""
    base = models(EXTENDS[row])
    model = build_model(get_va_cfg(ROWS[row])).eval()
    result = model.load_state_dict(base.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert set(result.missing_keys) == set(_shapes(model)) - set(_shapes(base))
    bag = _bag_input(9)
    x, x_base = (bag if m.pixel_mean.numel() == 9 else bag[:, 3:6] for m in (model, base))  # the target's slices
    with torch.no_grad():
        out = model.backbone(x)
        expected = base.backbone(x_base)
    for level in _read_levels(model):
        torch.testing.assert_close(out[level], expected[level], rtol=1e-4, atol=1e-4)
    # control: the added part matters once it is not at its initial value
    added = [p for n, p in model.named_parameters() if n in set(result.missing_keys)]
    with torch.no_grad():
        for p in added:
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3)) * 0.1)
        moved = model.backbone(x)
    assert max(float((moved[f] - expected[f]).abs().max()) for f in _read_levels(model)) > 1e-3


def test_one_data_preparation_serves_every_row(tmp_path, monkeypatch, load_tool):
    """The script prepares the cache once, with one row's config (make_phantoms --config-file): every row accepts
    that cache, and its bags stay within the context slices prepared around each key slice."""
    prepared_row = re.search(r'--config-file "\$\{CONFIG\[(\w+)\]\}"', _script()).group(1)
    args = load_tool("make_phantoms").build_parser().parse_args(
        ["--layout", "deeplesion", "--config-file", ROWS[prepared_row]])
    hu_window, slice_spacing, prep_cfg = settings_from_args(args, DEFAULT_HU_WINDOW, DEFAULT_SLICE_SPACING)
    monkeypatch.setenv("VA_DATASETS", str(tmp_path))
    cases = [{"case_id": f"s{i}", "split": split} for i, split in enumerate(("train", "val", "test"))]
    write_index(str(tmp_path / "cache" / "deeplesion"), cases, make_settings(hu_window, slice_spacing))
    context = prep_cfg.INPUT.CT.CONTEXT_SLICES
    for row, path in ROWS.items():
        cfg = get_va_cfg(path)
        check_datasets(cfg, datasets_of(cfg))  # raises for a cache prepared with other settings
        z = 50
        reach = np.abs(bag_slice_indices(z, 101, bag_size_from_cfg(cfg)) - z).max()
        assert reach <= context, row
    # control: a row configured with real DeepLesion's window is refused that cache
    cfg = get_va_cfg(ROWS["va"], ["INPUT.CT.HU_WINDOW", DEFAULT_HU_WINDOW])
    with pytest.raises(DatasetCheckError, match="hu_window"):
        check_datasets(cfg, datasets_of(cfg))


def test_rows_share_schedule_seed_data_and_evaluation():
    va = get_va_cfg(ROWS["va"])
    for row, path in ROWS.items():
        cfg = get_va_cfg(path)
        for key in ("SOLVER", "SEED", "INPUT", "DATASETS", "DATALOADER", "TEST"):
            assert cfg[key] == va[key], (row, key)
