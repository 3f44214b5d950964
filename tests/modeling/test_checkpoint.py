"""detectron2-format checkpoints of plain detectron2 models load into the VA models with only VA keys missing."""
import os

import pytest
import torch

import volumetric_attention

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

CONFIG_DIR = os.path.join(os.path.dirname(volumetric_attention.__file__), "..", "configs", "Phantom")


def _plain_detectron2_model(tiny_cfg):
    """detectron2's own Mask R-CNN R-FPN (build_resnet_fpn_backbone, StandardROIHeads), 3 input channels."""
    cfg = tiny_cfg(os.path.join(CONFIG_DIR, "mask_rcnn_R_18_FPN_GN_baseline.yaml"),
                   ["MODEL.BACKBONE.NAME", "build_resnet_fpn_backbone"])
    return build_model(cfg)


@pytest.mark.parametrize("config", ["mask_rcnn_R_18_FPN_GN_va_bag3.yaml", "mask_rcnn_R_18_FPN_GN_va_rcnn_bag3.yaml"])
def test_detectron2_checkpoint_loads_with_only_va_keys_missing(tmp_path, tiny_cfg, load_incompatible, config):
    plain = _plain_detectron2_model(tiny_cfg)
    DetectionCheckpointer(plain, save_dir=str(tmp_path)).save("model_final")
    path = str(tmp_path / "model_final.pth")

    model = build_model(tiny_cfg(os.path.join(CONFIG_DIR, config)))
    result = load_incompatible(DetectionCheckpointer(model), path)
    assert not result.unexpected_keys
    assert not result.incorrect_shapes
    assert result.missing_keys and all(".va." in k for k in result.missing_keys), result.missing_keys
    va_params = {n for n, _ in model.named_parameters() if ".va." in n}
    assert set(result.missing_keys) == va_params
    loaded = model.state_dict()
    for k, v in plain.state_dict().items():
        assert torch.equal(loaded[k], v), k


def test_baseline_checkpoint_loads_into_va_model_through_load(tmp_path, tiny_cfg):
    base = build_model(tiny_cfg(os.path.join(CONFIG_DIR, "mask_rcnn_R_18_FPN_GN_baseline.yaml")))
    DetectionCheckpointer(base, save_dir=str(tmp_path)).save("baseline")
    model = build_model(tiny_cfg(os.path.join(CONFIG_DIR, "mask_rcnn_R_18_FPN_GN_va_bag3.yaml")))
    DetectionCheckpointer(model).load(str(tmp_path / "baseline.pth"))
    torch.testing.assert_close(model.backbone.fpn_output2.weight, base.backbone.fpn_output2.weight)


def test_backbone_only_checkpoint_leaves_fpn_heads_and_va_missing(tmp_path, tiny_cfg, load_incompatible):
    """Like an ImageNet R-50: only bottom-up weights; FPN, heads and VA stay missing as usual."""
    plain = _plain_detectron2_model(tiny_cfg)
    state = {"model": {k: v for k, v in plain.state_dict().items() if k.startswith("backbone.bottom_up.")}}
    torch.save(state, tmp_path / "bottom_up.pth")
    model = build_model(tiny_cfg(os.path.join(CONFIG_DIR, "mask_rcnn_R_18_FPN_GN_va_bag3.yaml")))
    result = load_incompatible(DetectionCheckpointer(model), str(tmp_path / "bottom_up.pth"))
    assert not result.unexpected_keys and not result.incorrect_shapes
    assert not any(k.startswith("backbone.bottom_up.") for k in result.missing_keys)
    assert any(".va." in k for k in result.missing_keys)
    assert any(k.startswith("backbone.fpn_") for k in result.missing_keys)
