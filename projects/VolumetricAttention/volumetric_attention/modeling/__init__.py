"""Volumetric attention modules, the VA-FPN backbone, deformable ResNet blocks and VA ROI heads.

Importing this package registers ``build_va_resnet_fpn_backbone``, ``build_va_retinanet_resnet_fpn_backbone``,
``build_early_fusion_resnet_fpn_backbone``, ``build_3dce_resnet_fpn_backbone`` (BACKBONE_REGISTRY),
``VAStandardROIHeads`` (ROI_HEADS_REGISTRY) and
``DiceCESemSegFPNHead`` (SEM_SEG_HEADS_REGISTRY).
"""
from .attention import VolumetricAttention, VolumetricChannelAttention, VolumetricSpatialAttention
from .deformable import DeformBasicBlock, DeformBottleneckBlock, DeformConv, build_deformable_resnet_backbone
from .dice_ce_head import DiceCESemSegFPNHead, soft_dice_loss
from .early_fusion import build_early_fusion_resnet_fpn_backbone
from .late_fusion import BagConcatFusion, build_3dce_resnet_fpn_backbone
from .va_fpn import (
    BAG_SUFFIX,
    VAFPN,
    bag_size_from_cfg,
    build_va_resnet_fpn_backbone,
    build_va_retinanet_resnet_fpn_backbone,
)
from .va_roi_heads import VAStandardROIHeads, VolumetricROIPooler

__all__ = [
    "VolumetricAttention",
    "VolumetricChannelAttention",
    "VolumetricSpatialAttention",
    "VAFPN",
    "BAG_SUFFIX",
    "bag_size_from_cfg",
    "build_va_resnet_fpn_backbone",
    "build_va_retinanet_resnet_fpn_backbone",
    "DeformConv",
    "DeformBottleneckBlock",
    "DeformBasicBlock",
    "build_deformable_resnet_backbone",
    "VAStandardROIHeads",
    "DiceCESemSegFPNHead",
    "soft_dice_loss",
    "build_early_fusion_resnet_fpn_backbone",
    "BagConcatFusion",
    "build_3dce_resnet_fpn_backbone",
    "VolumetricROIPooler",
]
