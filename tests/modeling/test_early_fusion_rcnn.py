"""The early-fusion backbone under Faster R-CNN (configs/DeepLesion/faster_rcnn_R_18_FPN_GN_early_fusion.yaml): it
builds, trains a step on a prepared synthetic DeepLesion, and loads a 2.5D model's checkpoint as documented."""
import io
import os

import torch

import volumetric_attention
from volumetric_attention.data.deeplesion import prepare_deeplesion
from volumetric_attention.data.phantom_deeplesion import write_deeplesion_phantoms
from volumetric_attention.engine import VATrainer

from detectron2.modeling import build_model
from detectron2.modeling.backbone import FPN
from detectron2.modeling.roi_heads import StandardROIHeads

CONFIG_DIR = os.path.join(os.path.dirname(volumetric_attention.__file__), "..", "configs", "DeepLesion")
EARLY_FUSION = os.path.join(CONFIG_DIR, "faster_rcnn_R_18_FPN_GN_early_fusion.yaml")
BASELINE = os.path.join(CONFIG_DIR, "faster_rcnn_R_18_FPN_GN_baseline.yaml")
VA = os.path.join(CONFIG_DIR, "faster_rcnn_R_18_FPN_GN_va_bag3.yaml")
STEM = "backbone.bottom_up.stem.conv1.weight"


def test_config_is_the_va_config_with_the_early_fusion_backbone(tiny_cfg):
    early, va = tiny_cfg(EARLY_FUSION, freeze=False), tiny_cfg(VA, freeze=False)
    assert early.MODEL.BACKBONE.NAME == "build_early_fusion_resnet_fpn_backbone"
    early.MODEL.BACKBONE.NAME = va.MODEL.BACKBONE.NAME
    assert early.dump() == va.dump()


def test_builds_a_faster_rcnn_with_a_widened_stem_and_nothing_else_changed(tiny_cfg):
    model = build_model(tiny_cfg(EARLY_FUSION))
    assert type(model.backbone) is FPN and type(model.roi_heads) is StandardROIHeads
    assert not model.roi_heads.mask_on
    assert model.backbone.bottom_up.stem.conv1.weight.shape[1] == 9 and model.pixel_mean.numel() == 9
    baseline = build_model(tiny_cfg(BASELINE))
    shapes = {n: p.shape for n, p in model.state_dict().items()}
    base_shapes = {n: p.shape for n, p in baseline.state_dict().items()}
    assert shapes.keys() == base_shapes.keys()
    assert [n for n in shapes if shapes[n] != base_shapes[n]] == [STEM]


def test_trains_a_step_on_a_prepared_synthetic_deeplesion(tiny_cfg, tmp_path, monkeypatch):
    """The trainer's own data path: the mapper's 9-channel bags reach every input channel of the stem."""
    monkeypatch.setenv("VA_DATASETS", str(tmp_path))
    source = tmp_path / "DeepLesion"
    write_deeplesion_phantoms(source, num_series=3, seed=1, size=64, slices=16, slice_interval=2.0, noisy_share=0.0)
    ct = tiny_cfg(EARLY_FUSION).INPUT.CT  # prepared as the config expects
    result = prepare_deeplesion(source, tmp_path / "cache" / "deeplesion", ct.HU_WINDOW, ct.SLICE_SPACING,
                                ct.CONTEXT_SLICES, stream=io.StringIO())
    assert result.ok and result.done
    cfg = tiny_cfg(EARLY_FUSION, [
        "DATASETS.TRAIN", "('deeplesion_train',)", "DATASETS.TEST", "()",
        "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", 64,
        "SOLVER.IMS_PER_BATCH", 2, "SOLVER.MAX_ITER", 1, "SOLVER.WARMUP_ITERS", 0, "SOLVER.BASE_LR", 0.01,
        "SOLVER.STEPS", "()", "TEST.EVAL_PERIOD", 0, "DATALOADER.NUM_WORKERS", 0, "MODEL.VA.STATS_PERIOD", 0,
        "OUTPUT_DIR", str(tmp_path / "output")])
    trainer = VATrainer(cfg)
    trainer.resume_or_load(resume=False)
    stem = trainer.model.backbone.bottom_up.stem.conv1.weight
    before = stem.detach().clone()
    trainer.train()
    latest = trainer.storage.latest()
    assert all(torch.isfinite(torch.tensor(latest[k][0])) for k in ("loss_cls", "loss_box_reg", "loss_rpn_cls"))
    moved = (stem.detach() - before).abs().sum(dim=(0, 2, 3))
    assert moved.shape == (9,) and (moved > 0).all()
