"""Groups of target slices whose bags overlap, loaded together (``DATALOADER.SHARED_BAG_TARGETS``).

Bag image k of target z is centred on slice z + 3k (:func:`~.bag.bag_slice_indices`), so the bags of targets
z and z + 3 of one case share N - 1 of their N 2.5D images. A group of G such targets, loaded with one augmentation,
holds G + N - 1 distinct 2.5D images instead of G·N, and the VA-FPN backbone runs each of them once
(:meth:`~volumetric_attention.modeling.VAFPN.forward`).
"""
from collections import defaultdict
from typing import Dict, List

from detectron2.config import configurable

from .mapper import VolumetricDatasetMapper

__all__ = ["make_slice_groups", "SliceGroupMapper", "flatten_groups"]


def make_slice_groups(dataset_dicts: List[dict], kept_dicts: List[dict], group_size: int, step: int = 3
                      ) -> List[List[dict]]:
    """One group per kept target: the dicts of its case at slice indices ``step`` apart, the kept target among them.

    The group of kept target z is z, z + step, ..., z + step·(G-1). When that runs past the last slice of the case's
    dicts, the group starts ``step`` earlier as many times as it takes to fit (never before the case's first slice),
    so the kept target stays a member but is no longer the first one. Only slices that have a dict in
    ``dataset_dicts`` become members: a case with fewer than step·(G-1) + 1 slices, or a dataset whose dicts are
    sparse key slices (DeepLesion: usually one per case), gives shorter groups, down to the kept target alone.
    Members other than the kept target come from ``dataset_dicts`` as they are, so they may be slices that are not
    among ``kept_dicts``.

    Args:
        dataset_dicts: every dataset dict (case_id, slice_index, ...) the members are drawn from.
        kept_dicts: the targets to sample; each must be in ``dataset_dicts`` (same case_id and slice_index).
        group_size: G >= 1 (1 gives one single-dict group per kept target).
        step: slice distance between members; 3, the bag's distance between adjacent 2.5D images.
    Returns:
        ``len(kept_dicts)`` lists of 1..G dicts each, members sorted by slice index.
    """
    if group_size < 1:
        raise ValueError(f"group size must be >= 1, got {group_size}")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    by_slice: Dict[str, Dict[int, dict]] = defaultdict(dict)
    for d in dataset_dicts:
        by_slice[str(d["case_id"])][int(d["slice_index"])] = d
    bounds = {case: (min(slices), max(slices)) for case, slices in by_slice.items()}

    groups = []
    for kept in kept_dicts:
        case, z = str(kept["case_id"]), int(kept["slice_index"])
        if z not in by_slice[case]:
            raise ValueError(f"kept dict {case} slice {z} is not among the dataset dicts")
        first, last = bounds[case]
        overrun = z + step * (group_size - 1) - last
        shift = min(max(0, -(-overrun // step)), (z - first) // step)  # ceil(overrun / step), start >= first
        start = z - step * shift
        members = [start + step * j for j in range(group_size)]
        groups.append([by_slice[case][s] for s in members if s in by_slice[case]])
    return groups


class SliceGroupMapper:
    """Maps a group of dataset dicts of one case with :class:`VolumetricDatasetMapper` and ONE augmentation for all
    of them: the first member draws it, the others get the same transforms, so a 2.5D image that two members' bags
    share is bit-identical in both mapped images."""

    @configurable
    def __init__(self, mapper: VolumetricDatasetMapper):
        """
        Args:
            mapper: maps one dict; its ``map_with_transforms`` is called once per member.
        """
        self.mapper = mapper

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return {"mapper": VolumetricDatasetMapper(cfg, is_train=is_train)}

    def __call__(self, group: List[dict]) -> List[dict]:
        """
        Args:
            group: 1..G dataset dicts of one case (e.g. from :func:`make_slice_groups`).
        Returns:
            the mapped dicts, in the group's order (see :class:`VolumetricDatasetMapper` for their keys).
        """
        cases = {str(d["case_id"]) for d in group}
        if len(cases) != 1:
            raise ValueError(f"a slice group must hold one case, got {sorted(cases)}")
        mapped, transforms = [], None
        for d in group:
            out, transforms = self.mapper.map_with_transforms(d, transforms)
            mapped.append(out)
        return mapped


def flatten_groups(batch: List[List[dict]]) -> List[dict]:
    """Collate function of the train loader: a batch of mapped groups -> one list of mapped dicts, group by group."""
    return [d for group in batch for d in group]
