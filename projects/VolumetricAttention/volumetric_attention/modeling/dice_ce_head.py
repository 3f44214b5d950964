"""Semantic FPN head trained with Dice + cross-entropy (nnU-Net's default loss), for small structures.

Plain cross-entropy averages over pixels, so a class that covers a tiny share of them (a 7 mm lesion in a 160 px
slice is about 0.1% of the pixels) contributes almost nothing and the cheapest answer is to call it background.
A soft Dice term per foreground class is normalised by the class's own size, so small structures weigh as much as
large ones. As in nnU-Net: soft Dice over the foreground classes (background excluded), computed over the whole
batch ("batch Dice"), smoothing 1e-5, added to the cross-entropy with weight ``MODEL.SEM_SEG_HEAD.DICE_WEIGHT``.

Unlike nnU-Net's, the Dice term only averages over the classes present in the batch's ground truth. With smoothing
alone, a class absent from a batch scores ``smooth / (sum of its probabilities + smooth)``, about 0, unless every
one of its probabilities in the batch is driven to about 0: each batch without a lesion teaches "never lesion" at
full Dice weight. nnU-Net escapes this because every batch it samples holds foreground; a slice sampler with lesions
in a fifth of the slices gives batches of 4 without any lesion 40% of the time, and the lesion class then never
trains (``DATALOADER.LESION_SLICE_SHARE`` samples lesion slices more often, but does not guarantee one per batch).
An absent class is left to the cross-entropy, which still pushes its probabilities down by the usual pixel average.
"""
import torch
import torch.nn.functional as F

from detectron2.config import configurable
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from detectron2.modeling.meta_arch.semantic_seg import SemSegFPNHead

__all__ = ["DiceCESemSegFPNHead", "soft_dice_loss"]

# nnU-Net's smoothing: keeps the Dice of a class absent from prediction and target finite (it then scores ~1)
DICE_SMOOTH = 1e-5


def soft_dice_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_value: int, smooth: float = DICE_SMOOTH):
    """``1 - mean_k Dice_k`` over the foreground classes k = 1..K-1 present in the batch's targets, pooled over the
    batch (Dice_k from all of the batch's pixels).

    A foreground class with no target pixel in the batch takes no part in the mean (its logits get no gradient from
    this term); a batch without any foreground pixel gives 0, still attached to the graph.

    Args:
        logits: ``[B, K, H, W]`` class scores; targets: ``[B, H, W]`` int64 class ids, ``ignore_value`` where unlabelled
            (e.g. the padding of a batch).
    Returns:
        a 0-dim float32 tensor in [0, 1].
    """
    probs = logits.float().softmax(dim=1)
    valid = targets != ignore_value
    onehot = F.one_hot(targets.clamp(0, probs.shape[1] - 1) * valid, probs.shape[1]).permute(0, 3, 1, 2)
    valid = valid[:, None].to(probs.dtype)
    probs, onehot = probs[:, 1:] * valid, onehot[:, 1:].to(probs.dtype)
    intersection = (probs * onehot).sum(dim=(0, 2, 3))
    target_sizes = onehot.sum(dim=(0, 2, 3))
    sizes = probs.sum(dim=(0, 2, 3)) + target_sizes
    dice = (2 * intersection + smooth) / (sizes + smooth)
    present = target_sizes > 0
    if not present.any():
        return probs.sum() * 0.0
    return 1 - dice[present].mean()


@SEM_SEG_HEADS_REGISTRY.register()
class DiceCESemSegFPNHead(SemSegFPNHead):
    """detectron2's :class:`SemSegFPNHead` whose loss is cross-entropy + ``dice_weight`` x soft Dice.

    Losses: ``loss_sem_seg`` (detectron2's cross-entropy, unchanged) and ``loss_sem_seg_dice``, both scaled by
    ``MODEL.SEM_SEG_HEAD.LOSS_WEIGHT``. Inference is detectron2's.
    """

    @configurable
    def __init__(self, input_shape, *, dice_weight: float = 1.0, **kwargs):
        """
        Args:
            dice_weight: weight of the soft Dice term against the cross-entropy (nnU-Net: 1).
            input_shape, kwargs: those of :class:`SemSegFPNHead`.
        """
        super().__init__(input_shape, **kwargs)
        self.dice_weight = dice_weight

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["dice_weight"] = cfg.MODEL.SEM_SEG_HEAD.DICE_WEIGHT
        return ret

    def losses(self, predictions, targets):
        """predictions: ``[B, K, H/s, W/s]`` logits at the common stride s; targets: ``[B, H, W]``."""
        losses = super().losses(predictions, targets)
        upsampled = F.interpolate(predictions.float(), scale_factor=self.common_stride, mode="bilinear",
                                  align_corners=False)
        dice = soft_dice_loss(upsampled, targets, self.ignore_value)
        losses["loss_sem_seg_dice"] = dice * self.dice_weight * self.loss_weight
        return losses
