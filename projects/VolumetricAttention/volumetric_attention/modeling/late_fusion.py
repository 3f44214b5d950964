"""The 3DCE baseline (Yan et al., MICCAI 2018: 3D context enhanced region-based CNN): late fusion of the bag.

3DCE runs every 2.5D image of a group of neighbouring slices through one shared 2D network and concatenates their
feature maps, so the layers after the concatenation see 3D context; the paper's DeepLesion comparison is against it.
Here the shared network is the VA-FPN's (:class:`~.va_fpn.VAFPN`: the same bag, the same per-image stage, the same
feature cache in volume inference), and on every FPN level the heads read, the N maps of the bag are concatenated
and reduced back to C channels by a 1x1 conv (:class:`BagConcatFusion`) in place of attention. 3DCE concatenated
conv5 maps before ROI pooling and the RCNN head; per FPN level before the RPN, the RPN, the ROI heads and a
semantic FPN head all read the fused maps, so the one backbone serves detection and segmentation alike.

Set ``MODEL.BACKBONE.NAME: "build_3dce_resnet_fpn_backbone"`` with ``MODEL.VA.ENABLED: True`` and
``MODEL.VA.BAG_SIZE: N`` (the bag keys shape the input; the attention keys are not used). The fusion convs are
the backbone's ``va.<level>`` modules, so a detectron2 FPN checkpoint loads with only their keys missing.
"""
import torch
from torch import nn

from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY

from ..config import bag_members_from_cfg
from .va_fpn import VAFPN, build_bag_fpn, last_level_max_pool

__all__ = ["BagConcatFusion", "build_3dce_resnet_fpn_backbone"]


class BagConcatFusion(nn.Module):
    """``Conv1x1(concat_k bag[:, k])``: the N feature maps of a bag fused into one, 3DCE's late fusion.

    At init the conv passes the target's map through unchanged (identity on its C input channels, zero on the
    others): a pretrained 2D model starts as itself, and every weight still gets a gradient from the first step.
    """

    def __init__(self, channels: int, bag_size: int):
        """
        Args:
            channels: C, channels of one level's map.
            bag_size: N, maps per bag (odd; the target at N // 2).
        """
        super().__init__()
        self.bag_size = bag_size
        self.reduce = nn.Conv2d(channels * bag_size, channels, kernel_size=1)
        with torch.no_grad():
            self.reduce.weight.zero_()
            self.reduce.bias.zero_()
            start = channels * (bag_size // 2)
            self.reduce.weight[:, start:start + channels, 0, 0] = torch.eye(channels)

    def forward(self, target: torch.Tensor, bag: torch.Tensor) -> torch.Tensor:
        """
        Args:
            target: ``[B, C, h, w]``, the target's map (it is also ``bag[:, N // 2]``; kept for VA's signature).
            bag: ``[B, N, C, h, w]``, the bag's maps sorted along z.
        Returns:
            ``[B, C, h, w]``.
        """
        b, n, c, h, w = bag.shape
        if n != self.bag_size:
            raise ValueError(f"BagConcatFusion was built for a bag of {self.bag_size}, got {n}")
        return self.reduce(bag.reshape(b, n * c, h, w))


@BACKBONE_REGISTRY.register()
def build_3dce_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> VAFPN:
    """ResNet-FPN (P2-P6) shared over the bag, the bag's maps concatenated and reduced per level (3DCE)."""
    n, _ = bag_members_from_cfg(cfg)
    if n < 2:
        raise ValueError("the 3DCE backbone fuses a bag: set MODEL.VA.ENABLED True and MODEL.VA.BAG_SIZE >= 3")
    if cfg.MODEL.VA.LOCATION != "RPN":
        raise ValueError(f"the 3DCE backbone fuses before the RPN; MODEL.VA.LOCATION {cfg.MODEL.VA.LOCATION!r} "
                         f"is not supported with it")
    return build_bag_fpn(cfg, input_shape, last_level_max_pool, lambda channels: BagConcatFusion(channels, n))
