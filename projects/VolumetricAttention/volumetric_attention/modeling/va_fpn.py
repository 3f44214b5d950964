"""VA-FPN: detectron2's ResNet-FPN shared over a bag of 2.5D images, with volumetric attention on the target.

The mapper packs the bag into the image's channels: the model input is ``[B, 3·N, H, W]``, 2.5D image k (sorted
along z) in channels ``3k .. 3k+2``, the target at k = N // 2. The backbone runs in two stages, exposed separately
so that volume inference can compute each 2.5D image's features once and reuse them for every bag that holds it:

* :meth:`VAFPN.extract_features` -- the plain ResNet-FPN on single 2.5D images ``[M, 3, H, W]``;
* :meth:`VAFPN.attend` -- VA over per-image features grouped into bags ``[B, N, C, h, w]``.

``forward(x) == attend(split(extract_features(reshape(x))))``: both paths are the same code. In training, ``forward``
runs ``extract_features`` once per distinct 2.5D image of the batch (bags of nearby targets share images).

Bag members that see more than one 2.5D image (``MODEL.VA.MEMBER_IMAGES`` M > 1, beyond the paper): the input holds
N + M - 1 2.5D images and member k is images k .. k + M - 1 early-fused, ``[3·M, H, W]`` through a stem widened to
3·M channels, so the target member sees the 3·M slices centred on the target, as the early-fusion baseline does, and
VA adds the other members. Then ``extract_features`` takes ``[M', 3·M, H, W]`` member windows; volume inference runs
the packed bags (no per-volume feature cache, which keys one 2.5D image per member); a 2D checkpoint loads as into
the early-fusion backbone (the stem conv widened by ``MODEL.EARLY_FUSION.STEM_INIT``); LOCATION must be "RPN".

Outputs are exactly detectron2's FPN outputs (same keys, shapes, ``output_shape()``, size divisibility and padding
constraints), so GeneralizedRCNN, RetinaNet, SemanticSegmentor, DefaultPredictor and the evaluators are unchanged.
VA acts on every FPN level that the meta-architecture's heads read (P2-P6 for Mask R-CNN, P2-P5 for semantic FPN).
With ``MODEL.VA.LOCATION == "RCNN"`` the backbone applies no attention: ``p<k>`` are the target's features and
``p<k>_bag`` (``[B, N, C, h, w]``) the whole bag's, for :class:`VAStandardROIHeads` to pool. RPN and ROI heads select
their inputs by name (``in_features``), so they never see the extra keys.

Parameter names are those of detectron2's FPN (``bottom_up.*``, ``fpn_lateral*``, ``fpn_output*``, ``top_block.*``)
plus ``va.*``: detectron2 FPN checkpoints (e.g. the COCO model zoo's) load with only the ``va.*`` keys missing.
"""
import functools
from typing import Dict, Tuple

import torch
from torch import nn

from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, FPN
from detectron2.modeling.backbone.fpn import LastLevelMaxPool, LastLevelP6P7
from detectron2.utils.events import get_event_storage, has_event_storage

from ..config import bag_members_from_cfg, bag_size_from_cfg
from .attention import VolumetricAttention
from .deformable import build_deformable_resnet_backbone
from .stem_init import IMAGE_CHANNELS, mark_widened_stem

__all__ = ["VAFPN", "distinct_images", "build_va_resnet_fpn_backbone", "build_va_retinanet_resnet_fpn_backbone",
           "BAG_SUFFIX"]

# Suffix of the bag feature keys returned with LOCATION "RCNN": "p2" -> "p2_bag".
BAG_SUFFIX = "_bag"


class VAFPN(FPN):
    """detectron2's :class:`FPN` over a bag of N 2.5D images, with VA on the target's map on every level that the
    heads read (``va_levels``)."""

    def __init__(self, *, bag_size: int = 1, va_factory=None, share_across_levels: bool = False,
                 location: str = "RPN", va_levels=None, context_grad: bool = True, member_images: int = 1,
                 **fpn_kwargs):
        """
        Args:
            bag_size: N, members per bag (the input has 3·(N + member_images - 1) channels).
            va_factory: ``callable(channels) -> nn.Module`` with ``forward(target, bag)``; None disables VA (the
                2.5D baseline, whose parameters are exactly detectron2's FPN's).
            share_across_levels: one VA module for all levels (``va.*``) or one per level (``va.p2.*``, ...).
            location: "RPN" applies VA here; "RCNN" returns the bag features for the ROI heads instead.
            va_levels: the output levels that get VA (default all); the others return the target's features.
                Leaving out levels that no head reads keeps every parameter in use (DDP requires that).
            context_grad: in training, backpropagate through the bag's context images (the paper's). False runs
                every 2.5D image that is no bag's target through the backbone without autograd: the targets'
                images and the VA modules keep their gradients, the context images keep no activations.
            member_images: M, consecutive 2.5D images early-fused into each member (odd; 1: the paper's); the
                bottom-up network takes 3·M channels.
            fpn_kwargs: the arguments of :class:`detectron2.modeling.backbone.FPN`.
        """
        super().__init__(**fpn_kwargs)
        if location not in ("RPN", "RCNN"):
            raise ValueError(f"MODEL.VA.LOCATION must be 'RPN' or 'RCNN', got {location!r}")
        if member_images < 1 or member_images % 2 != 1:
            raise ValueError(f"MODEL.VA.MEMBER_IMAGES must be odd and positive (the member's image in the middle), "
                             f"got {member_images}")
        if member_images > 1 and location != "RPN":
            raise ValueError("MODEL.VA.MEMBER_IMAGES > 1 needs MODEL.VA.LOCATION 'RPN' (the ROI heads pool members "
                             "of one 2.5D image)")
        self.bag_size = bag_size
        self.member_images = member_images
        self.context_grad = context_grad
        self.location = location if va_factory is not None else "RPN"
        self.va = None
        self.va_levels = tuple(f for f in self._out_features if va_levels is None or f in va_levels)
        if va_factory is not None and location == "RPN":
            if not self.va_levels:
                raise ValueError(f"no head reads an FPN level {self._out_features}: check the heads' IN_FEATURES")
            channels = {self._out_feature_channels[f] for f in self.va_levels}
            if share_across_levels:
                assert len(channels) == 1, channels
                self.va = va_factory(channels.pop())
            else:
                self.va = nn.ModuleDict({f: va_factory(self._out_feature_channels[f]) for f in self.va_levels})

    def extract_features(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Bottom-up ResNet + FPN on single 2.5D images (on members of ``member_images`` 2.5D images each).

        Args:
            images: ``[M, 3·member_images, H, W]``, normalised and padded like the model input.
        Returns:
            ``{"p2": [M, C, H/4, W/4], ...}``, detectron2's FPN outputs.
        """
        return super().forward(images)

    def attend(self, bag_features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Volumetric attention over given bag features.

        Args:
            bag_features: ``{"p2": [B, N, C, h, w], ...}`` (every output level), per-image features from
                :meth:`extract_features` grouped into bags sorted along z, the target at N // 2.
        Returns:
            exactly what :meth:`forward` returns: ``{"p2": [B, C, h, w], ...}`` (the attended target for LOCATION
            "RPN", the target's own features without VA or for "RCNN"), plus ``{"p2_bag": [B, N, C, h, w], ...}``
            for LOCATION "RCNN".
        """
        out = {}
        for f in self._out_features:
            bag = bag_features[f]
            if bag.dim() != 5 or bag.shape[1] != self.bag_size:
                raise ValueError(f"attend() needs {f} as [B, {self.bag_size}, C, h, w]; got {tuple(bag.shape)}")
            target = bag[:, self.bag_size // 2]
            if self.va is None or f not in self.va_levels:
                out[f] = target
            else:
                va = self.va[f] if isinstance(self.va, nn.ModuleDict) else self.va
                out[f] = va(target, bag)
        if self.location == "RCNN":
            for f in self._out_features:
                out[f + BAG_SUFFIX] = bag_features[f]
        return out

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """
        In training, the B·N 2.5D images are compared first and :meth:`extract_features` runs once per distinct
        image; its features are indexed back to every bag that holds the image. Bags of targets 3 slices apart in
        one case share N - 1 images when they were loaded with one augmentation (``DATALOADER.SHARED_BAG_TARGETS``),
        and a bag clamped at a volume end may hold an image twice. Autograd sums the gradients of a shared image's
        uses, so with per-image normalisation (FrozenBN, GN: detectron2's default and the project's configs) outputs
        and gradients equal running every image. With training-mode BatchNorm ("BN", "SyncBN") the batch statistics
        are taken over the distinct images only, so they differ from the unshared computation. In eval mode every
        image is run (volume inference shares features with its own per-volume cache). With an active EventStorage,
        training records ``va/backbone_images_per_target`` (distinct images / B).

        Args:
            x: ``[B, 3·(N + M - 1), H, W]``, the bag packed into channels (2.5D image k in channels 3k .. 3k+2; M =
                ``member_images``, 1 as in the paper).
        Returns:
            see :meth:`attend`.
        """
        b, c, h, w = x.shape
        n, m = self.bag_size, self.member_images
        if c != IMAGE_CHANNELS * (n + m - 1):
            raise ValueError(f"VA-FPN expects {IMAGE_CHANNELS * (n + m - 1)} input channels "
                             f"(bag of {n}{f' members of {m} images' if m > 1 else ''}), got {c}")
        # member k: 2.5D images k .. k + m - 1, [B·N, 3·m, H, W]
        images = x.unfold(1, IMAGE_CHANNELS * m, IMAGE_CHANNELS).permute(0, 1, 4, 2, 3).reshape(
            b * n, IMAGE_CHANNELS * m, h, w)
        if not self.training or images.shape[0] == 1:
            features = self.extract_features(images)
        else:
            unique, inverse = distinct_images(images)
            features = self._extract_distinct(images, unique, inverse)
            if has_event_storage():
                get_event_storage().put_scalar("va/backbone_images_per_target", len(unique) / b)
        return self.attend({k: v.reshape(b, self.bag_size, *v.shape[1:]) for k, v in features.items()})

    def _extract_distinct(self, images: torch.Tensor, unique: torch.Tensor,
                          inverse: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Training features of ``images`` ``[B·N, 3, H, W]``, the backbone run once per distinct image.

        ``unique``, ``inverse``: from :func:`distinct_images`. Without ``context_grad``, the distinct images that are
        no bag's target (at N // 2 of each bag) run under ``torch.no_grad``. With training-mode BatchNorm the two
        groups then get separate batch statistics; per-image normalisation (GN, FrozenBN) is unaffected.
        Returns:
            ``{"p2": [B·N, C, H/4, W/4], ...}`` in the order of ``images``.
        """
        if self.context_grad or self.bag_size == 1:
            if len(unique) == images.shape[0]:
                return self.extract_features(images)
            return {k: v[inverse] for k, v in self.extract_features(images[unique]).items()}
        is_target = torch.zeros(len(unique), dtype=torch.bool, device=images.device)
        is_target[inverse[self.bag_size // 2::self.bag_size]] = True
        with_grad, context = is_target.nonzero()[:, 0], (~is_target).nonzero()[:, 0]
        features = self.extract_features(images[unique[with_grad]])
        if len(context):
            with torch.no_grad():
                context_features = self.extract_features(images[unique[context]])
            features = {k: torch.cat([v, context_features[k]]) for k, v in features.items()}
        # row of each distinct image in the concatenation above, then each image's distinct original
        rows = torch.empty(len(unique), dtype=torch.int64, device=images.device)
        rows[torch.cat([with_grad, context])] = torch.arange(len(unique), device=images.device)
        return {k: v[rows[inverse]] for k, v in features.items()}


def distinct_images(images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Find the images of a batch that equal an earlier one value for value (bit-identical copies).

    A per-image fingerprint (the sum of its values, read to the CPU with one ``.tolist()``) proposes the first
    image with the same fingerprint as each image's original; one batched exact comparison confirms every proposal
    (a wrong one, two different images with equal sums, keeps the image as its own). An image holding a NaN is
    never shared.

    Args:
        images: ``[M, ...]``.
    Returns:
        unique: ``[U]`` int64 indices of the distinct images, ascending (U == M when none repeats);
        inverse: ``[M]`` int64, position in ``unique`` of each image's original, so ``images[unique][inverse]``
            equals ``images``.
    """
    m = images.shape[0]
    flat = images.reshape(m, -1)
    first_of = {}
    original = [first_of.setdefault(key, i) for i, key in enumerate(flat.sum(dim=1).tolist())]
    repeats = [i for i in range(m) if original[i] != i]
    if repeats:
        same = (flat[repeats] == flat[[original[i] for i in repeats]]).all(dim=1).tolist()
        for i, ok in zip(repeats, same):
            if not ok:
                original[i] = i
    unique = sorted(set(original))
    position = {i: p for p, i in enumerate(unique)}
    device = images.device
    return (torch.tensor(unique, dtype=torch.int64, device=device),
            torch.tensor([position[o] for o in original], dtype=torch.int64, device=device))


def consumed_levels(cfg):
    """The FPN levels the meta-architecture's heads read, or None (all) for an unknown meta-architecture."""
    arch = cfg.MODEL.META_ARCHITECTURE
    if arch == "SemanticSegmentor":
        return set(cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES)
    if arch == "RetinaNet":
        return set(cfg.MODEL.RETINANET.IN_FEATURES)
    if arch in ("GeneralizedRCNN", "ProposalNetwork"):
        return set(cfg.MODEL.RPN.IN_FEATURES) | set(cfg.MODEL.ROI_HEADS.IN_FEATURES)
    if arch == "PanopticFPN":
        return set(cfg.MODEL.RPN.IN_FEATURES) | set(cfg.MODEL.ROI_HEADS.IN_FEATURES) | set(
            cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES)
    return None


def build_bag_fpn(cfg, input_shape: ShapeSpec, top_block_fn, va_factory) -> VAFPN:
    """A :class:`VAFPN` over the bag of ``cfg`` whose per-level module (``callable(channels)``, ``forward(target,
    bag)``) is ``va_factory``'s: volumetric attention, or another way of fusing the bag (3DCE's late fusion)."""
    images = bag_size_from_cfg(cfg)
    if input_shape.channels != IMAGE_CHANNELS * images:
        raise ValueError(
            f"VA-FPN needs {IMAGE_CHANNELS * images} input channels (3 x {images} 2.5D images) but MODEL.PIXEL_MEAN "
            f"has {input_shape.channels} values; build the config with get_va_cfg() or call expand_pixel_stats(cfg)"
        )
    n, m = bag_members_from_cfg(cfg)
    if n % 2 != 1:
        raise ValueError(f"MODEL.VA.BAG_SIZE must be odd (target in the middle), got {n}")
    # The bottom-up network sees one member at a time: one 2.5D image as in the paper, so pretrained 3-channel conv1
    # weights fit, or MEMBER_IMAGES of them.
    bottom_up = build_deformable_resnet_backbone(cfg, ShapeSpec(channels=IMAGE_CHANNELS * m))
    mark_widened_stem(bottom_up, m, cfg.MODEL.EARLY_FUSION.STEM_INIT)
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    return VAFPN(
        bag_size=n,
        member_images=m,
        va_factory=va_factory,
        share_across_levels=cfg.MODEL.VA.SHARE_ACROSS_LEVELS,
        location=cfg.MODEL.VA.LOCATION,
        va_levels=consumed_levels(cfg),
        context_grad=cfg.MODEL.VA.CONTEXT_GRAD,
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block_fn(bottom_up, out_channels),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


def _va_factory(cfg):
    # one VA module per level (or one for all), each configured by MODEL.VA.* for the level's channels
    return functools.partial(VolumetricAttention, cfg) if cfg.MODEL.VA.ENABLED else None


def last_level_max_pool(bottom_up, out_channels):
    """P6 by max-pooling P5 (detectron2's ``build_resnet_fpn_backbone``)."""
    return LastLevelMaxPool()


@BACKBONE_REGISTRY.register()
def build_va_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """VA-FPN with levels P2-P6 (P6 by max-pooling P5), the VA counterpart of ``build_resnet_fpn_backbone``."""
    return build_bag_fpn(cfg, input_shape, last_level_max_pool, _va_factory(cfg))


@BACKBONE_REGISTRY.register()
def build_va_retinanet_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """VA-FPN with levels P3-P7 (P6, P7 from C5), the VA counterpart of ``build_retinanet_resnet_fpn_backbone``."""
    return build_bag_fpn(
        cfg, input_shape, lambda bottom_up, c: LastLevelP6P7(bottom_up.output_shape()["res5"].channels, c),
        _va_factory(cfg),
    )
