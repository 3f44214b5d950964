"""Segment whole CT volumes with a trained VA model: label map on the input grid plus a 3D lesion list."""
import dataclasses
import logging
import os
from typing import List, Optional

import numpy as np
import torch

from detectron2.data import transforms as T
from detectron2.modeling import build_model

from ..config import bag_size_from_cfg
from ..data.preprocessing import preprocess_volume
from ..data.volume_io import Geometry, read_volume, write_label_volume
from ..utils.progress import progress_bar
from ..utils.tensor_checkpoint import load_weights_strict
from .case_loop import CaseLoop
from .lesion_report import lesion_report
from .slice_labels import LESION, output_to_label_slice

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class VolumePrediction:
    """Result of :class:`VolumePredictor` for one volume.

    Attributes:
        labels: uint8 (Z0, H, W) canonical array on the input's own grid: 0 background, 1 liver, 2 lesion.
        lesion_score: float32 (Z0, H, W): per-voxel lesion confidence (max instance score, or softmax probability).
        geometry: the input's grid; ``write`` puts ``labels`` back onto it exactly.
        lesions: one dict per 3D lesion (see :func:`lesion_report`).
        backbone_images: 2.5D images that went through the backbone (Z·N naive, about Z + 3(N-1) cached).
    """

    labels: np.ndarray
    lesion_score: np.ndarray
    geometry: Geometry
    lesions: List[dict]
    backbone_images: int

    def write(self, label_path):
        """Write the label map (NIfTI/NRRD/... by extension) on the input grid, atomically."""
        write_label_volume(self.labels, self.geometry, label_path)


class VolumePredictor:
    """Run a trained VA model over every slice of a CT volume.

    The volume goes through the training preprocessing (``INPUT.CT.HU_WINDOW``, ``INPUT.CT.SLICE_SPACING``), each slice
    is a target with its bag of N 2.5D images, slices are batched, per-slice outputs become label slices
    (``TEST.CT.SCORE_THRESH``, ``TEST.CT.LESION_IN_LIVER``), and the stack is resampled back to the input's slices.
    The lesion list groups lesion voxels with ``TEST.CT.LESION_CONNECTIVITY``, as the LiTS lesion metrics do.

    With ``use_feature_cache`` (default) each 2.5D image's backbone features are computed once per volume and reused
    for every target whose bag contains it (the VA-FPN backbone's ``extract_features`` / ``attend``); the naive path
    runs the backbone on all N images of every bag. Both give the same output. The loop is :class:`CaseLoop`, the one
    case-level evaluation runs too; its cache holds at most N + ``batch_size`` + 1 images' features at a time.

    Args:
        cfg: a config from :func:`volumetric_attention.get_va_cfg`.
        weights: checkpoint path; defaults to ``cfg.MODEL.WEIGHTS``. Every model parameter must be in it.
        batch_size: target slices per forward pass.
        use_feature_cache: reuse backbone features across overlapping bags.
        progress: show a progress bar (:func:`~volumetric_attention.utils.progress.progress_bar`: live on a
            terminal, a few plain lines in a log).
    """

    def __init__(self, cfg, weights=None, batch_size=4, use_feature_cache=True, progress=True):
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg).eval()
        weights = weights if weights is not None else cfg.MODEL.WEIGHTS
        load_weights_strict(self.model, weights)
        self.bag_size = bag_size_from_cfg(cfg)
        self.batch_size = batch_size
        self.use_feature_cache = use_feature_cache
        self.progress = progress
        self.resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
        self.score_thresh = cfg.TEST.CT.SCORE_THRESH
        self.lesion_in_liver = cfg.TEST.CT.LESION_IN_LIVER
        self.connectivity = cfg.TEST.CT.LESION_CONNECTIVITY

    def __call__(self, path) -> VolumePrediction:
        """Segment the volume at ``path`` (NIfTI, NRRD/MHA or a DICOM series folder)."""
        hu, geometry = read_volume(path)
        return self.predict(hu, geometry, name=os.path.basename(os.fspath(path).rstrip("/")))

    def predict(self, hu_zyx, geometry: Geometry, name: Optional[str] = None) -> VolumePrediction:
        """Segment a canonical (Z0, H, W) HU array whose grid is ``geometry``."""
        image, resampler = preprocess_volume(
            hu_zyx, geometry.spacing_zyx, self.cfg.INPUT.CT.HU_WINDOW, self.cfg.INPUT.CT.SLICE_SPACING
        )
        labels, lesion_score, backbone_images = self.predict_cache_grid(image, name)
        labels = resampler.to_original(labels)
        lesion_score = resampler.to_original(lesion_score)
        return VolumePrediction(
            labels=labels,
            lesion_score=lesion_score,
            geometry=geometry,
            lesions=lesion_report(labels == LESION, lesion_score, geometry, self.connectivity),
            backbone_images=backbone_images,
        )

    @torch.no_grad()
    def predict_cache_grid(self, image_zyx, name: Optional[str] = None):
        """Segment a preprocessed volume (windowed to [0, 1], resampled along z), slice by slice.

        Args:
            image_zyx: (Z, H, W) float array in [0, 1], e.g. a cache's ``image.npy``.
        Returns:
            labels: uint8 (Z, H, W); lesion_score: float32 (Z, H, W); backbone_images: int.
        """
        num_slices, height, width = image_zyx.shape
        labels = np.zeros((num_slices, height, width), np.uint8)
        lesion_score = np.zeros((num_slices, height, width), np.float32)
        loop = CaseLoop(self.model, self.bag_size, [self.resize], self.batch_size, self.use_feature_cache)
        with progress_bar(total=num_slices, desc=name or "volume", unit="slice", disable=not self.progress,
                          leave=False) as bar:
            for targets, outputs in loop.run(image_zyx):
                for z, output in zip(targets, outputs):
                    labels[z] = output_to_label_slice(output, self.score_thresh, self.lesion_in_liver, height, width)
                    lesion_score[z] = _lesion_score_slice(output, self.score_thresh, height, width)
                bar.update(len(targets))
        return labels, lesion_score, loop.backbone_images


def _lesion_score_slice(output, score_thresh, height, width):
    """Per-pixel lesion confidence (H, W): the best lesion instance score covering it, or the lesion probability."""
    instances = output.get("instances")
    if instances is not None and instances.has("pred_masks"):
        keep = (instances.scores >= score_thresh) & (instances.pred_classes == 1)
        if not keep.any():
            return np.zeros((height, width), np.float32)
        masks = instances.pred_masks[keep].float()
        return (masks * instances.scores[keep][:, None, None]).amax(dim=0).cpu().numpy()
    if "sem_seg" in output:
        return output["sem_seg"].softmax(dim=0)[2].cpu().numpy()
    return np.zeros((height, width), np.float32)
