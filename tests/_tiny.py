"""The CPU-sized settings of every test that builds a model: one set of config overrides, in parts to combine.

Values are plain Python values: ``get_va_cfg(config, opts)`` takes them as they are, and a ``train_net.py``
command line takes their ``str()`` (``(64,)`` -> ``"(64,)"``), so the same list serves both.
"""

# ResNet-18 + GN from scratch (detectron2's from-scratch recipe, as the Phantom configs), for tests that start from
# detectron2's defaults instead of a project config (those default to a frozen, pretrained R-50).
FROM_SCRATCH_R18 = [
    "MODEL.DEVICE", "cpu",
    "MODEL.WEIGHTS", "",
    "MODEL.BACKBONE.FREEZE_AT", 0,
    "MODEL.RESNETS.DEPTH", 18,
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
    "MODEL.RESNETS.STEM_OUT_CHANNELS", 64,
    "MODEL.RESNETS.NORM", "GN",
    "MODEL.FPN.NORM", "GN",
]
# Deformable convs need bottleneck blocks: a narrow R-50 instead of R-18 (after FROM_SCRATCH_R18).
FROM_SCRATCH_DEFORM_R50 = FROM_SCRATCH_R18 + [
    "MODEL.RESNETS.DEPTH", 50,
    "MODEL.RESNETS.STEM_OUT_CHANNELS", 32,
    "MODEL.RESNETS.WIDTH_PER_GROUP", 32,
]
# Narrow FPN, heads and VA, few anchors sampled and few proposals kept: a model runs a 64 px slice in well under a
# second on one core.
MODEL = [
    "MODEL.FPN.OUT_CHANNELS", 32,
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", 32,
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", 100,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", 50,
    "MODEL.RPN.PRE_NMS_TOPK_TEST", 100,
    "MODEL.RPN.POST_NMS_TOPK_TEST", 50,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32,
    "MODEL.ROI_BOX_HEAD.CONV_DIM", 32,
    "MODEL.ROI_BOX_HEAD.FC_DIM", 64,
    "MODEL.ROI_MASK_HEAD.CONV_DIM", 32,
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", 32,
    "MODEL.VA.REDUCTION", 4,
    "MODEL.VA.SPATIAL_KERNEL", 3,
    "TEST.DETECTIONS_PER_IMAGE", 10,
]
# 64 px slices in training and at test time.
INPUT = [
    "INPUT.MIN_SIZE_TRAIN", (64,), "INPUT.MAX_SIZE_TRAIN", 64,
    "INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 64,
]
# Score thresholds 0: a random model then paints liver and lesion everywhere (false positives included), so outputs
# that should agree have something to disagree about.
KEEP_EVERY_DETECTION = [
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,
    "TEST.CT.SCORE_THRESH", 0.0,
]
# Training in the test process: two images a step, no loader workers, no evaluation during training.
TRAIN = [
    "SOLVER.IMS_PER_BATCH", 2,
    "DATALOADER.NUM_WORKERS", 0,
    "TEST.EVAL_PERIOD", 0,
]
# Gates that vary with the bag: plain sigmoid gates (bias 0) with wide random weights, instead of the near-constant
# sigmoid(3) of a fresh model. A random model's features then depend on the context images, so a comparison of
# cached and naive inference sees a wrong neighbour (tests/_bag_checks.py).
VARYING_GATES = [
    "MODEL.VA.GATE_BIAS_INIT", 0.0,
    "MODEL.VA.GATE_WEIGHT_STD", 0.5,
]
