"""The early-fusion baseline: the slices of a VA bag as the channels of one image, no attention.

The question a reader asks first of VA is whether it beats simply showing the network more slices. This backbone
sees exactly the slices a VA model of bag N sees (the mapper's ``[3·N, H, W]`` input: 2.5D images at z - 3(N//2)
.. z + 3(N//2), slices z - 3(N//2) - 1 .. z + 3(N//2) + 1 in order), but fuses them at the first convolution:
detectron2's ResNet-FPN with its stem conv widened to 3·N input channels, nothing else changed. Set
``MODEL.BACKBONE.NAME: "build_early_fusion_resnet_fpn_backbone"`` with ``MODEL.VA.ENABLED: True`` and
``MODEL.VA.BAG_SIZE: N`` (the bag keys shape the input; the attention keys are not used).

The backbone is detectron2's :class:`FPN`, so it has no per-image stage: volume inference runs it once per target.
A pretrained 3-channel stem does not fit the widened conv, and detectron2's checkpointer skips it with a warning
(the study trains from scratch).
"""
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, FPN
from detectron2.modeling.backbone.fpn import LastLevelMaxPool

from ..config import bag_size_from_cfg
from .deformable import build_deformable_resnet_backbone

__all__ = ["build_early_fusion_resnet_fpn_backbone"]


@BACKBONE_REGISTRY.register()
def build_early_fusion_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """ResNet-FPN (P2-P6) over the bag's 3·N slices as one ``[B, 3·N, H, W]`` image."""
    n = bag_size_from_cfg(cfg)
    if input_shape.channels != 3 * n:
        raise ValueError(f"the early-fusion backbone needs {3 * n} input channels (3 x bag of {n}) but "
                         f"MODEL.PIXEL_MEAN has {input_shape.channels} values; build the config with get_va_cfg()")
    bottom_up = build_deformable_resnet_backbone(cfg, input_shape)
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
