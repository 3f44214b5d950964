"""Every shipped config builds (shrunk to a tiny size) and runs one training step on the CPU."""
import glob
import os

import pytest
import torch

import volumetric_attention
from volumetric_attention.modeling import VolumetricAttention

from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

CONFIG_DIR = os.path.join(os.path.dirname(volumetric_attention.__file__), "..", "configs")
CONFIGS = sorted(
    os.path.relpath(p, CONFIG_DIR) for p in glob.glob(os.path.join(CONFIG_DIR, "**", "*.yaml"), recursive=True)
)
SIZE = 64


def _synthetic_dict(channels, seed, size=SIZE):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(channels, size, size, generator=g) * 255
    masks = torch.zeros(2, size, size, dtype=torch.bool)
    masks[0, 8:40, 10:50] = True  # "liver"
    masks[1, 20:30, 20:32] = True  # "lesion"
    inst = Instances((size, size))
    inst.gt_boxes = Boxes(torch.tensor([[10.0, 8.0, 50.0, 40.0], [20.0, 20.0, 32.0, 30.0]]))
    inst.gt_classes = torch.tensor([0, 1])
    inst.gt_masks = BitMasks(masks)
    sem_seg = masks[0].long() + masks[1].long()
    sem_seg[:2] = 255
    return {"image": image, "instances": inst, "sem_seg": sem_seg, "height": size, "width": size}


def test_configs_are_found():
    assert len(CONFIGS) >= 20 and "Base-VA-RCNN-FPN.yaml" in CONFIGS


def _exempt_from_gradient(model):
    """Names of VA parameters whose zero gradient the forward pass just run explains; every other parameter must get
    a non-zero one.

    * A gate whose context was <= 0 everywhere while its ReLU is on passes nothing to its gate conv: only the gate
      conv's bias learns (the dead gate of modeling/attention.py's docstring).
    * The cosine temperature learns nothing from slice weights that are one-hot in float32 or all equal.
    """
    exempt = set()
    for prefix, module in model.named_modules():
        if not isinstance(module, VolumetricAttention):
            continue
        for kind in ("channel", "spatial"):
            gate = getattr(module, kind)
            if gate is None:
                continue
            context = module.last_attention[f"{kind}_context"]
            weights = module.last_attention[f"{kind}_weights"]
            names = {f"{prefix}.{kind}.{n}" for n, _ in gate.named_parameters()}
            if gate.gate_relu and not (context > 0).any():
                exempt |= names - {f"{prefix}.{kind}.gate_conv.bias"}
            one_hot = (weights.max(dim=1).values >= 1 - 1e-6).all()
            if one_hot or (weights.std(dim=1) < 1e-7).all():
                exempt |= {n for n in names if ".similarity." in n}
    return exempt


@pytest.mark.parametrize("name", CONFIGS)
def test_config_trains_one_step(name, tiny_cfg):
    path = os.path.join(CONFIG_DIR, name)
    probe = tiny_cfg(path)
    # the RPN samples every anchor, so that every FPN level (P5, P6 of a 64 px image included) reaches the loss
    opts = ["MODEL.ROI_HEADS.NUM_CLASSES", 2, "MODEL.RPN.BATCH_SIZE_PER_IMAGE", 100000]
    cfg = tiny_cfg(path, opts, deform=any(probe.MODEL.RESNETS.DEFORM_ON_PER_STAGE))
    model = build_model(cfg)
    model.train()
    for module in model.modules():
        if isinstance(module, VolumetricAttention):
            module.keep_attention = True  # for _exempt_from_gradient
    with EventStorage():
        # GN needs more than one value per group: P7 (stride 128) must be at least 2 px wide.
        size = 3 * SIZE if cfg.MODEL.META_ARCHITECTURE == "RetinaNet" else SIZE
        losses = model([_synthetic_dict(len(cfg.MODEL.PIXEL_MEAN), 0, size)])
    total = sum(losses.values())
    assert torch.isfinite(total), losses
    total.backward()
    exempt = _exempt_from_gradient(model)
    without = [n for n, p in model.named_parameters()
               if p.requires_grad and n not in exempt and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not without, f"parameters without a gradient: {without}"
    has_va = any(".va." in n for n, _ in model.named_parameters())
    if cfg.MODEL.VA.ENABLED and cfg.MODEL.BACKBONE.NAME != "build_early_fusion_resnet_fpn_backbone":
        assert has_va
    else:
        assert not has_va


def test_default_predictor_on_a_float_bag(tiny_cfg):
    from detectron2.engine import DefaultPredictor

    cfg = tiny_cfg(os.path.join(CONFIG_DIR, "Phantom", "mask_rcnn_R_18_FPN_GN_va_bag3.yaml"),
                   ["INPUT.MIN_SIZE_TEST", 70, "INPUT.MAX_SIZE_TEST", 100])
    predictor = DefaultPredictor(cfg)
    image = (torch.rand(50, 60, 9) * 255).numpy()  # H, W, 3N float32; sides not multiples of 32
    out = predictor(image)
    assert out["instances"].image_size == (50, 60)


@pytest.mark.parametrize("name", ["Phantom/mask_rcnn_R_18_FPN_GN_va_bag3.yaml",
                                  "Phantom/semantic_R_18_FPN_GN_va_bag3.yaml"])
def test_va_config_trains_under_autocast(name, tiny_cfg):
    """Two optimizer steps as detectron2's AMPTrainer takes them (forward and losses under autocast), here CPU
    autocast in bfloat16 (AMPTrainer itself needs CUDA): finite losses, and the VA parameters move. 128 px, so
    that P6 is 2 x 2 (a 1 x 1 map's cosine similarity is only a sign, without a gradient for its bias)."""
    from volumetric_attention.engine import VATrainer

    cfg = tiny_cfg(os.path.join(CONFIG_DIR, name), ["MODEL.VA.BAG_SIZE", 3, "SOLVER.BASE_LR", 0.01])
    model = VATrainer.build_model(cfg).train()
    optimizer = VATrainer.build_optimizer(cfg, model)
    va_before = {n: p.detach().clone() for n, p in model.named_parameters() if ".va." in n}
    channels = len(cfg.MODEL.PIXEL_MEAN)
    with EventStorage():
        for step in range(2):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                losses = model([_synthetic_dict(channels, step, 2 * SIZE),
                                _synthetic_dict(channels, step + 10, 2 * SIZE)])
                total = sum(losses.values())
            assert torch.isfinite(total), losses
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
    moved = [n for n, p in model.named_parameters() if n in va_before and not torch.equal(p, va_before[n])]
    assert len(moved) == len(va_before) > 0, sorted(set(va_before) - set(moved))


def _sets_random_flip(name):
    """Whether the config or a config in its _BASE_ chain sets INPUT.RANDOM_FLIP (not detectron2's default)."""
    import yaml

    path = os.path.join(CONFIG_DIR, name)
    while path:
        with open(path) as f:
            raw = yaml.safe_load(f) or {}
        if "RANDOM_FLIP" in (raw.get("INPUT") or {}):
            return True
        base = raw.get("_BASE_")
        path = os.path.normpath(os.path.join(os.path.dirname(path), base)) if base else None
    return False


@pytest.mark.parametrize("name", [c for c in CONFIGS if c != "Base-VA-RCNN-FPN.yaml"])
def test_every_config_chooses_its_flip_and_ct_data_is_not_mirrored(name):
    """detectron2 flips left-right by default; on CT that mirrors the patient, so each config chooses on purpose."""
    from volumetric_attention import get_va_cfg

    from detectron2.data import detection_utils
    from detectron2.data import transforms as T

    assert _sets_random_flip(name)
    cfg = get_va_cfg(os.path.join(CONFIG_DIR, name))
    flips = [a for a in detection_utils.build_augmentation(cfg, is_train=True) if isinstance(a, T.RandomFlip)]
    if name.split(os.sep)[0] in ("LiTS", "DeepLesion"):
        assert cfg.INPUT.RANDOM_FLIP == "none" and not flips
