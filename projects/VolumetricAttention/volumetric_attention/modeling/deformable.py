"""Deformable ResNet blocks on torchvision's ``deform_conv2d``, and a ResNet builder that honours the deform options
at every depth: bottleneck blocks (R-50 and deeper) as detectron2 has them, basic blocks (R-18, R-34, which detectron2
cannot make deformable) with their second 3x3 conv deformable.

detectron2's own ``DeformConv``/``ModulatedDeformConv`` need its compiled extension (and have no CPU backward).
``torchvision.ops.deform_conv2d`` runs forward and backward on CPU and CUDA and takes the DCNv2 modulation mask.
The parameter names are those of detectron2's ``DeformBottleneckBlock`` (``conv2_offset``, ``conv2.weight``,
``conv2.norm.*``), so detectron2 DCN checkpoints load.

Initialisation: ``conv2_offset`` is zero, so offsets start at zero and the unmodulated block starts as the plain
bottleneck block. With ``deform_modulated`` the modulation is ``sigmoid(logits)`` as in DCNv2 and detectron2;
zero logits give a mask of 0.5, so that block starts as the plain block with its 3×3 conv scaled by 0.5. Keeping
detectron2's mask definition is what makes its DCNv2 checkpoints mean the same thing here.
"""
import copy

import torch
import torch.nn.functional as F
import torchvision.ops
from torch import nn
from torch.nn.modules.utils import _pair

from detectron2.layers import CNNBlockBase, Conv2d, ShapeSpec, get_norm
from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock, build_resnet_backbone
from fvcore.nn import weight_init

__all__ = ["DeformConv", "DeformBottleneckBlock", "DeformBasicBlock", "build_deformable_resnet_backbone"]


class DeformConv(nn.Module):
    """A (modulated) deformable conv with an optional norm, computed by ``torchvision.ops.deform_conv2d``.

    ``forward(x [B, Cin, H, W], offset [B, 2·G·k·k, H', W'], mask [B, G·k·k, H', W'] or None) -> [B, Cout, H', W']``
    where G is the number of offset groups.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=False, norm=None, activation=None):
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.norm = norm
        self.activation = activation
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")

    def forward(self, x, offset, mask=None):
        # Looked up on the module at call time, so tests can count calls.
        x = torchvision.ops.deform_conv2d(
            x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
            dilation=self.dilation, mask=mask,
        )
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


class DeformBottleneckBlock(CNNBlockBase):
    """detectron2's bottleneck block (1×1, 3×3, 1×1) with a deformable 3×3 conv on torchvision's op.

    Same arguments and parameter names as ``detectron2.modeling.backbone.resnet.DeformBottleneckBlock``.
    ``forward(x [B, Cin, H, W]) -> [B, Cout, H / stride, W / stride]``.
    """

    def __init__(self, in_channels, out_channels, *, bottleneck_channels, stride=1, num_groups=1, norm="BN",
                 stride_in_1x1=False, dilation=1, deform_modulated=False, deform_num_groups=1):
        super().__init__(in_channels, out_channels, stride)
        self.deform_modulated = deform_modulated
        self.shortcut = _projection_shortcut(in_channels, out_channels, stride, norm)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = Conv2d(in_channels, bottleneck_channels, kernel_size=1, stride=stride_1x1, bias=False,
                            norm=get_norm(norm, bottleneck_channels))
        # Per offset group and kernel tap: (dy, dx), plus a modulation logit for DCNv2.
        offset_channels = (27 if deform_modulated else 18) * deform_num_groups
        self.conv2_offset = Conv2d(bottleneck_channels, offset_channels, kernel_size=3, stride=stride_3x3,
                                   padding=dilation, dilation=dilation)
        self.conv2 = DeformConv(bottleneck_channels, bottleneck_channels, kernel_size=3, stride=stride_3x3,
                                padding=dilation, dilation=dilation, groups=num_groups,
                                norm=get_norm(norm, bottleneck_channels))
        self.conv3 = Conv2d(bottleneck_channels, out_channels, kernel_size=1, bias=False,
                            norm=get_norm(norm, out_channels))
        _init_weights([self.conv1, self.conv2, self.conv3, self.shortcut], self.conv2_offset)

    def forward(self, x):
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out, *_offset_and_mask(self.conv2_offset(out), self.deform_modulated)))
        out = self.conv3(out)
        out += x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out)


class DeformBasicBlock(CNNBlockBase):
    """detectron2's basic block (3×3, 3×3; ResNet-18/34) with its second 3×3 conv deformable.

    The first conv carries the stride, as in detectron2's ``BasicBlock``; the second, at the block's output
    resolution, takes offsets (and DCNv2 modulation) from ``conv2_offset``, a plain 3×3 conv on the first's output,
    as the bottleneck block's 3×3 conv does. Parameter names are ``BasicBlock``'s plus ``conv2_offset``, so a
    ResNet-18/34 checkpoint loads with only the offsets missing. Zero-initialised offsets: it starts as the plain
    block (unmodulated) or as the plain block with its second conv scaled by 0.5 (modulated).
    ``forward(x [B, Cin, H, W]) -> [B, Cout, H / stride, W / stride]``.
    """

    def __init__(self, in_channels, out_channels, *, stride=1, norm="BN", deform_modulated=False,
                 deform_num_groups=1):
        super().__init__(in_channels, out_channels, stride)
        self.deform_modulated = deform_modulated
        self.shortcut = _projection_shortcut(in_channels, out_channels, stride, norm)
        self.conv1 = Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False,
                            norm=get_norm(norm, out_channels))
        self.conv2_offset = Conv2d(out_channels, (27 if deform_modulated else 18) * deform_num_groups,
                                   kernel_size=3, padding=1)
        self.conv2 = DeformConv(out_channels, out_channels, kernel_size=3, padding=1,
                                norm=get_norm(norm, out_channels))
        _init_weights([self.conv1, self.conv2, self.shortcut], self.conv2_offset)

    def forward(self, x):
        out = F.relu_(self.conv1(x))
        out = self.conv2(out, *_offset_and_mask(self.conv2_offset(out), self.deform_modulated))
        out += x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out)


def _projection_shortcut(in_channels, out_channels, stride, norm):
    """detectron2's shortcut: a strided 1×1 conv with norm where the channels change, else None (identity)."""
    if in_channels == out_channels:
        return None
    return Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False,
                  norm=get_norm(norm, out_channels))


def _init_weights(convs, offset_conv):
    """MSRA fill of the block's convs (None skipped), as detectron2's blocks; zero offsets, so the block starts
    undeformed."""
    for layer in convs:
        if layer is not None:
            weight_init.c2_msra_fill(layer)
    nn.init.constant_(offset_conv.weight, 0)
    nn.init.constant_(offset_conv.bias, 0)


def _offset_and_mask(offset, modulated):
    """Split an offset conv's output into (offset, mask): with DCNv2 modulation, detectron2's channel layout (the
    first two thirds are offsets, the last third modulation logits, the mask their sigmoid); without, mask None."""
    if not modulated:
        return offset, None
    offset_x, offset_y, logits = torch.chunk(offset, 3, dim=1)
    return torch.cat((offset_x, offset_y), dim=1), logits.sigmoid()


def build_deformable_resnet_backbone(cfg, input_shape: ShapeSpec):
    """detectron2's ResNet from ``cfg``, with the stages in ``MODEL.RESNETS.DEFORM_ON_PER_STAGE`` made of
    :class:`DeformBottleneckBlock` (R-50 and deeper) or :class:`DeformBasicBlock` (R-18, R-34)
    (``DEFORM_MODULATED``, ``DEFORM_NUM_GROUPS``).

    detectron2's builder makes the network with deformable convs off; the blocks of the deformable stages are then
    replaced by deformable blocks of the same shape, and the freezing is applied again.
    """
    deform_on = list(cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE)
    if not any(deform_on):
        return build_resnet_backbone(cfg, input_shape)
    plain_cfg = copy.deepcopy(cfg)
    plain_cfg.defrost()
    plain_cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False] * len(deform_on)
    resnet = build_resnet_backbone(plain_cfg, input_shape)
    r = cfg.MODEL.RESNETS
    for stage, on in zip(resnet.stages, deform_on):
        if not on:
            continue
        for i, block in enumerate(stage):
            if isinstance(block, BasicBlock):
                stage[i] = DeformBasicBlock(block.in_channels, block.out_channels, stride=block.stride, norm=r.NORM,
                                            deform_modulated=r.DEFORM_MODULATED,
                                            deform_num_groups=r.DEFORM_NUM_GROUPS)
                continue
            assert isinstance(block, BottleneckBlock), type(block)
            stage[i] = DeformBottleneckBlock(
                block.in_channels, block.out_channels, bottleneck_channels=block.conv1.out_channels,
                stride=block.stride, num_groups=r.NUM_GROUPS, norm=r.NORM, stride_in_1x1=r.STRIDE_IN_1X1,
                dilation=block.conv2.dilation[0], deform_modulated=r.DEFORM_MODULATED,
                deform_num_groups=r.DEFORM_NUM_GROUPS,
            )
    resnet.freeze(cfg.MODEL.BACKBONE.FREEZE_AT)
    return resnet
