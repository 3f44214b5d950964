"""MODEL.VA.MEMBER_IMAGES: bag members of several early-fused 2.5D images (context at the input and through VA)."""
import os

import numpy as np
import pytest
import torch

import volumetric_attention
from volumetric_attention.config import bag_size_from_cfg
from volumetric_attention.data.bag import make_bag_array
from volumetric_attention.inference.case_loop import CaseLoop

from detectron2.data import transforms as T
from detectron2.modeling import build_model

CONFIG_DIR = os.path.join(os.path.dirname(volumetric_attention.__file__), "..", "configs", "Phantom")
VA_CONTEXT = os.path.join(CONFIG_DIR, "zcontext_liver_semantic_R_18_FPN_GN_va_context_bag3.yaml")
# the study row va_context_members3: members of 3 early-fused 2.5D images
MEMBERS = ["MODEL.VA.MEMBER_IMAGES", 3]


def test_members_of_3_images_load_5_images_through_a_9_channel_stem(tiny_cfg):
    cfg = tiny_cfg(VA_CONTEXT, MEMBERS)
    assert (cfg.MODEL.VA.BAG_SIZE, cfg.MODEL.VA.MEMBER_IMAGES) == (3, 3)
    # the mapper's bag: 3 members of 3 images, each one image from the next, 5 images, 15 slices
    assert bag_size_from_cfg(cfg) == 5 and len(cfg.MODEL.PIXEL_MEAN) == 15
    model = build_model(cfg)
    assert model.backbone.bottom_up.stem.conv1.weight.shape[1] == 9
    # the paper's members: one image each
    assert bag_size_from_cfg(tiny_cfg(VA_CONTEXT)) == 3


def test_each_member_is_its_window_of_images_through_the_shared_backbone(tiny_cfg):
    model = build_model(tiny_cfg(VA_CONTEXT, MEMBERS)).eval()
    # the context projection starts at zero: give it weights, so the other members reach the output
    for module in model.backbone.va.values():
        torch.nn.init.normal_(module.context_proj.weight, std=0.1)
    backbone = model.backbone
    x = torch.randn(2, 15, 64, 64)
    with torch.no_grad():
        out = backbone(x)
        # independent: member k is channels 3k .. 3k + 8 (images k, k + 1, k + 2), each through extract_features
        windows = [backbone.extract_features(x[:, 3 * k : 3 * k + 9]) for k in range(3)]
        expected = backbone.attend({f: torch.stack([w[f] for w in windows], 1) for f in windows[0]})
        # the target member alone is the early-fusion input: the 9 slices centred on the target
        target = backbone.extract_features(x[:, 3:12])
    for f in expected:
        torch.testing.assert_close(out[f], expected[f])
    # the attended target differs from the target member's own features: the other members count
    assert not torch.allclose(out["p2"], target["p2"])
    with pytest.raises(ValueError, match=r"expects 15 input channels \(bag of 3 members of 3 images\), got 9"):
        backbone(x[:, :9])


def test_training_step_and_volume_inference_without_the_feature_cache(tiny_cfg):
    cfg = tiny_cfg(VA_CONTEXT, MEMBERS)
    model = build_model(cfg)
    image = torch.rand(15, 64, 64) * 255
    sem_seg = torch.zeros(64, 64, dtype=torch.int64)
    sem_seg[10:40, 10:40] = 1
    sem_seg[20:26, 20:26] = 2
    from detectron2.utils.events import EventStorage

    with EventStorage():
        losses = model.train()([{"image": image, "sem_seg": sem_seg, "height": 64, "width": 64}])
    sum(losses.values()).backward()
    assert model.backbone.bottom_up.stem.conv1.weight.grad.abs().sum() > 0
    # the case loop packs each target's 5 images and runs the model on them: no cache, which keys one image per
    # member; its output equals the model's on the mapper's bag array
    model.eval()
    volume = np.random.default_rng(0).random((7, 64, 64), dtype=np.float32)
    loop = CaseLoop(model, bag_size_from_cfg(cfg), [T.ResizeShortestEdge([64, 64], 64)])
    assert not loop.use_feature_cache
    results = {z: out for batch, outs in loop.run(volume) for z, out in zip(batch, outs)}
    assert sorted(results) == list(range(7))
    # 3 members of 3 images through the backbone per target
    assert loop.backbone_images == 7 * 9
    with torch.no_grad():
        for z in (0, 3, 6):  # both clamped ends and the middle
            bag = torch.as_tensor(make_bag_array(volume, z, 5).transpose(2, 0, 1).copy())
            direct = model([{"image": bag, "height": 64, "width": 64}])[0]["sem_seg"]
            torch.testing.assert_close(results[z]["sem_seg"], direct)


@pytest.mark.parametrize("members, location, message", [
    (2, "RPN", "MEMBER_IMAGES must be odd and positive"),
    (3, "RCNN", "MEMBER_IMAGES > 1 needs MODEL.VA.LOCATION 'RPN'"),
])
def test_invalid_member_settings_fail_in_one_line(tiny_cfg, members, location, message):
    cfg = tiny_cfg(os.path.join(CONFIG_DIR, "mask_rcnn_R_18_FPN_GN_va_rcnn_bag3.yaml"),
                   ["MODEL.VA.MEMBER_IMAGES", members, "MODEL.VA.LOCATION", location])
    with pytest.raises(ValueError, match=message):
        build_model(cfg)


def test_a_paper_va_checkpoint_loads_whole_with_its_stem_on_the_centre_image(tmp_path, tiny_cfg):
    """The project's checkpointer widens the paper VA model's [C, 3, 7, 7] stem to the members' [C, 9, 7, 7] by
    MODEL.EARLY_FUSION.STEM_INIT ("centre": on each member's own image); every other key loads as it is."""
    from volumetric_attention.engine import VACheckpointer
    from volumetric_attention.modeling.stem_init import widen_stem_weight

    paper = build_model(tiny_cfg(VA_CONTEXT))
    VACheckpointer(paper, save_dir=str(tmp_path)).save("va")
    model = build_model(tiny_cfg(VA_CONTEXT, MEMBERS))
    VACheckpointer(model).load(str(tmp_path / "va.pth"), checkpointables=[])
    stem = "backbone.bottom_up.stem.conv1.weight"
    state = model.state_dict()
    for k, v in paper.state_dict().items():
        expected = widen_stem_weight(v, 3, "centre") if k == stem else v
        assert torch.equal(state[k], expected), k
