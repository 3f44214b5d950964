"""Registration of the project's datasets in detectron2's DatasetCatalog/MetadataCatalog.

Nothing is read at import: the root (``$VA_DATASETS``, default ``./datasets``) is resolved when a dataset is loaded.
Layout: raw data in ``$VA_DATASETS/{phantom,LiTS,DeepLesion}/``, caches in ``$VA_DATASETS/cache/{phantom,lits,
deeplesion}/`` (see datasets/README.md).
"""
import os
from functools import partial

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata

from .dataset_dicts import load_cached_dataset_dicts

__all__ = ["datasets_root", "cache_root_of", "register_all", "DATASETS"]

LITS_META = {
    "thing_classes": ["liver", "lesion"],
    "thing_colors": [(255, 0, 0), (0, 255, 0)],
    "stuff_classes": ["background", "liver", "lesion"],
    "stuff_colors": [(0, 0, 0), (255, 0, 0), (0, 255, 0)],
    "ignore_label": 255,
    "evaluator_type": "lits",
}
DEEPLESION_META = dict(LITS_META, thing_classes=["lesion"], thing_colors=[(0, 255, 0)], evaluator_type="deeplesion")

# name -> (cache folder under $VA_DATASETS/cache, split, metadata, raw folder, prepare command)
DATASETS = {
    "phantom_train": ("phantom", "train", LITS_META, "phantom", "tools/make_phantoms.py"),
    "phantom_val": ("phantom", "val", LITS_META, "phantom", "tools/make_phantoms.py"),
    "phantom_test": ("phantom", "val", LITS_META, "phantom", "tools/make_phantoms.py"),
    "lits_train": ("lits", "train", LITS_META, "LiTS", "tools/prepare_lits.py"),
    "lits_val": ("lits", "val", LITS_META, "LiTS", "tools/prepare_lits.py"),
    "lits_test": ("lits", "test", LITS_META, "LiTS", "tools/prepare_lits.py"),
    "deeplesion_train": ("deeplesion", "train", DEEPLESION_META, "DeepLesion", "tools/prepare_deeplesion.py"),
    "deeplesion_val": ("deeplesion", "val", DEEPLESION_META, "DeepLesion", "tools/prepare_deeplesion.py"),
    "deeplesion_test": ("deeplesion", "test", DEEPLESION_META, "DeepLesion", "tools/prepare_deeplesion.py"),
}


def datasets_root() -> str:
    """``$VA_DATASETS`` or ``./datasets``, read now (not at import)."""
    return os.environ.get("VA_DATASETS", "datasets")


def cache_root_of(name: str) -> str:
    return os.path.join(datasets_root(), "cache", DATASETS[name][0])


def _prepare_hint(name: str) -> str:
    folder, _, _, raw, tool = DATASETS[name]
    root = datasets_root()
    if tool.endswith("make_phantoms.py"):
        return f"python {tool} --out {os.path.join(root, raw)} --cache {os.path.join(root, 'cache', folder)}"
    return f"python {tool} --source {os.path.join(root, raw)} --cache {os.path.join(root, 'cache', folder)}"


def _load(name: str):
    _, split, _, _, _ = DATASETS[name]
    # DeepLesion trains and tests on the key slices only; the other slices are context
    return load_cached_dataset_dicts(cache_root_of(name), split, _prepare_hint(name),
                                     target_slices_only=name.startswith("deeplesion"))


class _CacheRootMetadata(Metadata):
    """Metadata whose ``cache_root`` follows ``$VA_DATASETS`` at the time it is read."""

    @property
    def cache_root(self) -> str:
        return cache_root_of(self.name)


def register_all():
    for name, (_, _, meta, _, _) in DATASETS.items():
        if name in DatasetCatalog.list():
            continue
        DatasetCatalog.register(name, partial(_load, name))
        MetadataCatalog[name] = _CacheRootMetadata(name=name)
        MetadataCatalog.get(name).set(**meta)


register_all()
