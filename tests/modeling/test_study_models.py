"""The z-context study's extra models: Dice + CE semantic head, early-fusion baseline, VA with context features."""
import os

import numpy as np
import pytest
import torch

import volumetric_attention
from volumetric_attention.modeling import VolumetricAttention, soft_dice_loss

from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

CONFIG_DIR = os.path.join(os.path.dirname(volumetric_attention.__file__), "..", "configs", "Phantom")


def _numpy_batch_dice_loss(probs, targets, ignore):
    """1 - mean over the foreground classes present in ``targets`` of the batch soft Dice, ignoring ``ignore`` pixels
    (independent code)."""
    losses = []
    valid = targets != ignore
    for k in range(1, probs.shape[1]):
        p = probs[:, k][valid]
        g = (targets[valid] == k).astype(np.float64)
        if not g.any():
            continue
        losses.append((2 * (p * g).sum() + 1e-5) / (p.sum() + g.sum() + 1e-5))
    return 1 - np.mean(losses)


def test_soft_dice_loss_matches_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 9, generator=g)
    targets = torch.randint(0, 3, (2, 8, 9), generator=g)
    targets[0, :2] = 255  # padding
    expected = _numpy_batch_dice_loss(logits.softmax(1).numpy().astype(np.float64), targets.numpy(), 255)
    assert float(soft_dice_loss(logits, targets, 255)) == pytest.approx(expected, rel=1e-5)


def test_soft_dice_loss_is_zero_for_a_confident_exact_prediction_and_weighs_small_classes():
    targets = torch.zeros(1, 32, 32, dtype=torch.int64)
    targets[0, 4:28, 4:28] = 1  # a large class
    targets[0, 10:12, 10:12] = 2  # a 4-pixel class
    perfect = torch.nn.functional.one_hot(targets, 3).permute(0, 3, 1, 2).float() * 50
    assert float(soft_dice_loss(perfect, targets, 255)) < 1e-4
    # missing the 4 pixels of class 2 costs half the loss, though they are 0.4% of the image
    missed = perfect.clone()
    missed[0, :, 10:12, 10:12] = perfect[0, :, 5:7, 5:7]
    assert float(soft_dice_loss(missed, targets, 255)) == pytest.approx(0.5, abs=5e-3)
    ce = torch.nn.functional.cross_entropy
    # the plain cross-entropy (here of logits 10x smaller, not saturated) hardly notices
    assert float(ce(missed / 10, targets) - ce(perfect / 10, targets)) < 0.05


def test_dice_ce_head_trains_with_both_losses(tiny_cfg):
    cfg = tiny_cfg(os.path.join(CONFIG_DIR, "semantic_R_18_FPN_GN_va_bag3.yaml"),
                   ["MODEL.SEM_SEG_HEAD.NAME", "DiceCESemSegFPNHead", "MODEL.SEM_SEG_HEAD.DICE_WEIGHT", 0.5])
    model = build_model(cfg).train()
    assert type(model.sem_seg_head).__name__ == "DiceCESemSegFPNHead" and model.sem_seg_head.dice_weight == 0.5
    image = torch.rand(9, 64, 64) * 255
    sem_seg = torch.zeros(64, 64, dtype=torch.int64)
    sem_seg[10:40, 10:40] = 1
    sem_seg[20:24, 20:24] = 2
    with EventStorage():
        losses = model([{"image": image, "sem_seg": sem_seg, "height": 64, "width": 64}])
    assert set(losses) == {"loss_sem_seg", "loss_sem_seg_dice"}
    with torch.no_grad():
        features = model.backbone((image[None] - model.pixel_mean) / model.pixel_std)
        logits = model.sem_seg_head.layers(features)
        logits = torch.nn.functional.interpolate(logits, scale_factor=4, mode="bilinear", align_corners=False)
    expected = 0.5 * soft_dice_loss(logits, sem_seg[None], 255)
    torch.testing.assert_close(losses["loss_sem_seg_dice"].detach(), expected, rtol=1e-4, atol=1e-6)
    sum(losses.values()).backward()
    assert model.sem_seg_head.predictor.weight.grad.abs().sum() > 0


def test_early_fusion_sees_the_bag_slices_through_one_widened_stem(tiny_cfg):
    cfg = tiny_cfg(os.path.join(CONFIG_DIR, "zcontext_liver_semantic_R_18_FPN_GN_early_fusion.yaml"))
    model = build_model(cfg)
    assert model.backbone.bottom_up.stem.conv1.weight.shape[1] == 9  # the 9 slices of a bag of 3
    assert not any(".va." in n for n, _ in model.named_parameters())
    baseline = build_model(tiny_cfg(os.path.join(CONFIG_DIR, "zcontext_liver_semantic_R_18_FPN_GN_baseline.yaml")))
    # nothing else changed: the same parameters but the stem's input channels
    shapes = {n: p.shape for n, p in model.named_parameters()}
    base_shapes = {n: p.shape for n, p in baseline.named_parameters()}
    assert shapes.keys() == base_shapes.keys()
    assert [n for n in shapes if shapes[n] != base_shapes[n]] == ["backbone.bottom_up.stem.conv1.weight"]
    # every input channel (slice) reaches the output
    x = torch.randn(1, 9, 64, 64, requires_grad=True)
    model.backbone(x)["p2"].sum().backward()
    assert (x.grad.abs().sum(dim=(0, 2, 3)) > 0).all()


def test_context_features_start_as_plain_va_and_add_the_weighted_bag():
    torch.manual_seed(0)
    bag = torch.randn(2, 3, 16, 8, 8)
    plain = VolumetricAttention(16, reduction=4, kernel_size=3, similarity="cosine")
    ctx = VolumetricAttention(16, reduction=4, kernel_size=3, similarity="cosine", context_features=True)
    ctx.load_state_dict(plain.state_dict(), strict=False)
    torch.testing.assert_close(ctx(bag[:, 1], bag), plain(bag[:, 1], bag))  # zero projection at init
    out, attn = ctx(bag[:, 1], bag, return_attention=True)
    out.square().sum().backward()
    assert ctx.context_proj.weight.grad.abs().sum() > 0  # it learns from the first step
    torch.nn.init.normal_(ctx.context_proj.weight, std=0.1)
    out, attn = ctx(bag[:, 1], bag, return_attention=True)
    gated, attn_plain = plain(bag[:, 1], bag, return_attention=True)
    w = attn["spatial_weights"]
    gated_bag = bag * attn["channel_gate"][:, None]  # what spatial attention compares: the channel-gated bag
    pooled = (w[:, :, None, None, None] * gated_bag).sum(1)
    expected = gated + torch.nn.functional.conv2d(pooled, ctx.context_proj.weight, ctx.context_proj.bias)
    torch.testing.assert_close(out, expected)


def test_context_features_come_from_the_config(tiny_cfg):
    cfg = tiny_cfg(os.path.join(CONFIG_DIR, "semantic_R_18_FPN_GN_va_bag3.yaml"), ["MODEL.VA.CONTEXT_FEATURES", True])
    names = [n for n, _ in build_model(cfg).named_parameters() if "context_proj" in n]
    assert names and all(n.startswith("backbone.va.p") for n in names)


def test_recommended_from_scratch_config_is_the_study_va_with_context_features(tiny_cfg):
    """The recommended config differs from the study's VA config in CONTEXT_FEATURES only."""
    va = tiny_cfg(os.path.join(CONFIG_DIR, "zcontext_liver_semantic_R_18_FPN_GN_va_bag3.yaml"))
    rec = tiny_cfg(os.path.join(CONFIG_DIR, "zcontext_liver_semantic_R_18_FPN_GN_va_context_bag3.yaml"))
    keys = rec.MODEL.VA
    assert (keys.SIMILARITY, keys.GATE_BIAS_INIT, keys.CONTEXT_FEATURES) == ("cosine", 0.0, True)
    va.defrost()
    va.MODEL.VA.CONTEXT_FEATURES = True
    assert va.dump() == rec.dump()
    model = build_model(rec)
    projections = [m for n, m in model.named_modules() if n.endswith("context_proj")]
    assert len(projections) == len(rec.MODEL.SEM_SEG_HEAD.IN_FEATURES)  # VA on the levels the head reads
    assert all(float(p.weight.abs().max()) == 0.0 for p in projections)
