"""VA after ROIAlign: the "RCNN" location of the paper's Table 2e.

With ``MODEL.VA.LOCATION: "RCNN"`` the VA-FPN backbone applies no attention; next to the target's features ``p<k>``
it returns the bag's per-level features ``p<k>_bag`` ``[B, N, C, h, w]``. The RPN reads ``p<k>`` as usual.
:class:`VAStandardROIHeads` reads the ``_bag`` keys instead: its poolers are wrapped in :class:`VolumetricROIPooler`,
which ROI-aligns every bag member with the same proposal boxes and runs VA on the pooled features
(``[R, N, C, 7, 7]`` for the box head, ``[R, N, C, 14, 14]`` for the mask head) before the usual heads. The box and
mask branches have a VA module each (``roi_heads.box_pooler.va.*``, ``roi_heads.mask_pooler.va.*``); every other
parameter name is detectron2's.
"""
from typing import List

import torch
from torch import nn

from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import Boxes

from ..config import bag_members_from_cfg
from .attention import VolumetricAttention
from .va_fpn import BAG_SUFFIX

__all__ = ["VolumetricROIPooler", "VAStandardROIHeads"]


class VolumetricROIPooler(nn.Module):
    """An :class:`ROIPooler` over a bag of feature maps, followed by volumetric attention on the pooled target."""

    def __init__(self, pooler: ROIPooler, va: nn.Module, bag_size: int):
        """
        Args:
            pooler: detectron2's pooler for single feature maps.
            va: module with ``forward(target [R, C, s, s], bag [R, N, C, s, s]) -> [R, C, s, s]``.
            bag_size: N; the target is bag member N // 2.
        """
        super().__init__()
        self.pooler = pooler
        self.va = va
        self.bag_size = bag_size

    def forward(self, x: List[torch.Tensor], box_lists: List[Boxes]) -> torch.Tensor:
        """
        Args:
            x: per level ``[B, N, C, h, w]``; box_lists: B :class:`Boxes` (image coordinates).
        Returns:
            ``[R, C, s, s]``, R the total number of boxes: the attended target's region features.
        """
        pooled = torch.stack(
            [self.pooler([level[:, k] for level in x], box_lists) for k in range(self.bag_size)], dim=1
        )
        return self.va(pooled[:, self.bag_size // 2], pooled)


@ROI_HEADS_REGISTRY.register()
class VAStandardROIHeads(StandardROIHeads):
    """:class:`StandardROIHeads` whose box and mask poolers ROI-align the whole bag and apply VA (LOCATION "RCNN").

    Needs the VA-FPN backbone with ``MODEL.VA.ENABLED: True`` and ``MODEL.VA.LOCATION: "RCNN"``.
    """

    @classmethod
    def from_config(cls, cfg, input_shape):
        if not cfg.MODEL.VA.ENABLED or cfg.MODEL.VA.LOCATION != "RCNN":
            raise ValueError("VAStandardROIHeads needs MODEL.VA.ENABLED True and MODEL.VA.LOCATION 'RCNN'")
        if cfg.MODEL.KEYPOINT_ON:
            raise ValueError("VAStandardROIHeads does not support keypoints")
        ret = super().from_config(cfg, input_shape)
        n, _ = bag_members_from_cfg(cfg)
        channels = input_shape[cfg.MODEL.ROI_HEADS.IN_FEATURES[0]].channels
        ret["box_in_features"] = [f + BAG_SUFFIX for f in ret["box_in_features"]]
        ret["box_pooler"] = VolumetricROIPooler(ret["box_pooler"], VolumetricAttention(cfg, channels), n)
        if cfg.MODEL.MASK_ON:
            if ret.get("mask_pooler") is None:
                raise ValueError("VAStandardROIHeads needs ROI_MASK_HEAD.POOLER_TYPE set (it pools the bag)")
            ret["mask_in_features"] = [f + BAG_SUFFIX for f in ret["mask_in_features"]]
            ret["mask_pooler"] = VolumetricROIPooler(ret["mask_pooler"], VolumetricAttention(cfg, channels), n)
        return ret

    def forward(self, images, features, proposals, targets=None):
        missing = [f for f in self.box_in_features if f not in features]
        if missing:
            raise ValueError(f"VAStandardROIHeads needs bag features {missing}: use the VA-FPN backbone with "
                             "MODEL.VA.LOCATION 'RCNN'")
        return super().forward(images, features, proposals, targets)
