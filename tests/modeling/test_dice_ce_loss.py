"""The Dice term on batches in which a foreground class is absent (the lesion-free batches of small-lesion data)."""
import pytest
import torch

from volumetric_attention.modeling import soft_dice_loss


def _smoothing_only_dice_loss(logits, targets, smooth=1e-5):
    """nnU-Net's batch Dice, every foreground class in the mean whether present or not (the loss the fix replaces)."""
    probs = logits.softmax(1)
    losses = []
    for k in range(1, probs.shape[1]):
        g = (targets == k).float()
        losses.append((2 * (probs[:, k] * g).sum() + smooth) / (probs[:, k].sum() + g.sum() + smooth))
    return 1 - torch.stack(losses).mean()


def _lesion_free_batch():
    targets = torch.zeros(4, 16, 16, dtype=torch.int64)
    targets[:, 4:12, 4:12] = 1  # liver in every slice, no lesion anywhere
    return targets


def _train_logits(loss_fn, targets, steps=100):
    """Adam on free 2-class logits (its step size does not depend on the gradient's scale, as in training)."""
    logits = torch.zeros(4, 2, 16, 16)
    logits[:, 1] = -4.0  # a lesion class the cross-entropy has already made rare
    logits.requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=0.1)
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(logits, targets).backward()
        optimizer.step()
    return logits.detach()


def test_smoothing_only_dice_drives_an_absent_class_down_everywhere_and_the_fixed_one_does_not():
    # liver present, lesion absent: old = 1 - (Dice_liver + Dice_lesion) / 2 and new = 1 - Dice_liver, so
    # old - new / 2 is the absent lesion's term (plus a constant); its gradient lowers the lesion logit at every pixel
    targets = _lesion_free_batch()
    logits = torch.zeros(4, 3, 16, 16)
    logits[:, 2] = -4.0
    logits.requires_grad_(True)
    _smoothing_only_dice_loss(logits, targets).backward()
    old_grad, logits.grad = logits.grad, None
    soft_dice_loss(logits, targets, 255).backward()
    assert ((old_grad - logits.grad / 2)[:, 2] > 0).all()

    # background and lesion only, no lesion in the batch: trained on the Dice term alone
    background = torch.zeros(4, 16, 16, dtype=torch.int64)
    old = _train_logits(_smoothing_only_dice_loss, background)
    new = _train_logits(lambda x, t: soft_dice_loss(x, t, 255), background)
    start = torch.softmax(torch.tensor([0.0, -4.0]), 0)[1]
    # the old loss: the lesion probability falls at every pixel ("never lesion"), here to under a quarter
    assert (old.softmax(1)[:, 1] < start / 4).all()
    # the fixed loss leaves the lesion logit where it was (only the cross-entropy would move it)
    torch.testing.assert_close(new[:, 1], torch.full_like(new[:, 1], -4.0))


def test_fixed_dice_equals_the_old_one_when_every_class_is_present():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 8, 8, generator=g)
    targets = torch.randint(0, 3, (2, 8, 8), generator=g)
    assert (targets == 2).any() and (targets == 1).any()
    torch.testing.assert_close(soft_dice_loss(logits, targets, 255), _smoothing_only_dice_loss(logits, targets))


def test_absent_class_drops_out_of_the_mean_and_a_foreground_free_batch_gives_zero_with_a_graph():
    targets = _lesion_free_batch()
    logits = torch.randn(4, 3, 16, 16, requires_grad=True)
    probs = logits.softmax(1)
    liver = (targets == 1).float()
    liver_dice = (2 * (probs[:, 1] * liver).sum() + 1e-5) / (probs[:, 1].sum() + liver.sum() + 1e-5)
    assert float(soft_dice_loss(logits, targets, 255)) == pytest.approx(float(1 - liver_dice), rel=1e-5)
    background = torch.zeros(4, 16, 16, dtype=torch.int64)
    background[0, :2] = 255
    loss = soft_dice_loss(logits, background, 255)
    assert float(loss) == 0.0 and loss.requires_grad
    loss.backward()
    assert float(logits.grad.abs().sum()) == 0.0
