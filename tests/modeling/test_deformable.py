"""Deformable ResNet blocks on torchvision's deform_conv2d."""
import os
from unittest import mock

import pytest
import torch
import torchvision.ops

import volumetric_attention
from volumetric_attention.modeling import DeformBasicBlock, DeformBottleneckBlock

from detectron2.modeling import build_backbone
from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock

DEEPLESION = os.path.join(os.path.dirname(volumetric_attention.__file__), "..", "configs", "DeepLesion")
# block kind -> (deformable block, detectron2's plain block, their arguments)
BLOCKS = {"bottleneck": (DeformBottleneckBlock, BottleneckBlock, dict(bottleneck_channels=32, stride=2, norm="GN")),
          "basic": (DeformBasicBlock, BasicBlock, dict(stride=2, norm="GN"))}


def _pair(kind="bottleneck", modulated=False, groups=1):
    deform_cls, plain_cls, args = BLOCKS[kind]
    torch.manual_seed(0)
    deform = deform_cls(32, 64, deform_modulated=modulated, deform_num_groups=groups, **args)
    plain = plain_cls(32, 64, **args)
    missing, unexpected = plain.load_state_dict(deform.state_dict(), strict=False)
    assert not missing and set(unexpected) == {"conv2_offset.weight", "conv2_offset.bias"}
    return deform, plain


@pytest.mark.parametrize("kind", sorted(BLOCKS))
def test_parameter_names_match_detectron2_deform_block(kind):
    deform, _ = _pair(kind, modulated=True, groups=2)
    names = set(deform.state_dict())
    assert {"conv2_offset.weight", "conv2_offset.bias", "conv2.weight", "conv2.norm.weight", "conv2.norm.bias"} <= names
    assert "conv2.bias" not in names
    assert deform.conv2_offset.out_channels == 27 * 2


@pytest.mark.parametrize("kind", sorted(BLOCKS))
@pytest.mark.parametrize("groups", [1, 2])
def test_starts_as_the_plain_block(kind, groups):
    deform, plain = _pair(kind, groups=groups)
    x = torch.randn(2, 32, 16, 16)
    torch.testing.assert_close(deform(x), plain(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", sorted(BLOCKS))
def test_modulated_starts_as_half_modulated_plain_conv(kind):
    # Zero modulation logits give sigmoid(0) = 0.5 (DCNv2 and detectron2 convention).
    deform, plain = _pair(kind, modulated=True)
    with torch.no_grad():
        plain.conv2.weight.mul_(0.5)
    x = torch.randn(2, 32, 16, 16)
    torch.testing.assert_close(deform(x), plain(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", sorted(BLOCKS))
@pytest.mark.parametrize("modulated", [False, True])
def test_offsets_learn(kind, modulated):
    deform, _ = _pair(kind, modulated=modulated)
    opt = torch.optim.SGD(deform.parameters(), lr=1.0)
    before = deform.conv2_offset.weight.detach().clone()
    x = torch.randn(2, 32, 16, 16)
    deform(x).square().mean().backward()
    assert deform.conv2_offset.weight.grad.abs().sum() > 0
    opt.step()
    assert not torch.equal(before, deform.conv2_offset.weight)


def test_backbone_uses_torchvision_deform_conv(tiny_cfg):
    cfg = tiny_cfg(os.path.join(DEEPLESION, "faster_rcnn_R_50_FPN_dconv_va_bag3.yaml"), deform=True)
    bb = build_backbone(cfg)
    stages = dict(zip(bb.bottom_up.stage_names, bb.bottom_up.stages))
    assert all(type(b) is BottleneckBlock for b in stages["res2"])
    for name in ("res3", "res4", "res5"):
        assert all(isinstance(b, DeformBottleneckBlock) for b in stages[name])
    num_deform = sum(len(stages[n]) for n in ("res3", "res4", "res5"))
    real = torchvision.ops.deform_conv2d
    with mock.patch.object(torchvision.ops, "deform_conv2d", side_effect=real) as spy:
        out = bb(torch.randn(1, 9, 64, 64))
    assert spy.call_count == num_deform  # once per block, on all 3 bag images at once
    assert spy.call_args.args[0].shape[0] == 3
    assert set(out) == {"p2", "p3", "p4", "p5", "p6"}


def test_baseline_and_freezing_honour_deform_options(tiny_cfg):
    cfg = tiny_cfg(os.path.join(DEEPLESION, "faster_rcnn_R_50_FPN_dconv_baseline.yaml"),
                   ["MODEL.RESNETS.DEFORM_ON_PER_STAGE", [True, False, False, True],
                    "MODEL.RESNETS.DEFORM_MODULATED", True, "MODEL.BACKBONE.FREEZE_AT", 2], deform=True)
    bb = build_backbone(cfg)
    assert bb.va is None and bb.bag_size == 1
    res2 = bb.bottom_up.res2
    assert all(isinstance(b, DeformBottleneckBlock) and b.deform_modulated for b in res2)
    assert not any(p.requires_grad for p in res2.parameters())  # frozen like detectron2's res2
    assert isinstance(bb.bottom_up.res5[0], DeformBottleneckBlock)
    assert not isinstance(bb.bottom_up.res4[0], DeformBottleneckBlock)
    assert bb(torch.randn(1, 3, 64, 64))["p2"].shape == (1, 32, 16, 16)


def test_resnet18_gets_deformable_basic_blocks(tiny_cfg):
    cfg = tiny_cfg(os.path.join(DEEPLESION, "faster_rcnn_R_18_FPN_GN_dconv_va_context_bag3.yaml"))
    assert cfg.MODEL.RESNETS.DEPTH == 18
    bb = build_backbone(cfg)
    stages = dict(zip(bb.bottom_up.stage_names, bb.bottom_up.stages))
    assert all(type(b) is BasicBlock for b in stages["res2"])
    for name in ("res3", "res4", "res5"):
        assert all(isinstance(b, DeformBasicBlock) for b in stages[name])
    out = bb(torch.randn(1, 9, 64, 64))
    assert set(out) == {"p2", "p3", "p4", "p5", "p6"} and out["p3"].shape[-2:] == (8, 8)
