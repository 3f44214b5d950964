"""Volumetric attention modules (paper section 2, eq. 2 and eq. 3)."""
import pytest
import torch
import torch.nn.functional as F

from volumetric_attention.modeling import (
    VolumetricAttention,
    VolumetricChannelAttention,
    VolumetricSpatialAttention,
)


def _inputs(n, b=2, c=32, h=6, w=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    bag = torch.randn(b, n, c, h, w, generator=g)
    return bag[:, n // 2].clone(), bag


def _randomise_gates(module):
    """Give the gate convs ordinary weights so the gates vary (at init they sit near sigmoid(bias))."""
    torch.manual_seed(1)
    for m in module.modules():
        if hasattr(m, "gate_conv"):
            torch.nn.init.normal_(m.gate_conv.weight, std=0.5)
            torch.nn.init.zeros_(m.gate_conv.bias)


@pytest.mark.parametrize("n", [1, 3, 9])
def test_gate_shapes_ranges_and_slice_weights(n):
    target, bag = _inputs(n)
    va = VolumetricAttention(32, reduction=4, kernel_size=3)
    _randomise_gates(va)
    out, attn = va(target, bag, return_attention=True)
    assert out.shape == target.shape and torch.isfinite(out).all()
    cg, sg = attn["channel_gate"], attn["spatial_gate"]
    assert cg.shape == (2, 32, 1, 1)  # constant over H and W by construction of its shape
    assert sg.shape == (2, 1, 6, 5)  # constant over C
    for gate in (cg, sg):
        assert (gate > 0).all() and (gate < 1).all()
        assert gate.std() > 1e-3  # the gates do vary
    for key in ("channel_weights", "spatial_weights"):
        w = attn[key]
        assert w.shape == (2, n) and (w >= 0).all()
        torch.testing.assert_close(w.sum(1), torch.ones(2))
    # The output is the target times both gates, broadcast over H·W (channel) and C (spatial).
    torch.testing.assert_close(out, target * cg * sg)


def test_channel_attention_matches_eq2_by_hand():
    n, c = 3, 32
    target, bag = _inputs(n, b=1, c=c)
    m = VolumetricChannelAttention(c, reduction=4, similarity="dot")  # eq. 2's plain dot product
    _randomise_gates(m)
    out, (gate, weights) = m(target, bag, return_attention=True)

    w1, b1 = m.embed_reduce.weight[:, :, 0, 0], m.embed_reduce.bias
    w2, b2 = m.embed_expand.weight[:, :, 0, 0], m.embed_expand.bias
    wg, bg = m.gate_conv.weight[:, :, 0, 0], m.gate_conv.bias

    def emb(x):  # x [C, H, W] -> [C]: W2 relu(W1 avgpool(x))
        return w2 @ torch.relu(w1 @ x.mean(dim=(1, 2)) + b1) + b2

    q = emb(target[0])
    keys = torch.stack([emb(bag[0, k]) for k in range(n)])  # [N, C]
    s_att = torch.softmax(keys @ q, dim=0)  # eq. 2, [N]
    s_c = torch.sigmoid(wg @ torch.relu(s_att @ keys) + bg)  # [C]
    torch.testing.assert_close(weights[0], s_att)
    torch.testing.assert_close(gate[0, :, 0, 0], s_c)
    torch.testing.assert_close(out[0], target[0] * s_c[:, None, None])


def test_spatial_attention_matches_eq3_by_hand():
    n = 3
    target, bag = _inputs(n, b=1, c=8)
    m = VolumetricSpatialAttention(kernel_size=3, similarity="dot")  # eq. 3's plain dot product
    _randomise_gates(m)
    out, (gate, weights) = m(target, bag, return_attention=True)

    def emb(x):  # x [C, H, W] -> [H*W]
        pooled = torch.stack([x.max(0).values, x.mean(0)])[None]
        return F.conv2d(pooled, m.embed_conv.weight, m.embed_conv.bias, padding=1).flatten()

    keys = torch.stack([emb(bag[0, k]) for k in range(n)])
    s_att = torch.softmax(keys @ emb(target[0]), dim=0)  # eq. 3
    ctx = (s_att @ keys).view(1, 1, 6, 5)
    s_s = torch.sigmoid(F.conv2d(torch.relu(ctx), m.gate_conv.weight, m.gate_conv.bias, padding=1))
    torch.testing.assert_close(weights[0], s_att)
    torch.testing.assert_close(gate, s_s)
    torch.testing.assert_close(out, target * s_s)
    torch.testing.assert_close(m.attention(target, bag)[2], ctx)  # the context the gate conv reads


def test_gates_start_near_one_and_plain_sigmoid_with_zero_bias():
    target, bag = _inputs(3)
    _, attn = VolumetricAttention(32, reduction=4, kernel_size=3, gate_bias_init=3.0)(target, bag, True)
    assert attn["channel_gate"].min() > 0.9 and attn["spatial_gate"].min() > 0.9
    _, attn = VolumetricAttention(32, reduction=4, kernel_size=3, gate_bias_init=0.0)(target, bag, True)
    assert (attn["channel_gate"] - 0.5).abs().max() < 0.05


def test_gate_weight_std_sets_the_initial_spread_of_the_gates():
    torch.manual_seed(0)
    flat = VolumetricAttention(64, reduction=4, kernel_size=7, gate_bias_init=0.0)
    wide = VolumetricAttention(64, reduction=4, kernel_size=7, gate_bias_init=0.0, gate_weight_std=0.1)
    for module in (wide.channel, wide.spatial):
        assert abs(float(module.gate_conv.weight.detach().std()) - 0.1) < 0.02
    assert float(flat.channel.gate_conv.weight.detach().std()) < 2e-3
    target, bag = _inputs(3, c=64, h=12, w=12)
    _, a = flat(target, bag, True)
    _, b = wide(target, bag, True)
    assert float(b["spatial_gate"].detach().std()) > 10 * float(a["spatial_gate"].detach().std())


def test_gradients_reach_every_parameter():
    target, bag = _inputs(3)
    bag.requires_grad_(True)
    va = VolumetricAttention(32, reduction=4, kernel_size=3)
    va(bag[:, 1], bag).square().sum().backward()
    for name, p in va.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert bag.grad.abs().sum() > 0


def test_spatial_attention_sees_the_channel_gated_bag():
    target, bag = _inputs(3)
    gated = VolumetricAttention(32, reduction=4, kernel_size=3, gate_bag=True)
    raw = VolumetricAttention(32, reduction=4, kernel_size=3, gate_bag=False)
    raw.load_state_dict(gated.state_dict())
    _randomise_gates(gated)
    _randomise_gates(raw)
    assert not torch.allclose(gated(target, bag), raw(target, bag))


def test_single_attentions_and_similarity_modes():
    target, bag = _inputs(3)
    for kwargs in ({"spatial": False}, {"channel": False}, {"similarity": "scaled"}, {"similarity": "cosine"}):
        out, attn = VolumetricAttention(32, reduction=4, kernel_size=3, **kwargs)(target, bag, True)
        assert out.shape == target.shape
    assert set(VolumetricAttention(32, spatial=False)(target, bag, True)[1]) == {"channel_gate", "channel_weights",
                                                                          "channel_context"}
    with pytest.raises(ValueError):
        VolumetricAttention(32, channel=False, spatial=False)
    with pytest.raises(ValueError):
        VolumetricChannelAttention(32)(target, bag[:, :, :16])


def test_gate_relu_off_revives_a_spatial_gate_whose_context_is_negative_everywhere():
    """With the paper's ReLU, a spatial context map <= 0 everywhere gives a constant gate and no gradient to the
    embedding or the gate conv; without it both learn."""
    target, bag = _inputs(3, c=8, h=12, w=12)
    grads = {}
    for relu in (True, False):
        torch.manual_seed(0)
        m = VolumetricSpatialAttention(kernel_size=3, gate_bias_init=0.0, gate_weight_std=0.1, gate_relu=relu)
        with torch.no_grad():
            m.embed_conv.bias.fill_(-100.0)  # the context (a mean of embeddings) is negative at every position
        out, (gate, _) = m(target, bag, return_attention=True)
        (out * torch.randn_like(out)).sum().backward()
        grads[relu] = (m.embed_conv.weight.grad.abs().sum(), m.gate_conv.weight.grad.abs().sum(), gate.std())
    assert grads[True][0] == 0 and grads[True][1] == 0 and grads[True][2] == 0
    assert grads[False][0] > 0 and grads[False][1] > 0 and grads[False][2] > 0


def test_gate_relu_comes_from_the_config(tiny_cfg):
    import os

    import volumetric_attention

    from detectron2.modeling import build_backbone

    config = os.path.join(os.path.dirname(volumetric_attention.__file__), "..", "configs", "Phantom",
                          "mask_rcnn_R_18_FPN_GN_va_bag3.yaml")
    for relu in (True, False):
        va = build_backbone(tiny_cfg(config, ["MODEL.VA.GATE_RELU", relu])).va
        assert len(va) == 5 and all(m.spatial.gate_relu is relu and m.channel.gate_relu is relu for m in va.values())


def test_defaults_are_the_configs_and_the_config_builds_the_module():
    """``VolumetricAttention(channels)`` is the module of a default config: one set of defaults, not two."""
    import inspect

    from volumetric_attention import get_va_cfg

    cfg = get_va_cfg(opts=["MODEL.VA.SIMILARITY", "dot", "MODEL.VA.GATE_RELU", False, "MODEL.VA.REDUCTION", 8])
    kwargs = VolumetricAttention.from_config(cfg, 32)
    assert kwargs["similarity"] == "dot" and kwargs["gate_relu"] is False and kwargs["reduction"] == 8
    va = VolumetricAttention(cfg, 32)  # @configurable: from_config's keyword arguments
    assert va.channel.similarity.mode == "dot" and va.spatial.gate_relu is False
    assert va.channel.embed_reduce.out_channels == 4

    defaults = {k: p.default for k, p in inspect.signature(VolumetricAttention.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    from_default_cfg = VolumetricAttention.from_config(get_va_cfg(), 32)
    from_default_cfg.pop("channels")
    assert {k: defaults[k] for k in from_default_cfg} == from_default_cfg


def test_uniform_slice_weights_are_one_over_n_in_both_attentions_by_hand():
    """``slice_weights="uniform"`` (MODEL.VA.SLICE_WEIGHTS, the control): S_att = 1/N, so each gate reads the plain
    mean of the bag's embeddings; no similarity (no temperature) is built."""
    n, c = 5, 16
    target, bag = _inputs(n, b=1, c=c)
    va = VolumetricAttention(c, reduction=4, kernel_size=3, gate_bias_init=0.0, slice_weights="uniform")
    _randomise_gates(va)
    out, attn = va(target, bag, return_attention=True)
    assert va.channel.similarity is None and va.spatial.similarity is None
    for kind in ("channel", "spatial"):
        torch.testing.assert_close(attn[f"{kind}_weights"], torch.full((1, n), 1.0 / n))
    ch = va.channel
    keys = ch.embed(bag[0])  # [N, C]
    s_c = torch.sigmoid(ch.gate_conv(torch.relu(keys.mean(0))[None, :, None, None]))
    torch.testing.assert_close(attn["channel_gate"], s_c)
    gated_bag = bag * s_c[:, None]
    sp = va.spatial
    ctx = sp.embed(gated_bag[0]).mean(0, keepdim=True)  # [1, 1, H, W]
    s_s = torch.sigmoid(sp.gate_conv(torch.relu(ctx)))
    torch.testing.assert_close(out, target * s_c * s_s)
    # the control: attention's weights are not uniform on the same input
    _, attn = VolumetricAttention(c, reduction=4, kernel_size=3)(target, bag, return_attention=True)
    assert not torch.allclose(attn["channel_weights"], torch.full((1, n), 1.0 / n))


def test_slice_weights_come_from_the_config_and_unknown_values_stop():
    from volumetric_attention import get_va_cfg

    va = VolumetricAttention(get_va_cfg(opts=["MODEL.VA.SLICE_WEIGHTS", "uniform"]), 32)
    assert va.channel.similarity is None and va.spatial.similarity is None
    with pytest.raises(ValueError, match="SLICE_WEIGHTS must be one of 'attention', 'uniform'; got 'even'"):
        VolumetricAttention(32, slice_weights="even")
