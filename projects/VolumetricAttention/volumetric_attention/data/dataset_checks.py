"""Checks of the configured datasets that ``train_net.py`` runs before it builds a model.

Without them an empty split surfaces as detectron2's ``Dataset 'lits_val' is empty!`` traceback, and a cache made
with other preprocessing settings only fails inside a data-loader worker, after the model is built, among hundreds of
lines. Both are read from the cache's ``index.json`` alone, so the checks cost milliseconds.
"""
import os
from collections import Counter
from typing import Iterable, List, Tuple

from .builtin import DATASETS, _prepare_hint, cache_root_of
from .cache import INDEX_FILE, CacheError, describe_mismatch, loader_settings, read_index, settings_mismatch

__all__ = ["DatasetCheckError", "check_datasets", "datasets_of"]

# settings key -> the config key that sets it
CONFIG_KEYS = {"hu_window": "INPUT.CT.HU_WINDOW", "slice_spacing": "INPUT.CT.SLICE_SPACING"}


class DatasetCheckError(ValueError):
    """A configured dataset cannot be used; the message is one line naming the dataset and what to do."""


def datasets_of(cfg, train: bool = True) -> List[Tuple[str, str]]:
    """``(config key, dataset name)`` of the datasets a run uses: DATASETS.TRAIN (when training) and DATASETS.TEST."""
    names = [("DATASETS.TRAIN", n) for n in cfg.DATASETS.TRAIN] if train else []
    return names + [("DATASETS.TEST", n) for n in cfg.DATASETS.TEST]


def check_datasets(cfg, datasets: Iterable[Tuple[str, str]]):
    """Raise :class:`DatasetCheckError` for the first project dataset that is not prepared, has no case, is a
    training dataset with fewer cases than ``DATASETS.TRAIN_FIRST_CASES`` (or that key is negative), or whose cache
    was prepared with other ``INPUT.CT`` settings than ``cfg``'s.

    Datasets this project does not register (a user's own) are left to detectron2.
    """
    expected = loader_settings(cfg.INPUT.CT.HU_WINDOW, cfg.INPUT.CT.SLICE_SPACING)
    for key, name in datasets:
        if name not in DATASETS:
            continue
        cache_root = cache_root_of(name)
        index_path = os.path.join(cache_root, INDEX_FILE)
        try:
            index = read_index(cache_root, _prepare_hint(name))
        except (CacheError, OSError, ValueError) as e:  # no index, or an unreadable one
            raise DatasetCheckError(f"dataset {name} ({key}): {' '.join(str(e).split())}") from None
        split = DATASETS[name][1]
        counts = Counter(str(c.get("split")) for c in index.get("cases", []))
        if not counts[split]:
            found = ", ".join(f"{s} {n}" for s, n in sorted(counts.items())) or "none"
            raise DatasetCheckError(
                f"dataset {name} ({key}) is empty: no case of split '{split}' in {index_path} (cases per split: "
                f"{found}); prepare more cases (every 4th labeled LiTS case goes to val) or set {key} to other "
                f"datasets, e.g. {key} \"('{_other_dataset(name, counts)}',)\""
                + (" or \"()\" to skip evaluation" if key == "DATASETS.TEST" else ""))
        first = cfg.DATASETS.TRAIN_FIRST_CASES
        if name in cfg.DATASETS.TRAIN and not 0 <= first <= counts[split]:
            raise DatasetCheckError(
                f"dataset {name} ({key}): DATASETS.TRAIN_FIRST_CASES {first} must be between 0 (every case) and the "
                f"{counts[split]} cases of split '{split}' in {index_path}")
        diff = settings_mismatch(index.get("settings", {}), expected)
        if diff:
            keep = " ".join(f"{CONFIG_KEYS.get(k, k)} {_yaml_value(have)}" for k, (have, _) in diff.items())
            raise DatasetCheckError(
                f"dataset {name} ({key}): {index_path} was prepared with other settings than INPUT.CT "
                f"({describe_mismatch(diff)}); re-run {_prepare_hint(name)} --config-file <this config>, "
                f"or use the cache's settings: {keep}")


def _other_dataset(name, counts):
    """A dataset of the same cache with cases, to suggest in place of an empty one."""
    prefix = name.rsplit("_", 1)[0]
    for candidate, (_, split, _, _, _) in DATASETS.items():
        if candidate.startswith(prefix + "_") and candidate != name and counts.get(split):
            return candidate
    return f"{prefix}_train"


def _yaml_value(v):
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(str(x) for x in v) + ")"
    return str(v)
