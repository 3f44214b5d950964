"""Choosing which target slices to train on, and how often."""
import logging
from typing import Sequence

import torch

__all__ = ["has_category", "lesion_share_repeat_factors"]

logger = logging.getLogger(__name__)


def has_category(record: dict, category_id: int) -> bool:
    """True when the slice has an annotation of ``category_id`` (e.g. a lesion)."""
    return any(a["category_id"] == category_id for a in record.get("annotations") or ())


def lesion_share_repeat_factors(holds_lesion: Sequence[bool], share: float) -> torch.Tensor:
    """Repeat factors (for detectron2's ``RepeatFactorTrainingSampler``) under which a share ``share`` of the sampled
    items hold a lesion, in expectation, and an epoch keeps its length.

    With a fraction f of the items holding a lesion, those get ``share / f`` and the others ``(1 - share) / (1 - f)``
    (factors below 1 keep an item in an epoch with that probability). When every item holds a lesion (DeepLesion's key
    slices), the share is 1 whatever ``share`` asks, and the factors are all 1.

    Args:
        holds_lesion: one bool per item (target slice, or slice group).
        share: in (0, 1].
    Returns:
        float32 tensor ``[len(holds_lesion)]``.
    """
    if not 0.0 < share <= 1.0:
        raise ValueError(f"DATALOADER.LESION_SLICE_SHARE must be in [0, 1], got {share}")
    flags = torch.as_tensor(list(holds_lesion), dtype=torch.bool)
    num_lesion = int(flags.sum())
    if num_lesion == 0:
        raise ValueError(f"DATALOADER.LESION_SLICE_SHARE {share}: no training slice holds a lesion")
    f = num_lesion / len(flags)
    if f == 1.0:
        logger.info(f"Every training item holds a lesion: DATALOADER.LESION_SLICE_SHARE {share} changes nothing")
        return torch.ones(len(flags))
    factors = torch.where(flags, torch.tensor(share / f), torch.tensor((1.0 - share) / (1.0 - f)))
    logger.info(f"Lesion slices: {num_lesion} of {len(flags)} training items ({100 * f:.1f}%), sampled as "
                f"{100 * share:.1f}% (repeat factor {share / f:.2f}; others {(1.0 - share) / (1.0 - f):.2f})")
    return factors.float()
