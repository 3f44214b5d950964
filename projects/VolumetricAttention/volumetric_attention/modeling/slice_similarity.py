"""Slice weights of volumetric attention: a softmax over the bag of query-key similarities (eq. 2 and eq. 3).

The paper scores a bag member by the plain dot product of its embedding with the target's. For spatial attention
the embedding is a map of H·W positions, so the logits grow with the map size, and at the paper's 512-1024 px inputs
(P2 maps of 128 x 128 to 256 x 256) that breaks twice. The measured logit sizes are in
``projects/VolumetricAttention/docs/benchmark.md`` ("Slice similarity logits at the paper's map sizes").

* **float16.** Under detectron2's AMP (CUDA autocast, float16) the logits overflow float16's 65504 and the softmax
  returns NaN. Here the logits and the softmax are always computed in float32, autocast or not; the weights are
  float32 and the callers cast what they build from them back to their input's dtype.
* **Saturation.** Logits that large make the softmax one-hot: the spatial attention reads one image of the bag (in
  practice the target itself) and passes almost no gradient to the embeddings, so which image it reads never
  changes. Dividing by sqrt(dimension) (``"scaled"``) slows the growth with the map size but does not remove it.

Modes (``MODEL.VA.SIMILARITY``):

* ``"dot"`` -- the paper's ``q · k``, for exact reproduction.
* ``"scaled"`` -- ``q · k / sqrt(D)``, as in scaled dot-product attention.
* ``"cosine"`` -- ``tau · cos(q, k)``, cosine similarity times a learned temperature ``tau = exp(log_tau)`` that
  starts at ``COSINE_INIT_TEMPERATURE`` and is clamped to ``COSINE_MAX_TEMPERATURE``. The logits are bounded by
  ``tau`` whatever H, W or C, so the weights neither overflow nor saturate with the map size, and the model learns
  how sharp its slice attention should be. This is why ``"cosine"`` is ``add_va_config``'s default, hence of every
  LiTS, DeepLesion and Phantom config.

Only ``"cosine"`` has a parameter (``log_tau``): a checkpoint trained with ``"dot"`` or ``"scaled"`` has none, so
evaluate it with the ``SIMILARITY`` it was trained with.
"""
import math

import torch
from torch import nn

from ..config import check_similarity_mode

__all__ = ["SliceSimilarity"]

# tau at init: with the target in its own bag (cosine 1) and neighbours at cosine 0.5, a bag of 9 gives the target
# a weight of about 0.6; neighbours that look alike (cosine 0.9) spread the weight almost evenly.
COSINE_INIT_TEMPERATURE = 5.0
# upper bound of tau (as in CLIP's learned logit scale): keeps a runaway temperature from saturating the softmax
COSINE_MAX_TEMPERATURE = 100.0
# norms below this count as zero embeddings (all-zero maps get cosine 0 with everything instead of NaN)
_EPS = 1e-6


class SliceSimilarity(nn.Module):
    """``softmax_N(similarity(query, keys))``: the slice weights ``S_att`` of eq. 2 and eq. 3, in float32."""

    def __init__(self, mode: str = "dot"):
        """
        Args:
            mode: "dot" (the paper's), "scaled" or "cosine" (module docstring).
        """
        super().__init__()
        self.mode = check_similarity_mode(mode)
        if mode == "cosine":
            self.log_tau = nn.Parameter(torch.tensor(math.log(COSINE_INIT_TEMPERATURE)))

    def temperature(self) -> torch.Tensor:
        """tau of the cosine mode (a 0-dim float32 tensor)."""
        return self.log_tau.float().exp().clamp(max=COSINE_MAX_TEMPERATURE)

    def forward(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """
        Args:
            query: ``[B, D]``, the target's embedding; keys: ``[B, N, D]``, the bag members' embeddings (any float
                dtype).
        Returns:
            float32 slice weights ``[B, N]``, summing to 1 over N, computed outside autocast.
        """
        with torch.autocast(device_type=query.device.type, enabled=False):
            query, keys = query.float(), keys.float()
            if self.mode == "cosine":
                query = query / query.norm(dim=1, keepdim=True).clamp(min=_EPS)
                keys = keys / keys.norm(dim=2, keepdim=True).clamp(min=_EPS)
            logits = torch.einsum("bd,bnd->bn", query, keys)
            if self.mode == "scaled":
                logits = logits / math.sqrt(query.shape[1])
            elif self.mode == "cosine":
                logits = logits * self.temperature()
            return logits.softmax(dim=1)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"
