"""Volumetric attention (VA), section 2 of the paper: channel attention (eq. 2) then spatial attention (eq. 3).

Shapes: ``target`` is the target 2.5D image's feature map ``[B, C, H, W]``; ``bag`` holds the features of all N
2.5D images of the bag ``[B, N, C, H, W]``, sorted along z, the target's own included (at index N // 2 when the
bag comes from the VA-FPN backbone; the modules themselves do not rely on where the target sits).

Choices the paper leaves open, and what this module does:

* **Gate initialisation.** A sigmoid gate whose last conv starts with the usual random weights and a zero bias
  scales features by about 0.5 (0.25 for channel and spatial gates together). That wrecks the statistics of
  pretrained (COCO / ImageNet) features that every later layer was trained on. Here the last conv of each gate
  gets small weights (normal, std ``gate_weight_std``, ``MODEL.VA.GATE_WEIGHT_STD``, default 1e-3) and a
  positive bias ``gate_bias_init``
  (``MODEL.VA.GATE_BIAS_INIT``, default 3.0): each gate starts near ``sigmoid(3) = 0.95``, both near 0.91, so the
  model starts close to its pretrained self. The weights are not zero, so every VA parameter receives a gradient
  from the first step. The price is a smaller sigmoid slope (0.045 instead of 0.25 at a zero bias): the gates
  learn slower at first. A bias of 0 reproduces the plain sigmoid gate of the paper's figure 3. Gates always
  lie in (0, 1).
* **Slice similarity.** ``similarity`` picks the paper's ``"dot"``, ``"scaled"`` or ``"cosine"`` (the default of
  every module, as ``MODEL.VA.SIMILARITY``'s; why: ``slice_similarity.py``), always in float32. Each module returns
  its input's dtype, under autocast too.
* **Context features (beyond the paper).** VA as published only gates the target's map, so no feature of a
  neighbouring image reaches the heads. ``context_features=True`` (``MODEL.VA.CONTEXT_FEATURES``) adds, after the
  gates, a learned 1x1 projection of the attention-weighted bag, ``out = gated target + W · Σ_n S_att[n] · bag[n]``,
  with the slice weights of the last attention in use. ``W`` starts at zero, so the module starts as plain VA.
* **The ReLU before the gate.** Eq. 2 and eq. 3 apply a ReLU to the attention-weighted bag embedding before the
  gate conv. The spatial embedding is one map, and at init its sign is a matter of the random embedding conv: where
  it is negative at (almost) every position, the ReLU passes (almost) nothing, the gate is a constant and neither
  the embedding nor the gate conv gets a gradient. Which levels this hits depends on the seed (measurements:
  projects/VolumetricAttention/docs/zcontext_study.md; ``VAStatsHook`` reports each gate's context sign share).
  ``gate_relu=False`` (``MODEL.VA.GATE_RELU``) feeds the gate conv the context map itself.
* **What spatial attention sees of the bag.** Spatial attention follows channel attention (section 2.3 starts
  from the channel-refined target). Its bag members are gated with the *same* channel gate as the target
  (``gate_bag=True``): both sides of the dot product in eq. 3 then live in the same re-weighted feature space, and
  the target's own bag entry equals the channel-gated target. ``gate_bag=False`` gives the spatial module the raw
  bag instead.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.layers import Conv2d
from fvcore.nn import weight_init

from .slice_similarity import SliceSimilarity

__all__ = ["VolumetricChannelAttention", "VolumetricSpatialAttention", "VolumetricAttention", "SLICE_WEIGHTS"]

# The values of MODEL.VA.SLICE_WEIGHTS: the softmax over the bag (eq. 2, 3) or fixed 1/N.
SLICE_WEIGHTS = ("attention", "uniform")

# Default std of the last gate conv's weights at init: small, so the gate starts near sigmoid(bias), yet not zero,
# so the layers before it receive gradients from the first step on.
GATE_WEIGHT_STD = 1e-3


def _init_gate_conv(conv: nn.Conv2d, bias: float, std: float) -> None:
    nn.init.normal_(conv.weight, std=std)
    nn.init.constant_(conv.bias, bias)


def _check_shapes(target: torch.Tensor, bag: torch.Tensor) -> None:
    if target.dim() != 4 or bag.dim() != 5 or bag.shape[0] != target.shape[0] or bag.shape[2:] != target.shape[1:]:
        raise ValueError(
            f"expected target [B, C, H, W] and bag [B, N, C, H, W]; got {tuple(target.shape)} and {tuple(bag.shape)}"
        )


class _VolumetricGate(nn.Module):
    """A gate computed from the target and its bag, multiplied into the target (channel or spatial attention)."""

    def _init_slice_weights(self, slice_weights: str, similarity: str) -> None:
        if slice_weights not in SLICE_WEIGHTS:
            raise ValueError(f"MODEL.VA.SLICE_WEIGHTS must be one of {', '.join(map(repr, SLICE_WEIGHTS))}; "
                             f"got {slice_weights!r}")
        # "uniform" has no similarity (and so no learned temperature to leave without a gradient)
        self.similarity = SliceSimilarity(similarity) if slice_weights == "attention" else None

    def slice_weights(self, target: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """``S_att`` ``[B, N]`` float32: the softmax over the bag of the similarities of ``embed(target)`` to the
        bag's embeddings ``keys`` ``[B, N, D]``, or 1/N everywhere for ``slice_weights="uniform"``."""
        if self.similarity is None:
            return torch.full(keys.shape[:2], 1.0 / keys.shape[1], dtype=torch.float32, device=keys.device)
        return self.similarity(self.embed(target).flatten(1), keys)

    def forward(self, target: torch.Tensor, bag: torch.Tensor, return_attention: bool = False):
        """
        Args:
            target: ``[B, C, H, W]``; bag: ``[B, N, C, H, W]``.
            return_attention: also return ``(gate, slice weights [B, N])``; the gate is ``[B, C, 1, 1]`` for
                channel attention and ``[B, 1, H, W]`` for spatial attention.
        Returns:
            the gated target ``[B, C, H, W]`` (and the attention tuple when asked).
        """
        gate, weights, _ = self.attention(target, bag)
        out = (target * gate).to(target.dtype)
        return (out, (gate, weights)) if return_attention else out


class VolumetricChannelAttention(_VolumetricGate):
    """Volumetric channel attention (paper section 2.2, eq. 2).

    ``F_emb(X) = W2 · ReLU(W1 · GAP(X))`` (two 1×1 convs, reduction ``r``) embeds the target and every bag member;
    ``S_att = softmax_N(F_emb(X_tgt) · F_emb(X_long)ᵀ)`` are the slice weights ``[B, N]``; the gate is
    ``S_c = sigmoid(conv1x1(ReLU(S_att · F_emb(X_long))))`` ``[B, C, 1, 1]``, multiplied into the target map.
    """

    def __init__(self, channels: int, reduction: int = 16, gate_bias_init: float = 3.0, similarity: str = "cosine",
                 gate_weight_std: float = GATE_WEIGHT_STD, gate_relu: bool = True, slice_weights: str = "attention"):
        """
        Args:
            channels: C, channels of the target and bag feature maps.
            reduction: r; the embedding's hidden width is ``max(1, C // r)``.
            gate_bias_init, gate_weight_std: bias and weight std of the gate's last conv at init (module docstring).
            similarity: slice similarity of the C-dim embeddings, "dot" (the paper's), "scaled" or "cosine".
            gate_relu: the ReLU before the gate conv (the paper's; module docstring).
            slice_weights: "attention" (the softmax of eq. 2) or "uniform" (1/N, the control).
        """
        super().__init__()
        hidden = max(1, channels // reduction)
        self.embed_reduce = Conv2d(channels, hidden, kernel_size=1)  # W1
        self.embed_expand = Conv2d(hidden, channels, kernel_size=1)  # W2
        self.gate_conv = Conv2d(channels, channels, kernel_size=1)
        weight_init.c2_msra_fill(self.embed_reduce)
        weight_init.c2_xavier_fill(self.embed_expand)
        _init_gate_conv(self.gate_conv, gate_bias_init, gate_weight_std)
        self._init_slice_weights(slice_weights, similarity)
        self.gate_relu = gate_relu

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``F_emb^c``: ``[M, C, H, W]`` -> ``[M, C]``."""
        pooled = F.adaptive_avg_pool2d(x, 1)
        return self.embed_expand(F.relu(self.embed_reduce(pooled))).flatten(1)

    def attention(self, target: torch.Tensor,
                  bag: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Args:
            target: ``[B, C, H, W]``; bag: ``[B, N, C, H, W]``.
        Returns:
            gate ``[B, C, 1, 1]`` in (0, 1), slice weights ``[B, N]`` (summing to 1 over N) and the context
            ``S_att · F_emb(X_long)`` ``[B, C, 1, 1]`` that the gate conv reads (through the ReLU with ``gate_relu``).
        """
        _check_shapes(target, bag)
        b, n = bag.shape[:2]
        keys = self.embed(bag.flatten(0, 1)).view(b, n, -1)  # [B, N, C]
        weights = self.slice_weights(target, keys)  # float32
        context = torch.einsum("bn,bnc->bc", weights.to(keys.dtype), keys)[:, :, None, None]
        gate = torch.sigmoid(self.gate_conv(F.relu(context) if self.gate_relu else context))
        return gate, weights, context


class VolumetricSpatialAttention(_VolumetricGate):
    """Volumetric spatial attention (paper section 2.3, eq. 3).

    ``F_pool(X) = [max_C X, mean_C X]`` ``[2, H, W]``; ``F_emb(X) = W * F_pool(X)`` (a k×k conv to one map);
    ``S_att = softmax_N(F_emb(X_tgt) · F_emb(X_long)ᵀ)`` with dot products over H·W; the gate is
    ``S_s = sigmoid(conv_k×k(ReLU(S_att · F_emb(X_long))))`` ``[B, 1, H, W]``, multiplied into the target map.
    """

    def __init__(self, kernel_size: int = 7, gate_bias_init: float = 3.0, similarity: str = "cosine",
                 gate_weight_std: float = GATE_WEIGHT_STD, gate_relu: bool = True, slice_weights: str = "attention"):
        """
        Args:
            kernel_size: k of both convs (odd; padding keeps H×W).
            gate_bias_init, gate_weight_std: bias and weight std of the gate's last conv at init (module docstring).
            similarity: slice similarity of the H·W-dim embeddings, "dot" (the paper's), "scaled" or "cosine".
            gate_relu: the ReLU before the gate conv (the paper's; module docstring).
            slice_weights: "attention" (the softmax of eq. 3) or "uniform" (1/N, the control).
        """
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"VolumetricSpatialAttention needs an odd kernel_size, got {kernel_size}")
        pad = kernel_size // 2
        self.embed_conv = Conv2d(2, 1, kernel_size=kernel_size, padding=pad)
        self.gate_conv = Conv2d(1, 1, kernel_size=kernel_size, padding=pad)
        weight_init.c2_msra_fill(self.embed_conv)
        _init_gate_conv(self.gate_conv, gate_bias_init, gate_weight_std)
        self._init_slice_weights(slice_weights, similarity)
        self.gate_relu = gate_relu

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``F_emb^s``: ``[M, C, H, W]`` -> ``[M, 1, H, W]``."""
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return self.embed_conv(pooled)

    def attention(self, target: torch.Tensor,
                  bag: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Args:
            target: ``[B, C, H, W]``; bag: ``[B, N, C, H, W]``.
        Returns:
            gate ``[B, 1, H, W]`` in (0, 1), slice weights ``[B, N]`` (summing to 1 over N) and the context
            ``S_att · F_emb(X_long)`` ``[B, 1, H, W]`` that the gate conv reads (through the ReLU with ``gate_relu``).
        """
        _check_shapes(target, bag)
        b, n, _, h, w = bag.shape
        keys = self.embed(bag.flatten(0, 1)).view(b, n, h * w)  # [B, N, H*W]
        weights = self.slice_weights(target, keys)  # float32
        context = torch.einsum("bn,bnp->bp", weights.to(keys.dtype), keys).view(b, 1, h, w)
        gate = torch.sigmoid(self.gate_conv(F.relu(context) if self.gate_relu else context))
        return gate, weights, context


class VolumetricAttention(nn.Module):
    """The VA module of figure 3: channel attention (eq. 2), then spatial attention (eq. 3) on its output.

    Built from a config as ``VolumetricAttention(cfg, channels)`` (``MODEL.VA.*``, see :meth:`from_config`) or from
    explicit arguments, whose defaults are those of ``add_va_config``.
    """

    @configurable
    def __init__(
        self,
        channels: int,
        *,
        reduction: int = 16,
        kernel_size: int = 7,
        channel: bool = True,
        spatial: bool = True,
        gate_bias_init: float = 3.0,
        gate_weight_std: float = GATE_WEIGHT_STD,
        similarity: str = "cosine",
        gate_bag: bool = True,
        context_features: bool = False,
        gate_relu: bool = True,
        slice_weights: str = "attention",
    ):
        """
        Args:
            channels: C of the feature maps.
            reduction: r of the channel embedding.
            kernel_size: k of the spatial attention's convs.
            channel / spatial: which of the two attentions to use (at least one).
            gate_bias_init: bias of each gate's last conv at init (see the module docstring).
            gate_weight_std: std of each gate's last conv weights at init.
            similarity: slice similarity, "dot" (the paper's), "scaled" or "cosine" (``slice_similarity.py``).
            gate_bag: spatial attention sees the bag gated with the target's channel gate (see the module docstring).
            context_features: add a projection of the attention-weighted bag to the output (module docstring).
            gate_relu: the ReLU before each gate conv (the paper's; module docstring).
            slice_weights: "attention" (the paper's softmax) or "uniform" (1/N in both attentions: the control
                that tells whether attending over the bag does anything).
        """
        super().__init__()
        if not (channel or spatial):
            raise ValueError("VolumetricAttention needs channel or spatial attention (or both)")
        gate_kwargs = dict(gate_bias_init=gate_bias_init, gate_weight_std=gate_weight_std, similarity=similarity,
                           gate_relu=gate_relu, slice_weights=slice_weights)
        self.channel = VolumetricChannelAttention(channels, reduction, **gate_kwargs) if channel else None
        self.spatial = VolumetricSpatialAttention(kernel_size, **gate_kwargs) if spatial else None
        self.gate_bag = gate_bag
        # set by engine.VAStatsHook for the iterations it records: forward keeps its attention (detached) here
        self.keep_attention = False
        self.last_attention = None
        self.context_proj = None
        if context_features:
            self.context_proj = Conv2d(channels, channels, kernel_size=1)
            nn.init.zeros_(self.context_proj.weight)
            nn.init.zeros_(self.context_proj.bias)

    @classmethod
    def from_config(cls, cfg, channels: int):
        """Keyword arguments from ``MODEL.VA.*`` for maps of ``channels`` channels (``gate_bag`` has no key)."""
        va = cfg.MODEL.VA
        return {
            "channels": channels,
            "reduction": va.REDUCTION,
            "kernel_size": va.SPATIAL_KERNEL,
            "channel": va.CHANNEL,
            "spatial": va.SPATIAL,
            "gate_bias_init": va.GATE_BIAS_INIT,
            "gate_weight_std": va.GATE_WEIGHT_STD,
            "similarity": va.SIMILARITY,
            "context_features": va.CONTEXT_FEATURES,
            "gate_relu": va.GATE_RELU,
            "slice_weights": va.SLICE_WEIGHTS,
        }

    def forward(self, target: torch.Tensor, bag: torch.Tensor, return_attention: bool = False):
        """
        Args:
            target: ``[B, C, H, W]``; bag: ``[B, N, C, H, W]``.
            return_attention: also return a dict with ``channel_gate [B, C, 1, 1]``, ``channel_weights [B, N]``,
                ``channel_context [B, C, 1, 1]``, ``spatial_gate [B, 1, H, W]``, ``spatial_weights [B, N]``,
                ``spatial_context [B, 1, H, W]`` (for the attentions in use; a context is what its gate conv reads,
                before the ReLU), and
                ``context [B, C, H, W]`` (the projected bag features added to the output) with context features.
        Returns:
            the gated target ``[B, C, H, W]`` (and the dict when asked).
        """
        attn = {}
        out = target
        if self.channel is not None:
            gate, weights, context = self.channel.attention(target, bag)
            out = target * gate
            if self.gate_bag:
                bag = bag * gate[:, None]
            attn.update(channel_gate=gate, channel_weights=weights, channel_context=context)
        if self.spatial is not None:
            gate, weights, context = self.spatial.attention(out, bag)
            out = out * gate
            attn.update(spatial_gate=gate, spatial_weights=weights, spatial_context=context)
        if self.context_proj is not None:
            pooled = torch.einsum("bn,bnchw->bchw", weights.to(bag.dtype), bag)
            attn["context"] = self.context_proj(pooled)
            out = out + attn["context"]
        out = out.to(target.dtype)
        if self.keep_attention:
            self.last_attention = {k: v.detach() for k, v in attn.items()}
        return (out, attn) if return_attention else out
