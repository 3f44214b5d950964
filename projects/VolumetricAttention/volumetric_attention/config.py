"""Config keys of the Volumetric Attention project (``add_va_config``) and the one way to build a VA config."""
from typing import Tuple

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg


def add_va_config(cfg):
    """Add every key this project uses to a detectron2 config. Each key has a one-line comment."""
    _C = cfg

    # ---------------------------------------------------------------- model: volumetric attention
    _C.MODEL.VA = CN()
    # Apply volumetric attention. False gives the plain 2.5D baseline (a bag of one 3-slice image).
    _C.MODEL.VA.ENABLED = True
    # N, the number of 2.5D images (members) in the bag, the target's own included (odd; the paper's LiTS benchmark
    # uses 9).
    _C.MODEL.VA.BAG_SIZE = 3
    # Use volumetric channel attention (paper section 2.2, eq. 2).
    _C.MODEL.VA.CHANNEL = True
    # Use volumetric spatial attention (paper section 2.3, eq. 3), applied after channel attention.
    _C.MODEL.VA.SPATIAL = True
    # Reduction ratio r of the channel embedding W2·ReLU(W1·x), W1 in R^{C/r x C}.
    _C.MODEL.VA.REDUCTION = 16
    # Kernel size of the spatial attention's convolutions.
    _C.MODEL.VA.SPATIAL_KERNEL = 7
    # Where VA acts: "RPN" (on every FPN level, before the RPN) or "RCNN" (on ROI-aligned box/mask features).
    _C.MODEL.VA.LOCATION = "RPN"
    # One VA module shared by all FPN levels (True) or one per level (False).
    _C.MODEL.VA.SHARE_ACROSS_LEVELS = False
    # Initial bias of each gate's last conv; sigmoid(3) = 0.95 keeps pretrained features nearly intact at init (0 =
    # plain sigmoid gate, 0.5; see modeling/attention.py).
    _C.MODEL.VA.GATE_BIAS_INIT = 3.0
    # Std of each gate's last conv weights at init: small keeps every gate flat (near sigmoid(bias)) at first.
    _C.MODEL.VA.GATE_WEIGHT_STD = 1e-3
    # Slice similarity of eq. 2/3, in float32 under any autocast: "dot" (the paper's), "scaled" (dot / sqrt(dim)) or
    # "cosine" (times a learned temperature); why cosine is the default: modeling/slice_similarity.py.
    _C.MODEL.VA.SIMILARITY = "cosine"
    # The slice weights S_att of both attentions: "attention" (the paper's softmax over the bag) or "uniform" (fixed
    # 1/N: the control that tells whether attending over the bag does anything).
    _C.MODEL.VA.SLICE_WEIGHTS = "attention"
    # The boolean SIMILARITY replaced: an old config that sets it gets a one-line KeyError saying what to write.
    _C.register_renamed_key("MODEL.VA.SCALED_DOT_PRODUCT", "MODEL.VA.SIMILARITY",
                            message='SCALED_DOT_PRODUCT True is SIMILARITY "scaled", False is "dot"')
    # Backpropagate through the context images of the bag (True, the paper's); False runs them through the backbone
    # without autograd (the target's image and the VA modules keep their gradients), saving their activation memory.
    _C.MODEL.VA.CONTEXT_GRAD = True
    # Beyond the paper: add a learned 1x1 projection (zero at init) of the attention-weighted bag features to the gated
    # target, so that context features reach the heads (modeling/attention.py).
    _C.MODEL.VA.CONTEXT_FEATURES = False
    # Beyond the paper: 2.5D images early-fused into each bag member (odd). 1 is the paper's (a member is one 2.5D
    # image); M > 1 gives each of the BAG_SIZE members the 3·M slices centred on it, through a stem widened to 3·M
    # channels, so that context enters at the input as well as through VA. The input then holds BAG_SIZE + M - 1
    # 2.5D images (modeling/va_fpn.py).
    _C.MODEL.VA.MEMBER_IMAGES = 1
    # The ReLU before each gate conv (eq. 2/3, the paper's). On the one-channel spatial context it can be zero
    # everywhere from init on (a level whose spatial attention never trains); False feeds the gate conv the context
    # itself.
    _C.MODEL.VA.GATE_RELU = True
    # Every this many training iterations, log VA statistics (largest slice weights, gate mean/spread, cosine
    # temperature, gradient norm per VA module) to metrics.json; 0 = off.
    _C.MODEL.VA.STATS_PERIOD = 20

    # ---------------------------------------------------------------- model: a widened stem from a 2D checkpoint
    _C.MODEL.EARLY_FUSION = CN()
    # How a stem that takes k 2.5D images (early fusion, k = BAG_SIZE; VA members, k = MEMBER_IMAGES) starts from
    # a 2D checkpoint's 3-channel stem conv (MODEL.WEIGHTS): "centre" (on the target image's channels, zeros on the
    # others; 3DCE's), "inflate" (repeated over the k images and divided by k; I3D's) or "random" (not loaded).
    # See modeling/stem_init.py, also for FREEZE_AT.
    _C.MODEL.EARLY_FUSION.STEM_INIT = "centre"

    # ---------------------------------------------------------------- model: semantic FPN head
    # Weight of the soft Dice term of MODEL.SEM_SEG_HEAD.NAME "DiceCESemSegFPNHead" (Dice + cross-entropy, nnU-Net's
    # default loss; 1.0 as there).
    _C.MODEL.SEM_SEG_HEAD.DICE_WEIGHT = 1.0

    # ---------------------------------------------------------------- input: CT preprocessing
    _C.INPUT.CT = CN()
    # HU window [low, high]: intensities are clamped to it and mapped to [0, 1] (paper: [-200, 300] for LiTS).
    _C.INPUT.CT.HU_WINDOW = (-200.0, 300.0)
    # Slice spacing in mm the volumes are resampled to along z; 0 keeps the native spacing (paper: 1.5 for LiTS).
    _C.INPUT.CT.SLICE_SPACING = 1.5
    # What the mapper returns for the target slice: any of "instances", "sem_seg".
    _C.INPUT.CT.TARGETS = ["instances"]
    # DeepLesion: interpolated slices each key slice's bag can read on each side, at SLICE_SPACING (a bag of N needs
    # 3*(N//2)+1; the source slices they need are stored once per series).
    _C.INPUT.CT.CONTEXT_SLICES = 7

    # ---------------------------------------------------------------- data loading
    # Train on the first K cases (in the split's order) of each dataset of DATASETS.TRAIN: learning curves on limited
    # 3D data. Evaluating a dataset of DATASETS.TRAIN (the collapse check) uses the same K cases. 0 = every case.
    _C.DATASETS.TRAIN_FIRST_CASES = 0
    # Target slices per group: G consecutive targets of one case, 3 slices apart, loaded with one shared augmentation so
    # that their overlapping bags share backbone passes; 1 = independent sampling; SOLVER.IMS_PER_BATCH must be
    # divisible by it.
    _C.DATALOADER.SHARED_BAG_TARGETS = 1
    # Share of sampled training targets (slice groups with SHARED_BAG_TARGETS) that hold a lesion, through
    # RepeatFactorTrainingSampler (nnU-Net oversamples foreground the same way); 0 = off, the natural share.
    _C.DATALOADER.LESION_SLICE_SHARE = 0.0

    # ---------------------------------------------------------------- evaluation
    _C.TEST.CT = CN()
    # Score threshold for turning detected instances into label masks (liver and lesion).
    _C.TEST.CT.SCORE_THRESH = 0.5
    # Keep only lesion voxels inside the predicted liver (the paper's logical AND of liver and lesion masks).
    _C.TEST.CT.LESION_IN_LIVER = True
    # Connectivity of 3D lesion components in the LiTS lesion metrics and predicted lesion lists: 26 (faces, edges,
    # corners) or 6 (faces).
    _C.TEST.CT.LESION_CONNECTIVITY = 26
    # Also run detectron2's COCOEvaluator (per-slice box/mask AP) beside the 3D metrics.
    _C.TEST.CT.SLICE_AP = False
    # DeepLesion FROC/AP50 rules: "official" (published DeepLesion code of 3DCE/MULAN: +1 px box sizes in IoU, ties
    # later-first) or "continuous" (detectron2 boxes, ties earlier-first).
    _C.TEST.CT.FROC_CONVENTION = "official"
    # A JSON file {key slice File_name: [[x0, y0, x1, y1], ...]} of structures that look like lesions but are not
    # (the synthetic DeepLesion's lookalikes.json: its vessel cross-sections); the FROC evaluator then reports the
    # share of its false positives that lie on one (lookalike_fp@0.5..4). "": none.
    _C.TEST.CT.LOOKALIKES = ""
    # Evaluate LiTS-style datasets case by case through the feature cache (about one backbone pass per slice); False:
    # detectron2's per-slice inference_on_dataset.
    _C.TEST.CT.CASE_LEVEL = True
    # Target slices per forward pass of case-level evaluation; the feature cache then holds at most N + this + 1 images
    # per FPN level.
    _C.TEST.CT.CASE_BATCH_SIZE = 1


# The slice similarities of MODEL.VA.SIMILARITY (modeling/slice_similarity.py).
SIMILARITY_MODES = ("dot", "scaled", "cosine")


def check_similarity_mode(mode: str) -> str:
    """``mode`` if it is a known ``MODEL.VA.SIMILARITY``, else a one-line ValueError listing the modes."""
    if mode not in SIMILARITY_MODES:
        raise ValueError(f"MODEL.VA.SIMILARITY must be one of {', '.join(map(repr, SIMILARITY_MODES))}; got {mode!r}")
    return mode


def bag_members_from_cfg(cfg) -> Tuple[int, int]:
    """(N, M): the members of a bag and the 2.5D images early-fused into each, ``MODEL.VA.BAG_SIZE`` and
    ``MODEL.VA.MEMBER_IMAGES`` with VA on, (1, 1) (the plain 2.5D baseline) with it off."""
    if not cfg.MODEL.VA.ENABLED:
        return 1, 1
    return int(cfg.MODEL.VA.BAG_SIZE), int(cfg.MODEL.VA.MEMBER_IMAGES)


def bag_size_from_cfg(cfg) -> int:
    """The number of 2.5D images per input (the mapper's bag): N + M - 1 of :func:`bag_members_from_cfg`, so
    ``MODEL.VA.BAG_SIZE`` with the paper's one image per member, and 1 with VA off."""
    n, m = bag_members_from_cfg(cfg)
    return n + m - 1


def expand_pixel_stats(cfg):
    """Tile a 3-value ``MODEL.PIXEL_MEAN``/``PIXEL_STD`` to the bag's 3·N input channels.

    The mapper packs N 2.5D images into channels, so GeneralizedRCNN normalises a (3N, H, W) image. Users keep
    writing three numbers (one per slice of a 2.5D image) and this function repeats them N times. Values that already
    have 3·N entries are left alone. ``cfg`` must not be frozen.
    """
    n = bag_size_from_cfg(cfg)
    for key in ("PIXEL_MEAN", "PIXEL_STD"):
        values = list(cfg.MODEL[key])
        if len(values) == 3 and n > 1:
            cfg.MODEL[key] = values * n
        elif len(values) != 3 * n:
            raise ValueError(f"MODEL.{key} has {len(values)} values; expected 3 or 3 x the bag's {n} 2.5D images = "
                             f"{3 * n}")
    return cfg


def get_va_cfg(config_file=None, opts=None, freeze=True):
    """Build a complete VA config: detectron2 defaults + ``add_va_config`` + file + overrides + pixel stats.

    This is the one way the project's entry points (``train_net.py``, ``VolumePredictor``, tools) build configs.
    """
    cfg = get_cfg()
    add_va_config(cfg)
    if config_file:
        cfg.merge_from_file(config_file)
    if opts:
        cfg.merge_from_list(list(opts))
    expand_pixel_stats(cfg)
    check_similarity_mode(cfg.MODEL.VA.SIMILARITY)
    if freeze:
        cfg.freeze()
    return cfg
