"""VA-FPN in training runs the backbone once per distinct 2.5D image: same outputs and gradients as running all."""
import pytest
import torch

from volumetric_attention.data import bag_slice_indices
from volumetric_attention.modeling.va_fpn import distinct_images

from detectron2.modeling import build_backbone
from detectron2.utils.events import EventStorage

N = 3
G = 3
H = W = 32
VA_FPN = [
    "MODEL.BACKBONE.NAME", "build_va_resnet_fpn_backbone",
    "MODEL.RESNETS.OUT_FEATURES", ["res2", "res3", "res4", "res5"],
    "MODEL.FPN.IN_FEATURES", ["res2", "res3", "res4", "res5"],
    "MODEL.RPN.IN_FEATURES", ["p2", "p3", "p4", "p5", "p6"],
    "MODEL.ROI_HEADS.IN_FEATURES", ["p2", "p3", "p4", "p5"],
]


@pytest.fixture
def backbone(tiny_cfg):
    return build_backbone(tiny_cfg(None, VA_FPN + ["MODEL.VA.BAG_SIZE", N])).train()


def _grouped_batch(volume, starts):
    """``[B, 3N, H, W]``: for each start z, the bags of targets z, z+3, ..., z+3(G-1) (one slice group each)."""
    bags = [volume[torch.from_numpy(bag_slice_indices(z + 3 * j, len(volume), N))]
            for z in starts for j in range(G)]
    return torch.stack(bags)


def _count_images(bb):
    counts = []
    extract = bb.extract_features

    def counting(images):
        counts.append(images.shape[0])
        return extract(images)

    bb.extract_features = counting
    return counts


def _reference(bb, x):
    b = x.shape[0]
    feats = bb.extract_features(x.reshape(b * N, 3, H, W))
    return bb.attend({k: v.reshape(b, N, *v.shape[1:]) for k, v in feats.items()})


def _grads(bb, out, weights):
    bb.zero_grad()
    sum((out[k] * weights[k]).sum() for k in out).backward()
    return {n: p.grad.clone() for n, p in bb.bottom_up.named_parameters() if p.grad is not None}


def test_grouped_batch_equals_running_every_image(backbone):
    # float64: the shared and the unshared computation differ only by rounding (float32: about 1e-5 relative)
    backbone.double()
    volume = torch.randn(30, H, W, dtype=torch.float64) * 50 + 100
    x = _grouped_batch(volume, [4, 15])  # two groups of G targets, B = 2G
    counts = _count_images(backbone)
    with EventStorage(0) as storage:
        shared = backbone(x)
    assert counts == [2 * (G + N - 1)]  # each group's G bags hold G + N - 1 distinct images, not G * N
    assert storage.history("va/backbone_images_per_target").latest() == pytest.approx(2 * (G + N - 1) / (2 * G))

    reference = _reference(backbone, x)
    assert counts[-1] == 2 * G * N
    assert list(shared) == list(reference)
    torch.manual_seed(1)
    weights = {k: torch.randn_like(v) for k, v in reference.items()}
    for k in reference:
        torch.testing.assert_close(shared[k], reference[k], rtol=1e-9, atol=1e-9)
    grads_shared = _grads(backbone, backbone(x), weights)
    grads_reference = _grads(backbone, _reference(backbone, x), weights)
    assert grads_shared.keys() == grads_reference.keys() and len(grads_shared) > 10
    for name, g in grads_reference.items():
        torch.testing.assert_close(grads_shared[name], g, rtol=1e-9, atol=1e-9, msg=name)


def test_nothing_shared_and_eval_run_every_image(backbone):
    x = torch.randn(2, 3 * N, H, W)
    counts = _count_images(backbone)
    with EventStorage(0) as storage:
        backbone(x)
    assert counts == [2 * N]
    assert storage.history("va/backbone_images_per_target").latest() == N
    # eval mode: every image of every bag, duplicates included (volume inference has its own feature cache)
    volume = torch.randn(30, H, W)
    backbone.eval()
    with torch.no_grad():
        backbone(_grouped_batch(volume, [4]))
    assert counts[-1] == G * N
    backbone.train()
    backbone(x)  # no EventStorage: nothing to record, no error
    assert counts[-1] == 2 * N


def test_clamped_bag_at_the_volume_end_shares_its_repeated_image(tiny_cfg):
    bb = build_backbone(tiny_cfg(None, VA_FPN + ["MODEL.VA.BAG_SIZE", 5])).train()
    volume = torch.randn(10, H, W)
    # target on the last slice: images 3 and 4 are both slices (9, 9, 9)
    x = volume[torch.from_numpy(bag_slice_indices(9, 10, 5))][None]
    counts = _count_images(bb)
    out = bb(x)
    assert counts == [4]
    feats = bb.extract_features(x.reshape(5, 3, H, W))
    reference = bb.attend({k: v.reshape(1, 5, *v.shape[1:]) for k, v in feats.items()})
    for k, v in reference.items():
        torch.testing.assert_close(out[k], v, rtol=1e-4, atol=1e-4)


def test_distinct_images_confirms_fingerprints():
    a = torch.arange(12.0).reshape(3, 2, 2)
    same_sum = a.flip(-1)  # other image, equal sum
    nan = torch.full_like(a, float("nan"))
    images = torch.stack([a, same_sum, a.clone(), nan, nan.clone(), same_sum.clone()])
    unique, inverse = distinct_images(images)
    assert unique.tolist() == [0, 1, 3, 4, 5]  # the collision keeps image 1 and its copy 5 apart; NaN never shared
    assert inverse.tolist() == [0, 1, 0, 2, 3, 4]
    assert torch.equal(images[unique][inverse][[0, 1, 2, 5]], images[[0, 1, 2, 5]])
    unique, inverse = distinct_images(torch.randn(4, 3, 2, 2))
    assert unique.tolist() == inverse.tolist() == [0, 1, 2, 3]


def _reference_without_context_grad(bb, x):
    """Every image run on its own; a bag member's features carry autograd only where that image is some bag's
    target (compared by value), else they are detached."""
    b = x.shape[0]
    images = x.reshape(b * N, 3, H, W)
    targets = images[N // 2::N]
    is_target = [bool((targets == img).flatten(1).all(1).any()) for img in images]
    feats = bb.extract_features(images)
    feats = {k: torch.stack([v[i] if is_target[i] else v[i].detach() for i in range(len(images))])
             for k, v in feats.items()}
    return bb.attend({k: v.reshape(b, N, *v.shape[1:]) for k, v in feats.items()}), is_target


@pytest.mark.parametrize("starts", [[4, 15], [2, 8, 20]])
def test_context_grad_false_backpropagates_through_targets_only(backbone, starts):
    """MODEL.VA.CONTEXT_GRAD False: the same outputs; backbone gradients only from the images that are some bag's
    target (in a slice group, a target is also a context image of its neighbours' bags and keeps its gradient);
    VA gradients unchanged; the context images run under no_grad."""
    backbone.double()
    volume = torch.randn(30, H, W, dtype=torch.float64) * 50 + 100
    x = _grouped_batch(volume, starts)
    torch.manual_seed(1)
    full = backbone(x)
    weights = {k: torch.randn_like(v) for k, v in full.items()}
    grads_full = _grads(backbone, full, weights)
    va_grads_full = {n: p.grad.clone() for n, p in backbone.va.named_parameters()}

    backbone.context_grad = False
    grad_modes = []
    extract = backbone.extract_features
    backbone.extract_features = lambda images: grad_modes.append(torch.is_grad_enabled()) or extract(images)
    out = backbone(x)
    assert grad_modes == [True, False]  # targets with autograd, then the context images without
    for k in full:
        torch.testing.assert_close(out[k], full[k], rtol=1e-9, atol=1e-9)
    grads = _grads(backbone, out, weights)
    va_grads = {n: p.grad.clone() for n, p in backbone.va.named_parameters()}
    backbone.extract_features = extract
    reference, is_target = _reference_without_context_grad(backbone, x)
    assert not all(is_target)
    grads_reference = _grads(backbone, reference, weights)
    assert grads.keys() == grads_reference.keys() and len(grads) > 10
    for name, g in grads_reference.items():
        torch.testing.assert_close(grads[name], g, rtol=1e-9, atol=1e-9, msg=name)
    assert any(not torch.allclose(grads[n], grads_full[n]) for n in grads)  # the context's share is gone
    for name, g in va_grads_full.items():
        torch.testing.assert_close(va_grads[name], g, rtol=1e-9, atol=1e-9, msg=name)


def test_context_grad_comes_from_the_config(tiny_cfg):
    assert build_backbone(tiny_cfg(None, VA_FPN)).context_grad is True
    assert build_backbone(tiny_cfg(None, VA_FPN + ["MODEL.VA.CONTEXT_GRAD", False])).context_grad is False
