"""``VolumetricDatasetMapper``: dataset dict of one target slice -> model input with the bag packed into channels."""
import copy
import logging
from collections import OrderedDict
from typing import List, Optional, Tuple

import numpy as np
import torch

from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from ..config import bag_size_from_cfg
from .bag import make_bag_array
from .cache import CachedCase, describe_mismatch, load_case, loader_settings, settings_mismatch

__all__ = ["VolumetricDatasetMapper"]

logger = logging.getLogger(__name__)


def _rle_to_polygons(rle: dict) -> List[List[float]]:
    from detectron2.utils.visualizer import GenericMask

    h, w = rle["size"]
    return GenericMask(rle, h, w).polygons


class _BagAugInput(T.AugInput):
    """``AugInput`` of a bag (H, W, 3N) whose image transforms act on each 2.5D image (3 channels) on its own.

    Augmentations still see the whole bag when they draw their transforms. One interpolation over all 3N channels
    rounds some channels differently from others (vectorised and tail channels), so a 2.5D image resized on its own
    has the same pixels at every bag position and in the bag of any target: the bags of one slice group share
    bit-identical images, and training sees what volume inference (which resizes each 2.5D image) sees.
    """

    def transform(self, tfm: T.Transform) -> None:
        if isinstance(tfm, T.TransformList):  # transform by transform, as replaying a TransformList does
            for t in tfm.transforms:
                self.transform(t)
            return
        parts = [np.ascontiguousarray(self.image[..., c:c + 3]) for c in range(0, self.image.shape[2], 3)]
        self.image = np.concatenate([tfm.apply_image(p) for p in parts], axis=2)
        if self.boxes is not None:
            self.boxes = tfm.apply_box(self.boxes)
        if self.sem_seg is not None:
            self.sem_seg = tfm.apply_segmentation(self.sem_seg)


class VolumetricDatasetMapper:
    """Reads the bag around a dataset dict's target slice from the cache and applies one geometric transform to all
    of it (to each 2.5D image on its own) and to the target's annotations.

    Returns a dict with:
        image: float32 tensor (3N, H', W'), 0..255 scale; channels are N 2.5D images of 3 slices, target in the middle.
        instances: target slice's ``Instances`` (training; boxes, classes and masks when the dicts have them).
        sem_seg: int64 tensor (H', W'), 0 background / 1 liver / 2 lesion, when "sem_seg" is in INPUT.CT.TARGETS and
            the case is labeled.
        file_name, image_id, case_id, slice_index, height, width (pre-transform), num_slices: passed through.
    """

    @configurable
    def __init__(self, is_train: bool, *, augmentations: List, bag_size: int, hu_window, slice_spacing: float,
                 targets=("instances",), mask_format: str = "bitmask", cache_size: int = 8):
        """
        Args:
            is_train: keep annotations (train) or drop them (inference), as detectron2's DatasetMapper does.
            augmentations: detectron2 augmentations; applied identically to every channel of the bag.
            bag_size: N (odd).
            hu_window, slice_spacing: the preprocessing the model expects; a cached case made with other settings
                is an error.
            targets: any of "instances", "sem_seg".
            mask_format: "bitmask" or "polygon".
            cache_size: how many opened cases (memmaps) to keep per worker.
        """
        unknown = set(targets) - {"instances", "sem_seg"}
        if unknown:
            raise ValueError(f"INPUT.CT.TARGETS: unknown target(s) {sorted(unknown)}; use 'instances', 'sem_seg'")
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.bag_size = int(bag_size)
        self.expected_settings = loader_settings(hu_window, slice_spacing)
        self.targets = tuple(targets)
        self.mask_format = mask_format
        self._cases: "OrderedDict[str, CachedCase]" = OrderedDict()
        self._cache_size = cache_size
        logger.info(f"[VolumetricDatasetMapper] bag size {bag_size}, augmentations {augmentations}")

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return {
            "is_train": is_train,
            "augmentations": utils.build_augmentation(cfg, is_train),
            "bag_size": bag_size_from_cfg(cfg),
            "hu_window": tuple(cfg.INPUT.CT.HU_WINDOW),
            "slice_spacing": cfg.INPUT.CT.SLICE_SPACING,
            "targets": tuple(cfg.INPUT.CT.TARGETS),
            "mask_format": cfg.INPUT.MASK_FORMAT,
        }

    def open_case(self, case_dir: str) -> CachedCase:
        """The cached case at ``case_dir`` (kept open in a small LRU); a cache made with other INPUT.CT settings
        than this mapper's is a one-line ValueError."""
        case = self._cases.get(case_dir)
        if case is not None:
            self._cases.move_to_end(case_dir)
            return case
        case = load_case(case_dir)
        diff = settings_mismatch(case.settings, self.expected_settings)
        if diff:
            raise ValueError(f"{case_dir}: cache was prepared with other settings than INPUT.CT "
                             f"({describe_mismatch(diff)}); "
                             "re-run the prepare tool with this config")
        self._cases[case_dir] = case
        if len(self._cases) > self._cache_size:
            self._cases.popitem(last=False)
        return case

    def __call__(self, dataset_dict: dict) -> dict:
        return self.map_with_transforms(dataset_dict)[0]

    def map_with_transforms(self, dataset_dict: dict, transforms: Optional[T.TransformList] = None
                            ) -> Tuple[dict, T.TransformList]:
        """Map one dataset dict, drawing the augmentation or applying a given one.

        Args:
            dataset_dict: one target slice's dataset dict.
            transforms: the transforms another call returned for a slice of the same case (same H, W), applied
                as they are instead of drawing new ones; None draws them from the augmentations.
        Returns:
            (what :meth:`__call__` returns, the transforms applied to the bag and the annotations).
        """
        dataset_dict = copy.copy(dataset_dict)
        case = self.open_case(dataset_dict["case_dir"])
        z = int(dataset_dict["slice_index"])
        image = make_bag_array(case.image, z, self.bag_size)

        want_sem_seg = "sem_seg" in self.targets and case.label is not None
        sem_seg = np.asarray(case.label[z]) if want_sem_seg else None
        aug_input = _BagAugInput(image, sem_seg=sem_seg)
        if transforms is None:
            transforms = self.augmentations(aug_input)
        else:
            aug_input.transform(transforms)
        image, sem_seg = aug_input.image, aug_input.sem_seg
        image_shape = image.shape[:2]

        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if sem_seg is not None:
            dataset_dict["sem_seg"] = torch.as_tensor(sem_seg.astype(np.int64))

        annos = dataset_dict.pop("annotations", None)
        if not self.is_train or annos is None or "instances" not in self.targets:
            return dataset_dict, transforms

        annos = [self._prepare_annotation(a) for a in annos if a.get("iscrowd", 0) == 0]
        annos = [utils.transform_instance_annotations(a, transforms, image_shape) for a in annos if a is not None]
        instances = utils.annotations_to_instances(annos, image_shape, mask_format=self.mask_format)
        dataset_dict["instances"] = utils.filter_empty_instances(instances)
        return dataset_dict, transforms

    def _prepare_annotation(self, anno: dict) -> Optional[dict]:
        anno = dict(anno)
        segm = anno.get("segmentation")
        if segm is None:
            return anno
        if self.mask_format == "polygon" and isinstance(segm, dict):
            polygons = _rle_to_polygons(segm)
            if not polygons:
                # a component too thin to give a polygon cannot be trained on with polygon masks
                return None
            anno["segmentation"] = polygons
        elif isinstance(segm, dict) and isinstance(segm["counts"], str):
            anno["segmentation"] = {"size": segm["size"], "counts": segm["counts"].encode("ascii")}
        return anno
