"""CT data: volume I/O with geometry, preprocessing, the cache, dataset registration, the bag mapper and slice
groups.

Importing this package registers the datasets (lazily: no file is read until a dataset is loaded).
"""
from . import builtin  # noqa: F401  (registration side effect)
from .bag import bag_slice_indices, make_bag_array
from .cache import CachedCase, CacheError, load_case
from .dataset_dicts import first_cases
from .mapper import VolumetricDatasetMapper
from .preprocessing import SliceResampler, preprocess_volume, window
from .slice_groups import SliceGroupMapper, flatten_groups, make_slice_groups
from .volume_io import Geometry, VolumeError, read_volume, write_label_volume

__all__ = ["first_cases", "bag_slice_indices", "make_bag_array", "CacheError", "CachedCase", "load_case",
           "VolumetricDatasetMapper",
           "SliceResampler", "preprocess_volume", "window", "make_slice_groups",
           "SliceGroupMapper", "flatten_groups", "Geometry", "VolumeError", "read_volume", "write_label_volume"]
