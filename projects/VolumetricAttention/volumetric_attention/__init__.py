"""Volumetric Attention (VA) for 3D medical image segmentation and detection, as a detectron2 project.

Importing this package registers its backbones, ROI heads and datasets with detectron2.
"""
from .utils.third_party_noise import quiet_import_noise

# detectron2 and fvcore print deprecation notices of theirs on import (see utils/third_party_noise.py); no user
# can act on them
with quiet_import_noise():
    from . import data, evaluation, inference, modeling  # noqa: F401  (registration side effects)
    from .config import add_va_config, expand_pixel_stats, get_va_cfg

__all__ = ["add_va_config", "expand_pixel_stats", "get_va_cfg"]
