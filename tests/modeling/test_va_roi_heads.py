"""VA after ROIAlign (LOCATION "RCNN", Table 2e)."""
import os

import pytest
import torch
from torchvision.ops import roi_align

import volumetric_attention
from volumetric_attention.modeling import BAG_SUFFIX, VolumetricAttention, VolumetricROIPooler

from detectron2.modeling import build_model
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes

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


def _varying_va(channels, context_features=False):
    """A VA module whose gates depend on the bag (bias 0, wide weights), so its output tells the bags apart."""
    va = VolumetricAttention(channels, reduction=2, kernel_size=3, gate_bias_init=0.0, gate_weight_std=0.5,
                             context_features=context_features)
    if context_features:
        torch.nn.init.normal_(va.context_proj.weight, std=0.2)
    return va.eval()


def _assert_differs(a, b, what):
    assert float((a - b).abs().max()) > 1e-3, what


@pytest.mark.parametrize("bag_size", [3, 5])
def test_pooler_attends_the_pooled_middle_member_over_the_pooled_bag(bag_size):
    torch.manual_seed(1)
    channels, stride, size = 8, 4, 64
    features = [torch.randn(2, bag_size, channels, size // stride, size // stride)]  # one level, 2 images
    boxes = [Boxes(torch.tensor([[3.0, 5.0, 40.0, 31.0], [10.0, 12.5, 60.0, 63.0], [0.0, 0.0, 64.0, 64.0]])),
             Boxes(torch.tensor([[20.0, 4.0, 35.0, 50.0], [7.5, 30.0, 29.0, 44.0]]))]
    va = _varying_va(channels, context_features=True)
    pooler = VolumetricROIPooler(
        ROIPooler(output_size=7, scales=(1.0 / stride,), sampling_ratio=0, pooler_type="ROIAlignV2"), va, bag_size)
    with torch.no_grad():
        out = pooler(features, boxes)
        # independently: torchvision's ROIAlign (aligned, adaptive sampling) of every member, then VA on the middle
        pooled = torch.stack([roi_align(features[0][:, k].contiguous(), [b.tensor for b in boxes], output_size=7,
                                        spatial_scale=1.0 / stride, sampling_ratio=0, aligned=True)
                              for k in range(bag_size)], dim=1)
        assert pooled.shape == (5, bag_size, channels, 7, 7)
        target = bag_size // 2
        torch.testing.assert_close(out, va(pooled[:, target], pooled), rtol=1e-5, atol=1e-5)
        # controls: the test tells another target member, and no attention, from the right output
        for k in range(bag_size):
            if k != target:
                _assert_differs(out, va(pooled[:, k], pooled), f"member {k} as the target gives the same output")
        _assert_differs(out, pooled[:, target], "VA left the pooled target unchanged")
        _assert_differs(out, va(pooled[:, target], pooled[:, [target] * bag_size]), "the bag's other members unused")


def test_rcnn_heads_attend_each_proposal_over_the_backbone_bag_of_its_slices(tiny_cfg):
    """In the built model the box pooler's output is VA over the bag pooled from each 2.5D image's own features."""
    cfg = tiny_cfg(os.path.join(PHANTOM, "mask_rcnn_R_18_FPN_GN_va_rcnn_bag3.yaml"),
                   ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "MODEL.VA.GATE_BIAS_INIT", 0.0,
                    "MODEL.VA.GATE_WEIGHT_STD", 0.5])
    model = build_model(cfg).eval()
    heads = model.roi_heads
    n = heads.box_pooler.bag_size
    seen = {}
    heads.box_pooler.register_forward_hook(lambda m, args, out: seen.update(args=args, out=out))
    image = torch.rand(3 * n, 64, 64, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        model([{"image": image, "height": 64, "width": 64}])
        x, box_lists = seen["args"]
        assert sum(len(b) for b in box_lists) > 0
        # each member's features from the backbone's per-image stage on its own 3 channels
        normalized = ((image - model.pixel_mean) / model.pixel_std)[None]
        per_image = [model.backbone.extract_features(normalized[:, 3 * k:3 * k + 3]) for k in range(n)]
        levels = heads.box_in_features
        assert [f[:-len(BAG_SUFFIX)] for f in levels] == list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        for level, f in zip(x, levels):
            torch.testing.assert_close(level, torch.stack([p[f[:-len(BAG_SUFFIX)]] for p in per_image], dim=1),
                                       rtol=1e-4, atol=1e-4)  # one image at a time vs the bag's batch
        pooler = ROIPooler(output_size=cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION,
                           scales=[1.0 / model.backbone.output_shape()[f[:-len(BAG_SUFFIX)]].stride for f in levels],
                           sampling_ratio=cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO,
                           pooler_type=cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE)
        pooled = torch.stack([pooler([p[f[:-len(BAG_SUFFIX)]] for f in levels], box_lists) for p in per_image], 1)
        va = heads.box_pooler.va
        torch.testing.assert_close(seen["out"], va(pooled[:, n // 2], pooled), rtol=1e-4, atol=1e-4)
        _assert_differs(seen["out"], va(pooled[:, 0], pooled), "member 0 as the target gives the same output")
        _assert_differs(seen["out"], pooled[:, n // 2], "VA left the pooled target unchanged")
