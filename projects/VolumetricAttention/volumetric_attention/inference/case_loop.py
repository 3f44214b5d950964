"""The loop over the target slices of one case, with each 2.5D image through the backbone about once.

Shared by :class:`~volumetric_attention.inference.VolumePredictor` (new volumes) and case-level evaluation
(:func:`volumetric_attention.evaluation.inference_on_cases`), so both see the same model outputs.

Order of the targets: a bag's images are centred 3 slices apart, so target z shares N - 1 images with z + 3 and none
with z + 1 or z + 2. The loop therefore makes three passes, one per ``z mod 3``, alternately upwards and downwards
(the turn keeps the images clamped at a volume end). Within a pass, a batch of B consecutive targets needs N + B - 1
images. An image stays in the feature cache until the last batch that uses it: the images of a pass leave with it,
while the two images clamped at the volume's ends (slices 0, 0, 0 and Z-1, Z-1, Z-1), which the passes share, stay
from their first use to their last. Each image of a case is thus computed once, and the cache holds at most
N + B + 1 images' features per FPN level at a time (N + 2 with one target per batch), however long the case.
"""
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from detectron2.data import transforms as T

from ..data.bag import PIXEL_SCALE, bag_slice_indices
from .feature_cache import BagFeatureCache, backbone_output

__all__ = ["CaseLoop", "target_batches"]

Key = Tuple[int, int, int]  # the (clamped) slice triple of one 2.5D image


def target_batches(targets: Sequence[int], batch_size: int) -> List[List[int]]:
    """Split target slices into the loop's batches: passes over ``z mod 3`` (0 up, 1 down, 2 up), each cut into
    batches of at most ``batch_size`` consecutive targets of the pass.

    Returns:
        list of batches (lists of slice indices); every target appears exactly once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batches = []
    for residue in range(3):
        ordered = sorted({int(z) for z in targets if int(z) % 3 == residue}, reverse=residue == 1)
        batches += [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
    return batches


class CaseLoop:
    """Run a model over the target slices of one preprocessed case, batch by batch.

    Each target's input is its bag of N 2.5D images (:func:`bag_slice_indices`), each image resized on its own by the
    test-time augmentations, as :class:`~volumetric_attention.data.VolumetricDatasetMapper` does, and packed into
    channels. With the feature cache (a VA-FPN backbone with one 2.5D image per member) each image's backbone
    features are computed once and kept until the last batch that needs them (at most N + B + 1 images; see the
    module docstring); without it the model runs on the packed bags: N backbone passes per target, of M images each
    with ``MODEL.VA.MEMBER_IMAGES`` = M.

    Args:
        model: a detectron2 meta-architecture in eval mode (GeneralizedRCNN, RetinaNet, SemanticSegmentor).
        bag_size: the 2.5D images of a target's input (N, or N + M - 1 with members of M images;
            :func:`~volumetric_attention.config.bag_size_from_cfg`).
        augmentations: test-time detectron2 augmentations (e.g. ``ResizeShortestEdge``); drawn once per case on an
            image of the case's size and applied to every 2.5D image.
        batch_size: target slices per forward pass (B).
        use_feature_cache: reuse backbone features across overlapping bags when the backbone allows it.

    Attributes (of the last :meth:`run`, counted as its batches are yielded):
        backbone_images: 2.5D images that went through the backbone.
        peak_cached_images: the most images whose features the cache held at once (0 without the cache).
    """

    def __init__(self, model, bag_size: int, augmentations, batch_size: int = 1, use_feature_cache: bool = True):
        self.model = model
        self.bag_size = int(bag_size)
        self.augmentations = T.AugmentationList(list(augmentations))
        self.batch_size = int(batch_size)
        # the cache keys one 2.5D image per bag member (not so with MODEL.VA.MEMBER_IMAGES > 1)
        members = getattr(model.backbone, "member_images", 1)
        self.use_feature_cache = use_feature_cache and hasattr(model.backbone, "extract_features") and members == 1
        # without the cache: N = bag_size - M + 1 members of M images each go through the backbone
        self.images_per_target = (self.bag_size - members + 1) * members
        self.backbone_images = 0
        self.peak_cached_images = 0

    def _image_keys(self, z: int, num_slices: int) -> List[Key]:
        idx = bag_slice_indices(z, num_slices, self.bag_size)
        return [tuple(int(i) for i in idx[3 * k : 3 * k + 3]) for k in range(self.bag_size)]

    @torch.no_grad()
    def run(self, image_zyx, targets: Optional[Sequence[int]] = None) -> Iterator[Tuple[List[int], List[dict]]]:
        """Predict the target slices of one case.

        Args:
            image_zyx: (Z, H, W) array in [0, 1] (a cache's ``image.npy`` memmap or a preprocessed volume).
            targets: slice indices to predict; default every slice.
        Yields:
            (slice indices of a batch, the model's outputs for them, at the original (H, W)), in the loop's order
            (:func:`target_batches`), every target once.
        """
        num_slices, height, width = image_zyx.shape
        targets = range(num_slices) if targets is None else targets
        batches = target_batches(targets, self.batch_size)
        aug_input = T.AugInput(np.zeros((height, width, 3), np.float32))
        transform = self.augmentations(aug_input)
        model = self.model
        cache = None
        if self.use_feature_cache:
            cache = BagFeatureCache(model.backbone, model.pixel_mean[:3], model.pixel_std[:3], self.batch_size)
        self.backbone_images = self.peak_cached_images = 0
        keys_of = {z: self._image_keys(z, num_slices) for batch in batches for z in batch}
        # the index of the last batch that uses each image: it is dropped after that batch, and never recomputed
        last_use = {k: i for i, batch in enumerate(batches) for z in batch for k in keys_of[z]}

        def load(key: Key) -> torch.Tensor:
            # the mapper's make_bag_array: float32 on the 0..255 scale, then the transform per 2.5D image
            array = np.asarray(image_zyx[list(key)], np.float32).transpose(1, 2, 0) * np.float32(PIXEL_SCALE)
            return torch.as_tensor(np.ascontiguousarray(transform.apply_image(array).transpose(2, 0, 1)))

        images: Dict[Key, torch.Tensor] = {}  # resized 2.5D images, kept as long as their features
        for i, batch in enumerate(batches):
            bag_keys = [keys_of[z] for z in batch]
            for keys in bag_keys:
                for k in keys:
                    if k not in images:
                        images[k] = load(k)
            inputs = [{"image": torch.cat([images[k] for k in keys]), "height": height, "width": width}
                      for keys in bag_keys]
            if cache is None:
                outputs = model(inputs)
                self.backbone_images += len(batch) * self.images_per_target
            else:
                features = model.backbone.attend(cache.bag_features(bag_keys, images))
                self.peak_cached_images = max(self.peak_cached_images, len(cache))
                with backbone_output(model.backbone, features):
                    outputs = model(inputs)
                self.backbone_images = cache.backbone_images
            # keep only what a later batch needs: the cache's memory bound (module docstring)
            images = {k: v for k, v in images.items() if last_use[k] > i}
            if cache is not None:
                cache.evict(lambda k: last_use[k] > i)
            yield batch, outputs
