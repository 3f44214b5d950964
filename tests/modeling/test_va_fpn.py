"""VA-FPN backbone: same outputs as detectron2's FPN, detectron2's FPN per image followed by VA, input checks."""
import _tiny
import pytest
import torch

from volumetric_attention.modeling import VAFPN, VolumetricAttention

from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone
from detectron2.modeling.backbone.fpn import build_resnet_fpn_backbone, build_retinanet_resnet_fpn_backbone

FPN_OPTS = [
    "MODEL.RESNETS.OUT_FEATURES", ["res2", "res3", "res4", "res5"],
    "MODEL.FPN.IN_FEATURES", ["res2", "res3", "res4", "res5"],
    "MODEL.RPN.IN_FEATURES", ["p2", "p3", "p4", "p5", "p6"],
    "MODEL.ROI_HEADS.IN_FEATURES", ["p2", "p3", "p4", "p5"],
]
BUILDERS = {
    "build_va_resnet_fpn_backbone": build_resnet_fpn_backbone,
    "build_va_retinanet_resnet_fpn_backbone": build_retinanet_resnet_fpn_backbone,
}


@pytest.fixture
def cfg_for(tiny_cfg):
    return lambda name, *opts, **kw: tiny_cfg(None, FPN_OPTS + ["MODEL.BACKBONE.NAME", name] + list(opts), **kw)


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("n", [1, 3, 9])
def test_outputs_match_detectron2_fpn(name, n, cfg_for):
    opts = ["MODEL.VA.BAG_SIZE", n] if n > 1 else ["MODEL.VA.ENABLED", False]
    cfg = cfg_for(name, *opts)
    va = build_backbone(cfg)
    plain = BUILDERS[name](cfg, ShapeSpec(channels=3))
    assert isinstance(va, VAFPN) and va.bag_size == n
    assert va.output_shape() == plain.output_shape()
    assert va.size_divisibility == plain.size_divisibility == 32
    assert va.padding_constraints == plain.padding_constraints
    x = torch.randn(2, 3 * n, 64, 96)
    out = va(x)
    ref = plain(x[:, :3])
    assert list(out) == list(ref)
    for k in ref:
        assert out[k].shape == ref[k].shape, k
    plain_keys = set(plain.state_dict())
    va_keys = set(va.state_dict())
    assert plain_keys <= va_keys
    assert all(k.startswith("va.") for k in va_keys - plain_keys)
    assert (va_keys == plain_keys) == (n == 1)
    if n == 1:  # the baseline is detectron2's FPN, value for value
        va.load_state_dict(plain.state_dict())
        for k in ref:
            assert torch.equal(va(x)[k], ref[k]), k


@pytest.mark.parametrize("training", [True, False])
def test_forward_is_detectron2_fpn_per_image_then_volumetric_attention(cfg_for, training):
    """VA-FPN against a reference built apart from it: detectron2's own FPN on each 2.5D image of the bag, and one
    separately constructed VolumetricAttention per level on the target (image N // 2) and its bag."""
    n, levels = 3, ("p2", "p3", "p4", "p5", "p6")
    cfg = cfg_for("build_va_resnet_fpn_backbone", "MODEL.VA.BAG_SIZE", n, *_tiny.VARYING_GATES)
    bb = build_backbone(cfg).train(training)
    plain = build_resnet_fpn_backbone(cfg, ShapeSpec(channels=3)).train(training)
    plain.load_state_dict({k: v for k, v in bb.state_dict().items() if not k.startswith("va.")})
    reference_va = {}
    for f in levels:
        # the tiny config's VA, spelled out rather than read from the config
        reference_va[f] = VolumetricAttention(32, reduction=4, kernel_size=3, similarity="cosine").train(training)
        reference_va[f].load_state_dict(bb.va[f].state_dict())

    x = torch.randn(2, 3 * n, 64, 96)
    per_image = [plain(x[:, 3 * k : 3 * k + 3]) for k in range(n)]
    out = bb(x)
    assert list(out) == list(per_image[0])
    for f in levels:
        bag = torch.stack([features[f] for features in per_image], dim=1)  # [B, N, C, h, w]
        expected = reference_va[f](bag[:, n // 2], bag)
        torch.testing.assert_close(out[f], expected, rtol=1e-4, atol=1e-5)
        # the gates vary with the bag (_tiny.VARYING_GATES): VA changed the target's features
        assert (out[f] - bag[:, n // 2]).abs().max() > 1e-2, f


def test_baseline_backbone_is_detectron2_fpn(cfg_for):
    cfg = cfg_for("build_va_resnet_fpn_backbone", "MODEL.VA.BAG_SIZE", 3, "MODEL.VA.ENABLED", False)
    baseline = build_backbone(cfg)
    x = torch.randn(1, 3, 64, 64)
    feats = baseline.extract_features(x)
    out = baseline(x)
    for k in out:  # the baseline backbone is detectron2's FPN on the 3-slice image
        assert torch.equal(out[k], feats[k])


def test_shared_and_per_level_va_modules(cfg_for):
    per_level = build_backbone(cfg_for("build_va_resnet_fpn_backbone"))
    shared = build_backbone(cfg_for("build_va_resnet_fpn_backbone", "MODEL.VA.SHARE_ACROSS_LEVELS", True))
    assert set(per_level.va.keys()) == {"p2", "p3", "p4", "p5", "p6"}
    assert isinstance(shared.va, VolumetricAttention)


def test_rcnn_location_returns_bag_features(cfg_for):
    bb = build_backbone(cfg_for("build_va_resnet_fpn_backbone", "MODEL.VA.LOCATION", "RCNN"))
    assert bb.va is None
    x = torch.randn(1, 9, 64, 64)
    out = bb(x)
    feats = bb.extract_features(x.reshape(3, 3, 64, 64))
    for k in ("p2", "p3", "p4", "p5", "p6"):
        assert torch.equal(out[k], feats[k][1:2])
        assert out[k + "_bag"].shape == (1, 3) + feats[k].shape[1:]
    assert set(bb.output_shape()) == {"p2", "p3", "p4", "p5", "p6"}


def test_wrong_channel_count_is_a_clear_error(cfg_for):
    cfg = cfg_for("build_va_resnet_fpn_backbone", freeze=False)
    cfg.MODEL.PIXEL_MEAN = cfg.MODEL.PIXEL_MEAN[:3]
    cfg.MODEL.PIXEL_STD = cfg.MODEL.PIXEL_STD[:3]
    with pytest.raises(ValueError, match="expand_pixel_stats"):
        build_backbone(cfg)
    bb = build_backbone(cfg_for("build_va_resnet_fpn_backbone"))
    with pytest.raises(ValueError, match="9 input channels"):
        bb(torch.zeros(1, 3, 64, 64))


def test_va_only_on_levels_the_heads_read(cfg_for):
    cfg = cfg_for("build_va_resnet_fpn_backbone", "MODEL.META_ARCHITECTURE", "SemanticSegmentor")
    bb = build_backbone(cfg)
    assert set(bb.va.keys()) == {"p2", "p3", "p4", "p5"}
    x = torch.randn(1, 9, 64, 64)
    out = bb(x)
    assert torch.equal(out["p6"], bb.extract_features(x.reshape(3, 3, 64, 64))["p6"][1:2])
    retina = build_backbone(cfg_for("build_va_retinanet_resnet_fpn_backbone", "MODEL.META_ARCHITECTURE", "RetinaNet"))
    assert set(retina.va.keys()) == {"p3", "p4", "p5", "p6", "p7"}
