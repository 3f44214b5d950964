"""Volumetric Attention (VA) for 3D medical image segmentation and detection, as a detectron2 project.

Importing this package registers its backbones, ROI heads and datasets with detectron2.
"""
from .config import add_va_config, expand_pixel_stats, get_va_cfg
from . import data, evaluation, inference, modeling  # noqa: F401  (registration side effects)

__all__ = ["add_va_config", "expand_pixel_stats", "get_va_cfg"]
