"""VA after ROIAlign (LOCATION "RCNN", Table 2e)."""
import os

import pytest
import torch
from detectron2.modeling import build_model

import volumetric_attention
from volumetric_attention.modeling import VolumetricROIPooler

PHANTOM = os.path.join(os.path.dirname(volumetric_attention.__file__), "..", "configs", "Phantom")


def test_va_runs_on_pooled_bag_features_for_box_and_mask(tiny_cfg):
    cfg = tiny_cfg(os.path.join(PHANTOM, "mask_rcnn_R_18_FPN_GN_va_rcnn_bag3.yaml"),
                   ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0])
    model = build_model(cfg).eval()
    heads = model.roi_heads
    assert isinstance(heads.box_pooler, VolumetricROIPooler) and isinstance(heads.mask_pooler, VolumetricROIPooler)
    assert model.backbone.va is None
    seen = {}
    for name in ("box", "mask"):
        va = getattr(heads, f"{name}_pooler").va
        va.register_forward_hook(lambda m, args, out, name=name: seen.update({name: (args[1].shape, out.shape)}))
    with torch.no_grad():
        (result,) = model([{"image": torch.rand(9, 64, 64) * 255, "height": 64, "width": 64}])
    assert len(result["instances"]) > 0
    (bag_shape, out_shape) = seen["box"]
    assert bag_shape[1:] == (3, 32, 7, 7) and out_shape[1:] == (32, 7, 7)
    assert seen["mask"][0][1:] == (3, 32, 14, 14)


def test_va_roi_heads_need_rcnn_location(tiny_cfg):
    with pytest.raises(ValueError, match="LOCATION"):
        build_model(tiny_cfg(os.path.join(PHANTOM, "mask_rcnn_R_18_FPN_GN_va_bag3.yaml"),
                             ["MODEL.ROI_HEADS.NAME", "VAStandardROIHeads"]))
