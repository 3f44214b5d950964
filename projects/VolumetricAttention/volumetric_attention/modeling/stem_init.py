"""Starting a widened stem from a 2D checkpoint (``MODEL.EARLY_FUSION.STEM_INIT``).

A stem that takes k 2.5D images at once (the early-fusion backbone, k = N; VA members of ``MEMBER_IMAGES`` k) has a
first conv of ``[C, 3·k, 7, 7]``, where a 2D checkpoint (a 2.5D model's, COCO's, ImageNet's) holds ``[C, 3, 7, 7]``.
Its builder marks it (:func:`mark_widened_stem`) and the project's checkpointer widens the checkpoint's conv before
detectron2's shape check (:func:`widen_checkpoint_stems`), by one of:

* ``"centre"``: the 2D weights on the centre image's 3 channels (the target's, at k // 2), zeros on the others,
  as in 3DCE's released code. The model starts as the 2D model on the target image, whatever the bag holds; the
  zero weights get gradients from the first step.
* ``"inflate"``: the 2D weights on every image, divided by k, as I3D inflates 2D filters. On a bag of k copies of
  one image the model starts as the 2D model on that image.
* ``"random"``: the checkpoint's conv is dropped and the widened conv keeps its random initialisation.

A checkpoint whose stem fits neither the 2D shape nor the widened one stops the load with one line naming both.

``MODEL.BACKBONE.FREEZE_AT`` >= 1 freezes detectron2's stem (as the COCO and ImageNet fine-tuning configs do); a
widened stem conv stays trainable, since its new input channels start at zero or at an average and must learn. Its
norm stays frozen as asked.
"""
import logging
from typing import Dict, Optional

import torch
from torch import nn

__all__ = ["STEM_INITS", "check_stem_init", "mark_widened_stem", "widen_stem_weight", "widen_checkpoint_stems"]

logger = logging.getLogger(__name__)

# The values of MODEL.EARLY_FUSION.STEM_INIT.
STEM_INITS = ("centre", "inflate", "random")
# Channels of one 2.5D image: 3 adjacent slices.
IMAGE_CHANNELS = 3
# Caffe2 name of the stem conv in detectron2's ImageNet .pkl files (e.g. ImageNetPretrained/MSRA/R-50.pkl).
CAFFE2_STEM_CONV = "conv1_w"


def check_stem_init(mode: str) -> str:
    """``mode`` if it is a known ``MODEL.EARLY_FUSION.STEM_INIT``, else a one-line ValueError listing them."""
    if mode not in STEM_INITS:
        raise ValueError(f"MODEL.EARLY_FUSION.STEM_INIT must be one of {', '.join(map(repr, STEM_INITS))}; "
                         f"got {mode!r}")
    return mode


def mark_widened_stem(resnet: nn.Module, images: int, stem_init: str) -> None:
    """Mark the stem of ``resnet`` (detectron2's ResNet, ``stem.conv1`` taking ``3·images`` channels) as widened, to
    be started from 2D checkpoints by ``stem_init``, and keep its conv trainable whatever ``FREEZE_AT`` froze."""
    check_stem_init(stem_init)
    if images <= 1:
        return
    stem = resnet.stem
    if stem.conv1.weight.shape[1] != IMAGE_CHANNELS * images:
        raise ValueError(f"the stem conv takes {stem.conv1.weight.shape[1]} channels, not 3 x {images} images")
    stem.widened_images = images
    stem.stem_init = stem_init
    stem.conv1.weight.requires_grad_(True)


def widen_stem_weight(weight: torch.Tensor, images: int, mode: str) -> Optional[torch.Tensor]:
    """A 2D stem conv's weights ``[C, 3, kh, kw]`` widened to ``[C, 3·images, kh, kw]`` by ``mode`` (None for
    "random": nothing to load)."""
    check_stem_init(mode)
    if mode == "random":
        return None
    if mode == "inflate":
        return weight.repeat(1, images, 1, 1) / images
    out = weight.new_zeros(weight.shape[0], IMAGE_CHANNELS * images, *weight.shape[2:])
    start = IMAGE_CHANNELS * (images // 2)
    out[:, start:start + IMAGE_CHANNELS] = weight
    return out


def _checkpoint_key(state: Dict, model_key: str) -> Optional[str]:
    """The checkpoint's name for the model's stem conv ``model_key``: the same name, the one name that ends like it
    (a model-zoo ``.pkl`` of another prefix), or Caffe2's ``conv1_w``."""
    if model_key in state:
        return model_key
    suffix = "stem.conv1.weight"
    ends = [k for k in state if k.endswith(suffix)]
    if len(ends) == 1:
        return ends[0]
    return CAFFE2_STEM_CONV if CAFFE2_STEM_CONV in state else None


def widen_checkpoint_stems(model: nn.Module, state: Dict, source: str = "checkpoint") -> None:
    """Widen, in place, the 2D stem convs of the checkpoint state dict ``state`` for the widened stems of ``model``
    (those marked by :func:`mark_widened_stem`). A stem conv already of the widened shape is left alone.

    Raises:
        ValueError: one line naming ``source`` and both shapes, for a stem conv of neither shape.
    """
    for name, module in model.named_modules():
        images = getattr(module, "widened_images", 0)
        if images <= 1:
            continue
        model_key = f"{name}.conv1.weight"
        key = _checkpoint_key(state, model_key)
        if key is None:
            continue
        widened = tuple(module.conv1.weight.shape)
        value = state[key]
        weight = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
        shape = tuple(weight.shape)
        flat = (widened[0], IMAGE_CHANNELS) + widened[2:]
        if shape == widened:
            continue
        if shape != flat:
            raise ValueError(f"{source}: stem conv {key} has shape {shape}, which is neither a 2D stem's {flat} nor "
                             f"the model's widened {widened}")
        new = widen_stem_weight(weight.float(), images, module.stem_init)
        if new is None:
            del state[key]
            logger.info(f"{model_key}: the 2D stem conv of {source} is not loaded (STEM_INIT 'random')")
            continue
        state[key] = new.to(weight.dtype)
        logger.info(f"{model_key}: the 2D stem conv {shape} of {source} widened to {widened} by STEM_INIT "
                    f"{module.stem_init!r}")
