"""Slice similarity modes of VA (MODEL.VA.SIMILARITY): float32 under autocast, no overflow, no saturation."""
import math

import pytest
import torch
import torch.nn.functional as F

from volumetric_attention.modeling import VolumetricAttention
from volumetric_attention.modeling.slice_similarity import (
    COSINE_INIT_TEMPERATURE,
    COSINE_MAX_TEMPERATURE,
    SliceSimilarity,
)


def _bag(n, c, size, std=3.0, b=1, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, n, c, size, size, generator=g) * std).to(dtype)


def test_modes_match_their_formulas():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 50, generator=g), torch.randn(2, 5, 50, generator=g)
    dot = torch.einsum("bd,bnd->bn", q, k)
    torch.testing.assert_close(SliceSimilarity("dot")(q, k), dot.softmax(1))
    torch.testing.assert_close(SliceSimilarity("scaled")(q, k), (dot / math.sqrt(50)).softmax(1))
    cosine = SliceSimilarity("cosine")
    expected = (COSINE_INIT_TEMPERATURE * F.cosine_similarity(q[:, None], k, dim=2)).softmax(1)
    torch.testing.assert_close(cosine(q, k), expected)
    # the temperature is learned, and clamped
    cosine(q, k)[:, 0].sum().backward()
    assert cosine.log_tau.grad is not None and cosine.log_tau.grad.abs() > 0
    with torch.no_grad():
        cosine.log_tau.fill_(10.0)
    assert float(cosine.temperature()) == COSINE_MAX_TEMPERATURE


def test_zero_embeddings_give_uniform_cosine_weights():
    w = SliceSimilarity("cosine")(torch.zeros(1, 8), torch.zeros(1, 3, 8))
    torch.testing.assert_close(w, torch.full((1, 3), 1 / 3))


def test_unknown_mode_is_refused_in_one_line(tiny_cfg):
    with pytest.raises(ValueError, match=r"^MODEL.VA.SIMILARITY must be one of 'dot', 'scaled', 'cosine'; got 'l2'$"):
        SliceSimilarity("l2")
    with pytest.raises(ValueError, match="got 'softmax'"):  # when the config is built, before any model
        tiny_cfg(None, ["MODEL.VA.SIMILARITY", "softmax"])
    from volumetric_attention import get_va_cfg

    with pytest.raises(KeyError, match="SCALED_DOT_PRODUCT was renamed to MODEL.VA.SIMILARITY"):
        get_va_cfg(None, ["MODEL.VA.SCALED_DOT_PRODUCT", True])  # the boolean it replaced


def _largest_weights(va, bag):
    with torch.no_grad():
        _, attn = va(bag[:, bag.shape[1] // 2], bag, return_attention=True)
    return {k: float(attn[k].max(dim=1).values.mean()) for k in ("channel_weights", "spatial_weights")}


def test_cosine_weights_do_not_saturate_or_change_with_map_size():
    """At init, on random features, the mean largest slice weight is the same at 32 x 32 and 256 x 256 (P2 of a
    1024 px input), and it is far from one-hot; the paper's dot product saturates at the large size."""
    torch.manual_seed(0)
    cosine = VolumetricAttention(256, similarity="cosine")
    dot = VolumetricAttention(256, similarity="dot")
    small, large = _bag(9, 256, 32, b=2), _bag(9, 256, 256, seed=1)
    w_small, w_large = _largest_weights(cosine, small), _largest_weights(cosine, large)
    for key in w_small:
        assert abs(w_small[key] - w_large[key]) < 0.1, (key, w_small, w_large)
        assert w_small[key] < 0.9 and w_large[key] < 0.9, (key, w_small, w_large)
    assert _largest_weights(dot, large)["spatial_weights"] > 0.99


@pytest.mark.parametrize("similarity", ["dot", "scaled", "cosine"])
@pytest.mark.parametrize("size", [128, 256])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_outputs_and_gradients_are_finite(dtype, size, similarity):
    """N = 9, P2 maps of 512 and 1024 px inputs, features of std 3: the H·W dot products reach ~1e6, beyond
    float16's 65504, yet the float32 softmax keeps outputs and gradients finite."""
    torch.manual_seed(0)
    va = VolumetricAttention(64, reduction=16, similarity=similarity)
    bag = _bag(9, 64, size).requires_grad_(True)
    with torch.autocast("cpu", dtype=dtype):
        out, attn = va(bag[:, 4], bag, return_attention=True)
        loss = out.float().square().mean()
    assert out.dtype == torch.float32  # the input's dtype
    assert attn["spatial_weights"].dtype == torch.float32
    assert torch.isfinite(out).all() and torch.isfinite(attn["spatial_weights"]).all()
    loss.backward()
    assert torch.isfinite(bag.grad).all() and bag.grad.abs().sum() > 0
    for name, p in va.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_module_returns_its_input_dtype(dtype):
    va = VolumetricAttention(32, reduction=4, kernel_size=3)
    bag = _bag(3, 32, 16, dtype=dtype)
    with torch.autocast("cpu", dtype=dtype):
        assert va(bag[:, 1], bag).dtype == dtype
    assert va(bag[:, 1].float(), bag.float()).dtype == torch.float32
