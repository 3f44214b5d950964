"""Per-volume cache of 2.5D-image backbone features, so each image goes through the backbone once.

A target's bag holds N 2.5D images whose centres are 3 slices apart, so targets z and z+3 share N-1 of them.
Naive inference runs the backbone on all N images of every bag (N backbone passes per slice); with this cache a
volume of Z slices costs Z + 2 passes however large N is (one image per slice, and the two images clamped at the
volume's ends). :class:`~volumetric_attention.inference.case_loop.CaseLoop` keeps at most N + B + 1 images in it
for batches of B targets.
"""
import contextlib

import torch

from detectron2.structures import ImageList


class BagFeatureCache:
    """Backbone features of 2.5D images keyed by their (clamped) slice triple.

    Args:
        backbone: a ``VAFPN`` (``extract_features`` / ``attend``).
        pixel_mean, pixel_std: Tensor[3,1,1] normalisation of one 2.5D image (the model's first 3 values).
        batch_size: images per backbone pass.
    """

    def __init__(self, backbone, pixel_mean, pixel_std, batch_size=8):
        self.backbone = backbone
        self.pixel_mean = pixel_mean
        self.pixel_std = pixel_std
        self.batch_size = batch_size
        self._features = {}
        self.backbone_images = 0  # number of 2.5D images that went through the backbone

    def bag_features(self, bag_keys, images):
        """Features of a batch of bags, stacked per level.

        Args:
            bag_keys: list over B targets of N hashable keys (one per 2.5D image, in z order).
            images: dict key -> Tensor[3,H,W] (unnormalised, already resized) for at least the keys not cached yet.
        Returns:
            dict level -> Tensor[B,N,C,h,w], the input of ``backbone.attend``.
        """
        missing = list(dict.fromkeys(k for keys in bag_keys for k in keys if k not in self._features))
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            batch = [(images[k].to(self.pixel_mean.device) - self.pixel_mean) / self.pixel_std for k in chunk]
            tensor = ImageList.from_tensors(
                batch, self.backbone.size_divisibility, padding_constraints=self.backbone.padding_constraints
            ).tensor
            feats = self.backbone.extract_features(tensor)
            self.backbone_images += len(chunk)
            for i, k in enumerate(chunk):
                self._features[k] = {name: f[i] for name, f in feats.items()}
        levels = next(iter(self._features.values())).keys()
        return {
            name: torch.stack([torch.stack([self._features[k][name] for k in keys]) for keys in bag_keys])
            for name in levels
        }

    def __len__(self):
        """Number of images whose features are held."""
        return len(self._features)

    def evict(self, keep):
        """Drop every cached image for which ``keep(key)`` is False."""
        self._features = {k: v for k, v in self._features.items() if keep(k)}


@contextlib.contextmanager
def backbone_output(backbone, features):
    """Within this block ``backbone(x)`` returns ``features`` instead of computing them.

    The meta-architecture (GeneralizedRCNN, RetinaNet, SemanticSegmentor) then runs unchanged on cached features:
    pre-processing, proposals, heads and post-processing stay detectron2's own.
    """
    backbone.forward = lambda x: features
    try:
        yield
    finally:
        del backbone.forward
