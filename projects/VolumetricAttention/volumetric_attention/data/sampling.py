"""Choosing which target slices to train on."""
import hashlib
from typing import List

__all__ = ["filter_negative_slices", "has_objects"]


def has_objects(record: dict) -> bool:
    """True when the slice has at least one annotated instance (liver or lesion)."""
    return bool(record.get("annotations"))


def _unit_hash(case_id: str, slice_index: int) -> float:
    digest = hashlib.sha1(f"{case_id}:{slice_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def filter_negative_slices(dataset_dicts: List[dict], fraction: float) -> List[dict]:
    """Keep every slice with objects and a deterministic ``fraction`` of the slices without any
    (``DATALOADER.NEGATIVE_SLICE_FRACTION``). The choice depends only on (case_id, slice_index), so it is the same
    in every process and run, whatever the order of the list."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"negative slice fraction must be in [0, 1], got {fraction}")
    if fraction >= 1.0:
        return list(dataset_dicts)
    return [d for d in dataset_dicts
            if has_objects(d) or _unit_hash(str(d["case_id"]), int(d["slice_index"])) < fraction]
