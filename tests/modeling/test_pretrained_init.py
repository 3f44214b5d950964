"""Every context model starts from a 2.5D model's checkpoint the way its authors started it (the pretrained study).

A 2.5D semantic FPN (the study's baseline, tiny) is saved as train_net.py saves it (``.pth``) and as a detectron2
model-zoo ``.pkl``; each context model loaded from it is compared with the 2.5D model's own output.
"""
import os
import pickle

import _tiny
import pytest
import torch

import volumetric_attention
from volumetric_attention.engine import CheckpointLoadError, VACheckpointer
from volumetric_attention.modeling.stem_init import widen_stem_weight

from detectron2.modeling import build_model

C = os.path.join(os.path.dirname(volumetric_attention.__file__), "..", "configs", "Phantom",
                 "zcontext_liver_semantic_R_18_FPN_GN_")
STEM = "backbone.bottom_up.stem.conv1.weight"


def _run(model, image):
    """The model's sem-seg logits ``[3, 64, 64]`` for one ``[3·k, 64, 64]`` input."""
    with torch.no_grad():
        return model([{"image": image, "height": 64, "width": 64}])[0]["sem_seg"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """(2.5D model in eval mode, its .pth, its model-zoo .pkl)."""
    from volumetric_attention import get_va_cfg

    torch.manual_seed(0)
    model = build_model(get_va_cfg(C + "baseline.yaml", _tiny.FROM_SCRATCH_R18 + _tiny.MODEL + _tiny.INPUT)).eval()
    folder = tmp_path_factory.mktemp("pretrained")
    VACheckpointer(model, str(folder)).save("model_final")
    pkl = folder / "model_final.pkl"
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    with open(pkl, "wb") as f:
        pickle.dump({"model": state, "__author__": "Detectron2 Model Zoo", "matching_heuristics": True}, f)
    return model, str(folder / "model_final.pth"), str(pkl)


@pytest.fixture
def fine_tuned(tiny_cfg, pretrained):
    """``fine_tuned(config_name, opts=(), fmt="pth")``: a context model loaded from the pretrained checkpoint."""

    def make(name, opts=(), fmt="pth"):
        model = build_model(tiny_cfg(C + name + ".yaml", _tiny.INPUT + list(opts))).eval()
        path = pretrained[1] if fmt == "pth" else pretrained[2]
        VACheckpointer(model).load(path, checkpointables=[])
        return model

    return make


def _bag(n=3, seed=1):
    return torch.rand(3 * n, 64, 64, generator=torch.Generator().manual_seed(seed)) * 255


@pytest.mark.parametrize("fmt", ["pth", "pkl"])
def test_centre_early_fusion_gives_the_2d_model_on_the_target_image(fine_tuned, pretrained, fmt):
    model = fine_tuned("early_fusion", ["MODEL.EARLY_FUSION.STEM_INIT", "centre"], fmt)
    for seed in (1, 2):
        bag = _bag(seed=seed)
        torch.testing.assert_close(_run(model, bag), _run(pretrained[0], bag[3:6]), atol=1e-4, rtol=1e-4)
    weight = model.state_dict()[STEM]
    assert weight[:, :3].abs().sum() == 0 and weight[:, 6:].abs().sum() == 0


@pytest.mark.parametrize("fmt", ["pth", "pkl"])
def test_inflate_early_fusion_gives_the_2d_model_on_the_mean_image(fine_tuned, pretrained, fmt):
    """``inflate``: the stem is linear in its input, so a bag gives the 2D model on the mean of its images, and a bag
    of N copies of one image the 2D model on that image."""
    model = fine_tuned("early_fusion", ["MODEL.EARLY_FUSION.STEM_INIT", "inflate", "MODEL.VA.BAG_SIZE", 5], fmt)
    image = _bag(1)
    torch.testing.assert_close(_run(model, image.repeat(5, 1, 1)), _run(pretrained[0], image), atol=1e-3, rtol=1e-3)
    bag = _bag(5)
    mean = bag.view(5, 3, 64, 64).mean(0)
    torch.testing.assert_close(_run(model, bag), _run(pretrained[0], mean), atol=1e-3, rtol=1e-3)
    # and not the centre image's output: the control that tells the two initialisations apart
    assert not torch.allclose(_run(model, bag), _run(pretrained[0], bag[6:9]), atol=1e-2)


def test_random_leaves_the_widened_stem_as_built_and_loads_the_rest(tiny_cfg, pretrained, load_incompatible):
    model = build_model(tiny_cfg(C + "early_fusion.yaml", _tiny.INPUT + ["MODEL.EARLY_FUSION.STEM_INIT", "random"]))
    before = model.state_dict()[STEM].clone()
    incompatible = load_incompatible(VACheckpointer(model), pretrained[1], checkpointables=[])
    # dropped on purpose, not skipped by detectron2's shape check
    assert incompatible.missing_keys == [STEM] and not incompatible.incorrect_shapes
    loaded, source = model.state_dict(), pretrained[0].state_dict()
    assert torch.equal(loaded[STEM], before)
    assert all(torch.equal(loaded[k], v) for k, v in source.items() if k != STEM)


def test_widen_stem_weight_by_mode():
    weight = torch.randn(4, 3, 7, 7)
    centre = widen_stem_weight(weight, 3, "centre")
    torch.testing.assert_close(centre, torch.cat([torch.zeros_like(weight), weight, torch.zeros_like(weight)], 1))
    torch.testing.assert_close(widen_stem_weight(weight, 3, "inflate"), torch.cat([weight / 3] * 3, 1))
    assert widen_stem_weight(weight, 3, "random") is None
    with pytest.raises(ValueError, match="STEM_INIT must be one of 'centre', 'inflate', 'random'; got 'middle'"):
        widen_stem_weight(weight, 3, "middle")


def test_a_stem_of_neither_shape_stops_the_load_with_both_shapes(tiny_cfg, tmp_path):
    bag3 = build_model(tiny_cfg(C + "early_fusion.yaml", _tiny.INPUT))
    VACheckpointer(bag3, str(tmp_path)).save("bag3")
    bag5 = build_model(tiny_cfg(C + "early_fusion.yaml", _tiny.INPUT + ["MODEL.VA.BAG_SIZE", 5]))
    with pytest.raises(CheckpointLoadError) as e:  # the error train_net.py stops on with its one line
        VACheckpointer(bag5).load(str(tmp_path / "bag3.pth"), checkpointables=[])
    message = str(e.value)
    assert "\n" not in message and "bag3.pth" in message
    assert "(64, 9, 7, 7)" in message and "(64, 3, 7, 7)" in message and "(64, 15, 7, 7)" in message


def test_the_widened_stem_learns_under_freeze_at_2(tiny_cfg, pretrained):
    """FREEZE_AT 2 (the COCO / ImageNet fine-tuning configs) freezes the stem and res2, but the widened conv trains:
    its zero channels get a gradient from the first step."""
    model = build_model(tiny_cfg(C + "early_fusion.yaml", _tiny.INPUT + ["MODEL.BACKBONE.FREEZE_AT", 2]))
    VACheckpointer(model).load(pretrained[1], checkpointables=[])
    bottom_up = model.backbone.bottom_up
    assert not any(p.requires_grad for p in bottom_up.res2.parameters())
    assert not any(p.requires_grad for n, p in bottom_up.stem.named_parameters() if n != "conv1.weight")
    model.train()
    sem_seg = torch.randint(0, 3, (64, 64))
    losses = model([{"image": _bag(), "height": 64, "width": 64, "sem_seg": sem_seg}])
    sum(losses.values()).backward()
    grad = bottom_up.stem.conv1.weight.grad
    assert grad is not None and (grad.abs().sum(dim=(0, 2, 3)) > 0).all()


def test_3dce_starts_as_the_2d_model(fine_tuned, pretrained):
    model = fine_tuned("3dce_bag3")
    bag = _bag()
    torch.testing.assert_close(_run(model, bag), _run(pretrained[0], bag[3:6]), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["va_bag3", "va_context_bag3"])
def test_va_misses_only_its_own_modules_and_starts_near_the_2d_model(tiny_cfg, pretrained, load_incompatible, name):
    """With the fine-tuning gates (GATE_BIAS_INIT 3, the LiTS configs'), each FPN level starts at about
    sigmoid(3)^2 = 0.907 of the 2D model's; the semantic head's GroupNorm takes most of that scale back out."""
    model = build_model(tiny_cfg(C + name + ".yaml", _tiny.INPUT + ["MODEL.VA.GATE_BIAS_INIT", 3.0])).eval()
    incompatible = load_incompatible(VACheckpointer(model), pretrained[1], checkpointables=[])
    assert set(incompatible.missing_keys) == {n for n, _ in model.named_parameters() if n.startswith("backbone.va.")}
    assert not incompatible.unexpected_keys and not incompatible.incorrect_shapes

    bag = _bag()
    base = pretrained[0]
    with torch.no_grad():
        features = model.backbone(((bag - model.pixel_mean) / model.pixel_std)[None])
        reference = base.backbone(((bag[3:6] - base.pixel_mean) / base.pixel_std)[None])
    for level in ("p2", "p3", "p4", "p5"):
        ratio = (features[level].norm() / reference[level].norm()).item()
        assert ratio == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item() ** 2, abs=0.01), level
    torch.testing.assert_close(_run(model, bag), _run(base, bag[3:6]), atol=0.05, rtol=0.05)


def test_a_caffe2_imagenet_stem_is_widened_under_its_own_name(tiny_cfg):
    """detectron2's ImageNet ``R-50.pkl`` (Caffe2 names) holds the stem conv as ``conv1_w``: it is widened there,
    before detectron2 renames it."""
    import numpy as np

    from volumetric_attention.modeling.stem_init import widen_checkpoint_stems

    model = build_model(tiny_cfg(C + "early_fusion.yaml", _tiny.INPUT + ["MODEL.EARLY_FUSION.STEM_INIT", "inflate"]))
    weight = np.random.default_rng(0).standard_normal((64, 3, 7, 7)).astype(np.float32)
    state = {"conv1_w": weight, "res2_0_branch2a_w": np.zeros((64, 64, 1, 1), np.float32)}
    widen_checkpoint_stems(model, state, source="R-50.pkl")
    torch.testing.assert_close(state["conv1_w"], torch.from_numpy(weight).repeat(1, 3, 1, 1) / 3)
    assert state["res2_0_branch2a_w"].shape == (64, 64, 1, 1)
