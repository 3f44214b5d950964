"""Tiny model settings shared by the modeling tests (CPU, a few seconds per model)."""
import pytest
import torch

# Small R18 + GN (detectron2's from-scratch recipe) and small heads.
TINY_OPTS = [
    "MODEL.DEVICE", "cpu",
    "MODEL.WEIGHTS", "",
    "MODEL.BACKBONE.FREEZE_AT", 0,
    "MODEL.RESNETS.DEPTH", 18,
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
    "MODEL.RESNETS.STEM_OUT_CHANNELS", 64,
    "MODEL.RESNETS.NORM", "GN",
    "MODEL.FPN.NORM", "GN",
    "MODEL.FPN.OUT_CHANNELS", 32,
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", 200,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", 50,
    "MODEL.RPN.PRE_NMS_TOPK_TEST", 200,
    "MODEL.RPN.POST_NMS_TOPK_TEST", 50,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32,
    "MODEL.ROI_BOX_HEAD.CONV_DIM", 32,
    "MODEL.ROI_BOX_HEAD.FC_DIM", 64,
    "MODEL.ROI_MASK_HEAD.CONV_DIM", 32,
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", 32,
    "MODEL.VA.REDUCTION", 4,
    "MODEL.VA.SPATIAL_KERNEL", 3,
]
# Deformable convs need bottleneck blocks: a narrow R50 instead of R18.
TINY_DEFORM_OPTS = TINY_OPTS + [
    "MODEL.RESNETS.DEPTH", 50,
    "MODEL.RESNETS.STEM_OUT_CHANNELS", 32,
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
    "MODEL.RESNETS.WIDTH_PER_GROUP", 32,
]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_cfg():
    """``tiny_cfg(config_file=None, opts=(), deform=False)``: a frozen VA config shrunk for the CPU."""
    from volumetric_attention import get_va_cfg

    def make(config_file=None, opts=(), deform=False, freeze=True):
        base = TINY_DEFORM_OPTS if deform else TINY_OPTS
        return get_va_cfg(config_file, base + list(opts), freeze=freeze)

    return make
