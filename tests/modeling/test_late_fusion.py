"""The 3DCE late-fusion backbone: shapes, its start as the 2D model, a 2D checkpoint, one training step."""
import os

import pytest
import torch

import volumetric_attention
from volumetric_attention.modeling import VAFPN, BagConcatFusion

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

CONFIG_DIR = os.path.join(os.path.dirname(volumetric_attention.__file__), "..", "configs")
SEMANTIC = os.path.join(CONFIG_DIR, "Phantom", "zcontext_liver_semantic_R_18_FPN_GN_3dce_bag3.yaml")
DETECTOR = os.path.join(CONFIG_DIR, "Phantom", "mask_rcnn_R_18_FPN_GN_va_bag3.yaml")
THREEDCE = ["MODEL.BACKBONE.NAME", "build_3dce_resnet_fpn_backbone"]


def test_fusion_is_a_1x1_conv_over_the_concatenated_bag_and_starts_as_the_target():
    bag = torch.randn(2, 3, 8, 5, 6)
    fusion = BagConcatFusion(8, 3)
    torch.testing.assert_close(fusion(bag[:, 1], bag), bag[:, 1])
    torch.nn.init.normal_(fusion.reduce.weight)
    w = fusion.reduce.weight[:, :, 0, 0].reshape(8, 3, 8)  # [out, bag image, in]
    expected = torch.einsum("okc,bkchw->bohw", w, bag) + fusion.reduce.bias[None, :, None, None]
    torch.testing.assert_close(fusion(bag[:, 1], bag), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="built for a bag of 3, got 5"):
        fusion(bag[:, 1], torch.randn(2, 5, 8, 5, 6))


def test_3dce_backbone_outputs_fpn_maps_and_starts_as_the_2d_model(tiny_cfg):
    model = build_model(tiny_cfg(SEMANTIC))
    backbone = model.backbone
    assert isinstance(backbone, VAFPN) and set(backbone.va.keys()) == {"p2", "p3", "p4", "p5"}
    assert all(isinstance(m, BagConcatFusion) for m in backbone.va.values())
    x = torch.randn(2, 9, 64, 64)
    with torch.no_grad():
        out = backbone(x)
        target_only = backbone.extract_features(x[:, 3:6])
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: tuple(v.shape) for k, v in target_only.items()}
    assert tuple(out["p2"].shape) == (2, backbone.output_shape()["p2"].channels, 16, 16)
    for k in out:
        torch.testing.assert_close(out[k], target_only[k])  # identity init: the 2D model on the target image
    # trained weights mix in the context images: a changed neighbour changes the output
    for m in backbone.va.values():
        torch.nn.init.normal_(m.reduce.weight, std=0.05)
    shifted = x.clone()
    shifted[:, :3] = torch.randn_like(shifted[:, :3])
    with torch.no_grad():
        assert not torch.allclose(backbone(x)["p3"], backbone(shifted)["p3"])


def test_2d_checkpoint_loads_with_only_the_fusion_convs_missing(tiny_cfg, tmp_path):
    baseline = build_model(tiny_cfg(DETECTOR, ["MODEL.VA.ENABLED", False]))
    DetectionCheckpointer(baseline, str(tmp_path)).save("baseline_2d")
    model = build_model(tiny_cfg(DETECTOR, THREEDCE))
    checkpointer = DetectionCheckpointer(model)
    incompatible = checkpointer._load_model(torch.load(str(tmp_path / "baseline_2d.pth"), weights_only=True))
    missing = set(incompatible.missing_keys)
    assert not incompatible.unexpected_keys and not incompatible.incorrect_shapes
    assert missing and all(k.startswith("backbone.va.") and ".reduce." in k for k in missing)
    for k, v in baseline.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v)


def test_3dce_faster_rcnn_trains_one_step_with_gradients_in_the_fusion(tiny_cfg):
    cfg = tiny_cfg(DETECTOR, THREEDCE + ["MODEL.MASK_ON", False])
    model = build_model(cfg).train()
    instances = Instances((64, 64))
    instances.gt_boxes = Boxes(torch.tensor([[10.0, 12.0, 30.0, 34.0], [40.0, 40.0, 52.0, 50.0]]))
    instances.gt_classes = torch.tensor([0, 1])
    batch = [{"image": torch.rand(9, 64, 64) * 255, "instances": instances, "height": 64, "width": 64}] * 2
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with EventStorage():
        losses = model(batch)
        total = sum(losses.values())
        assert torch.isfinite(total)
        total.backward()
    grads = {k: m.reduce.weight.grad for k, m in model.backbone.va.items()}
    assert all(g is not None for g in grads.values())
    # (P6 is 1 x 1 at 64 px: whether the RPN samples its 3 anchors is chance)
    assert all(float(grads[k].abs().sum()) > 0 for k in ("p2", "p3", "p4", "p5"))
    optimizer.step()
