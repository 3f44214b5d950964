"""Dataset dicts (one per target slice) from a prepared cache; what the registered datasets return."""
import os
from typing import List

from detectron2.structures import BoxMode

from .cache import CacheError, load_case, read_index

__all__ = ["load_cached_dataset_dicts", "first_cases"]


def load_cached_dataset_dicts(cache_root, split: str, prepare_hint: str = "", target_slices_only: bool = False
                              ) -> List[dict]:
    """Dataset dicts of the cases of ``split`` in the cache at ``cache_root``.

    Each dict: file_name (the case's image.npy), image_id (int, unique in the list), case_id, slice_index (cache
    grid), num_slices, height, width, case_dir, and for labeled cases ``annotations`` (bbox XYXY_ABS, category_id,
    segmentation RLE for LiTS, iscrowd 0, plus lesion_type/diameter_mm for DeepLesion).

    Args:
        target_slices_only: one dict per annotated target slice (DeepLesion: the key slice), instead of every slice.
    """
    cache_root = os.fspath(cache_root)
    index = read_index(cache_root, prepare_hint)
    case_ids = [c["case_id"] for c in index["cases"] if c["split"] == split]
    dicts, image_id = [], 0
    for case_id in case_ids:
        case_dir = os.path.join(cache_root, case_id)
        try:
            case = load_case(case_dir)
        except CacheError as e:
            raise CacheError(f"{e} (listed in {os.path.join(cache_root, 'index.json')})") from None
        meta = case.meta
        annotations = case.annotations() if meta.get("labeled") else None
        slices = meta.get("target_slices") if target_slices_only else None
        if slices is None:
            slices = range(int(meta["num_slices"]))
        for z in slices:
            record = {
                "file_name": os.path.join(case_dir, "image.npy"),
                "image_id": image_id,
                "case_id": case_id,
                "slice_index": int(z),
                "num_slices": int(meta["num_slices"]),
                "height": int(meta["height"]),
                "width": int(meta["width"]),
                "case_dir": case_dir,
            }
            if annotations is not None:
                anns = []
                for a in annotations.get(int(z), []):
                    a = dict(a)
                    a["bbox_mode"] = BoxMode(a["bbox_mode"])
                    anns.append(a)
                record["annotations"] = anns
            dicts.append(record)
            image_id += 1
    return dicts


def first_cases(dicts: List[dict], num_cases: int, dataset_name: str) -> List[dict]:
    """The dicts of the first ``num_cases`` cases of ``dicts`` (cases in their order of first appearance, the split's
    order), in their given order; every dict for ``num_cases`` 0.

    Raises a one-line ValueError naming the dataset when it has fewer cases, or for a negative ``num_cases``.
    """
    if num_cases < 0:
        raise ValueError(f"DATASETS.TRAIN_FIRST_CASES {num_cases}: must be 0 (every case of {dataset_name}) or more")
    if num_cases == 0:
        return list(dicts)
    order = list(dict.fromkeys(str(d["case_id"]) for d in dicts))
    if len(order) < num_cases:
        raise ValueError(f"DATASETS.TRAIN_FIRST_CASES {num_cases}: {dataset_name} has only {len(order)} cases")
    kept = set(order[:num_cases])
    return [d for d in dicts if str(d["case_id"]) in kept]
