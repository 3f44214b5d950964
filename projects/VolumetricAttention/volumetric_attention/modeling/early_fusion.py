"""The early-fusion baseline: the slices of a VA bag as the channels of one image, no attention.

It is the control for VA: does attention over the bag beat showing the network the same slices at once? This backbone
sees exactly the slices a VA model of bag N sees (the mapper's ``[3·N, H, W]`` input: 2.5D images at z - 3(N//2)
.. z + 3(N//2), slices z - 3(N//2) - 1 .. z + 3(N//2) + 1 in order), but fuses them at the first convolution:
detectron2's ResNet-FPN with its stem conv widened to 3·N input channels, nothing else changed. Set
``MODEL.BACKBONE.NAME: "build_early_fusion_resnet_fpn_backbone"`` with ``MODEL.VA.ENABLED: True`` and
``MODEL.VA.BAG_SIZE: N`` (the bag keys shape the input; the attention keys are not used). Any detectron2 head
that reads FPN levels works on it: the semantic FPN head, Faster/Mask R-CNN's RPN and ROI heads (``P2``-``P6``).

The backbone is detectron2's :class:`FPN`, so it has no per-image stage: volume inference runs it once per target.

Loading a 2D checkpoint (a 2.5D model's, COCO's or ImageNet's): the parameter names are those of the 2.5D
ResNet-FPN, so every key loads as it would into the 2.5D model except ``backbone.bottom_up.stem.conv1.weight``,
whose ``[C, 3, 7, 7]`` the project's checkpointer widens to ``[C, 3·N, 7, 7]`` by ``MODEL.EARLY_FUSION.STEM_INIT``
(:mod:`.stem_init`: "centre" by default, "inflate" or "random"). The widened conv trains under any ``FREEZE_AT``.
"""
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, FPN
from detectron2.modeling.backbone.fpn import LastLevelMaxPool

from ..config import bag_size_from_cfg
from .deformable import build_deformable_resnet_backbone
from .stem_init import mark_widened_stem

__all__ = ["build_early_fusion_resnet_fpn_backbone"]


@BACKBONE_REGISTRY.register()
def build_early_fusion_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """ResNet-FPN (P2-P6) over the bag's 3·N slices as one ``[B, 3·N, H, W]`` image."""
    n = bag_size_from_cfg(cfg)
    if input_shape.channels != 3 * n:
        raise ValueError(f"the early-fusion backbone needs {3 * n} input channels (3 x bag of {n}) but "
                         f"MODEL.PIXEL_MEAN has {input_shape.channels} values; build the config with get_va_cfg()")
    bottom_up = build_deformable_resnet_backbone(cfg, input_shape)
    mark_widened_stem(bottom_up, n, cfg.MODEL.EARLY_FUSION.STEM_INIT)
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
