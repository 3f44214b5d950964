"""The project's DefaultTrainer: VA data loading, evaluators chosen by dataset, atomic checkpoints, CPU DDP."""
import logging
import os
import weakref
from collections import OrderedDict

from detectron2.data import MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.data.build import get_detection_dataset_dicts
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase
from detectron2.evaluation import (
    COCOEvaluator,
    DatasetEvaluator,
    DatasetEvaluators,
    inference_on_dataset,
    print_csv_format,
)
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..utils.detectron2_private import set_training_loop
from .checkpoint import VACheckpointer
from .ddp import create_ddp_model
from .va_stats_hook import VAStatsHook

logger = logging.getLogger(__name__)


def _check_group_size(cfg, group_size: int):
    """One-line ValueErrors for a ``DATALOADER.SHARED_BAG_TARGETS`` the train loader cannot use."""
    if group_size < 1:
        raise ValueError(f"DATALOADER.SHARED_BAG_TARGETS must be >= 1, got {group_size}")
    if group_size == 1:
        return
    if cfg.SOLVER.IMS_PER_BATCH % group_size:
        raise ValueError(f"SOLVER.IMS_PER_BATCH ({cfg.SOLVER.IMS_PER_BATCH}) must be divisible by "
                         f"DATALOADER.SHARED_BAG_TARGETS ({group_size})")
    groups_per_batch, world = cfg.SOLVER.IMS_PER_BATCH // group_size, comm.get_world_size()
    if groups_per_batch % world:
        raise ValueError(f"SOLVER.IMS_PER_BATCH / DATALOADER.SHARED_BAG_TARGETS = {groups_per_batch} groups per "
                         f"batch must be divisible by the number of processes ({world})")
    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        raise ValueError(f"DATALOADER.SHARED_BAG_TARGETS > 1 samples groups with TrainingSampler; "
                         f"DATALOADER.SAMPLER_TRAIN {cfg.DATALOADER.SAMPLER_TRAIN!r} is not supported with it")


def _lesion_category(dataset_names) -> int:
    """The category id of "lesion" in the training datasets' ``thing_classes`` (one-line error when there is none)."""
    classes = MetadataCatalog.get(dataset_names[0]).get("thing_classes", [])
    if "lesion" not in classes:
        raise ValueError(f"DATALOADER.LESION_SLICE_SHARE needs a 'lesion' class; {dataset_names[0]} has {classes}")
    return classes.index("lesion")


def build_training_sampler(cfg, items):
    """The sampler of the training items (dicts or slice groups), which :meth:`VATrainer.resume_or_load` moves on.

    ``DATALOADER.LESION_SLICE_SHARE`` > 0 samples items that hold a lesion (a group: any of its members) as that
    share of all, through detectron2's ``RepeatFactorTrainingSampler`` (:func:`lesion_share_repeat_factors`);
    otherwise detectron2's ``TrainingSampler``. Both continue where an interrupted run stopped. Returns None for
    another ``DATALOADER.SAMPLER_TRAIN``, which detectron2 builds (and restarts on resume).
    """
    from ..data.samplers import ResumableRepeatFactorTrainingSampler, ResumableTrainingSampler
    from ..data.sampling import has_category, lesion_share_repeat_factors

    share = float(cfg.DATALOADER.LESION_SLICE_SHARE)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"DATALOADER.LESION_SLICE_SHARE must be in [0, 1], got {share}")
    seed = cfg.SEED if cfg.SEED >= 0 else None
    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        if share > 0:
            raise ValueError(f"DATALOADER.LESION_SLICE_SHARE > 0 is a sampler of its own; DATALOADER.SAMPLER_TRAIN "
                             f"{cfg.DATALOADER.SAMPLER_TRAIN!r} is not supported with it")
        return None
    if share <= 0:
        return ResumableTrainingSampler(len(items), seed=seed)
    lesion = _lesion_category(cfg.DATASETS.TRAIN)
    members = [item if isinstance(item, list) else [item] for item in items]
    holds_lesion = [any(has_category(d, lesion) for d in group) for group in members]
    return ResumableRepeatFactorTrainingSampler(lesion_share_repeat_factors(holds_lesion, share), seed=seed)


def run_dataset_dicts(cfg, dataset_name):
    """The dicts of ``dataset_name`` this run trains or evaluates on: all of them, or for a dataset of
    ``DATASETS.TRAIN`` with ``DATASETS.TRAIN_FIRST_CASES`` K > 0 those of its first K cases (logged)."""
    from ..data import first_cases

    dicts = get_detection_dataset_dicts([dataset_name], filter_empty=False)
    k = cfg.DATASETS.TRAIN_FIRST_CASES
    if k == 0 or dataset_name not in cfg.DATASETS.TRAIN:
        return dicts
    kept = first_cases(dicts, k, dataset_name)
    cases = list(dict.fromkeys(str(d["case_id"]) for d in kept))
    logger.info(f"DATASETS.TRAIN_FIRST_CASES {k}: {dataset_name} limited to {len(kept)} of {len(dicts)} slices, "
                f"cases {', '.join(cases)}")
    return kept


def case_level_applies(cfg, dataset_name) -> bool:
    """Whether :meth:`VATrainer.test` evaluates ``dataset_name`` case by case: ``TEST.CT.CASE_LEVEL`` and a
    LiTS-style dataset (metadata ``evaluator_type`` "lits", whose dicts cover every slice of a case)."""
    return bool(cfg.TEST.CT.CASE_LEVEL) and MetadataCatalog.get(dataset_name).get("evaluator_type") == "lits"


class VATrainer(DefaultTrainer):
    """detectron2's ``DefaultTrainer`` with the project's mapper, evaluators and checkpointer.

    Everything else (hooks, EvalHook at ``TEST.EVAL_PERIOD``, LR schedule, EventStorage, TensorBoard) is
    detectron2's own.
    """

    checkpointer_class = VACheckpointer

    def __init__(self, cfg):
        """What ``DefaultTrainer.__init__`` does, in its order, with the two pieces it hard-codes replaced: the DDP
        wrapper is the CPU-aware :func:`create_ddp_model` (detectron2's hands ``device_ids`` to DDP even for CPU
        processes, which DDP rejects), and the checkpointer is a ``checkpointer_class``, which detectron2's
        PeriodicCheckpointer hook (:meth:`build_hooks`) then saves with.

        ``DefaultTrainer.__init__`` has no parameter or hook for either, and calling it fails with more than one CPU
        process before anything could be replaced, so it is overridden, as ``DefaultTrainer``'s docstring advises
        where its assumptions do not hold. The one private name this needs (where ``DefaultTrainer`` keeps its loop)
        is set through :func:`set_training_loop`; ``tests/utils/test_detectron2_private.py`` checks that this builds
        every attribute that detectron2's builds.
        """
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):  # setup_logger is not called for d2
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        # detectron2 builds these in this order
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False)
        loop = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(model, data_loader, optimizer)
        set_training_loop(self, loop)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = self.checkpointer_class(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        """detectron2's hooks, and :class:`VAStatsHook` (``MODEL.VA.STATS_PERIOD``) before the metric writers."""
        hooks = super().build_hooks()
        if self.cfg.MODEL.VA.STATS_PERIOD > 0:
            writers = [i for i, h in enumerate(hooks) if type(h).__name__ == "PeriodicWriter"]
            hooks.insert(writers[0] if writers else len(hooks), VAStatsHook(self.cfg.MODEL.VA.STATS_PERIOD))
        return hooks

    @classmethod
    def build_train_loader(cls, cfg):
        """detectron2's train loader over the project's dataset dicts and mapper.

        With ``DATALOADER.SHARED_BAG_TARGETS`` = G > 1 the sampled items are groups of G targets of one case, 3
        slices apart (:func:`make_slice_groups`), each loaded with one augmentation; a batch is
        ``SOLVER.IMS_PER_BATCH / G`` groups flattened into one list of up to ``IMS_PER_BATCH`` dicts (fewer when a
        case is too short for a full group). With the 2.5D baseline (bag of 1) the groups share no image.
        The loader's ``items_per_batch`` is the number of sampled items (dicts or groups) per iteration, over all
        processes, and ``resumable_sampler`` the sampler that :meth:`resume_or_load` moves forward.
        """
        from ..data import SliceGroupMapper, VolumetricDatasetMapper, flatten_groups, make_slice_groups

        group_size = int(cfg.DATALOADER.SHARED_BAG_TARGETS)
        _check_group_size(cfg, group_size)
        dicts = [d for name in cfg.DATASETS.TRAIN for d in run_dataset_dicts(cfg, name)]
        extra = {}
        if group_size == 1:
            dataset, mapper = dicts, VolumetricDatasetMapper(cfg, is_train=True)
        else:
            dataset, mapper = make_slice_groups(dicts, dicts, group_size), SliceGroupMapper(cfg, is_train=True)
            extra = {"aspect_ratio_grouping": False, "collate_fn": flatten_groups}
        sampler = build_training_sampler(cfg, dataset)
        items_per_batch = cfg.SOLVER.IMS_PER_BATCH // group_size
        loader = build_detection_train_loader(
            cfg, dataset=dataset, mapper=mapper, sampler=sampler, total_batch_size=items_per_batch, **extra
        )
        loader.items_per_batch = items_per_batch
        loader.resumable_sampler = sampler
        return loader

    def resume_or_load(self, resume=True):
        """detectron2's, and the training sampler moves past the batches the interrupted run already trained on."""
        super().resume_or_load(resume=resume)
        sampler = getattr(self.data_loader, "resumable_sampler", None)
        if sampler is not None:
            items = getattr(self.data_loader, "items_per_batch", self.cfg.SOLVER.IMS_PER_BATCH)
            sampler.skip = self.start_iter * items

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """detectron2's test loader over :func:`run_dataset_dicts` (a dataset's first K cases where the run limits it)
        with the project's mapper."""
        from ..data import VolumetricDatasetMapper

        return build_detection_test_loader(dataset=run_dataset_dicts(cfg, dataset_name),
                                           mapper=VolumetricDatasetMapper(cfg, is_train=False),
                                           num_workers=cfg.DATALOADER.NUM_WORKERS)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """detectron2's ``DefaultTrainer.test`` (``--eval-only`` and the EvalHook at ``TEST.EVAL_PERIOD``), except that
        with ``TEST.CT.CASE_LEVEL`` LiTS-style datasets run whole cases through the feature cache
        (:func:`~volumetric_attention.evaluation.inference_on_cases`) into the same evaluators.

        Other datasets, DeepLesion included (its key slices share no 2.5D image: see
        :mod:`volumetric_attention.evaluation.case_inference`), and every dataset with ``TEST.CT.CASE_LEVEL False``
        go through detectron2's per-slice ``inference_on_dataset``.
        """
        from ..data import VolumetricDatasetMapper
        from ..evaluation import inference_on_cases

        if isinstance(evaluators, DatasetEvaluator):
            evaluators = [evaluators]
        if evaluators is not None and len(evaluators) != len(cfg.DATASETS.TEST):
            raise ValueError(f"{len(evaluators)} evaluators for {len(cfg.DATASETS.TEST)} DATASETS.TEST")
        results = OrderedDict()
        for idx, name in enumerate(cfg.DATASETS.TEST):
            evaluator = evaluators[idx] if evaluators is not None else cls.build_evaluator(cfg, name)
            if case_level_applies(cfg, name):
                dicts = run_dataset_dicts(cfg, name)
                mapper = VolumetricDatasetMapper(cfg, is_train=False)
                results[name] = inference_on_cases(model, dicts, evaluator, mapper, cfg.TEST.CT.CASE_BATCH_SIZE)
            else:
                results[name] = inference_on_dataset(model, cls.build_test_loader(cfg, name), evaluator)
            if comm.is_main_process():
                logger.info(f"Evaluation results for {name} in csv format:")
                print_csv_format(results[name])
        return list(results.values())[0] if len(results) == 1 else results

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """LiTS-style datasets get the 3D Dice evaluator, DeepLesion the FROC evaluator, anything else COCO.

        ``TEST.CT.SLICE_AP`` adds detectron2's COCOEvaluator (per-slice AP) beside the 3D metrics.
        """
        from ..evaluation import DeepLesionFROCEvaluator, LiTSEvaluator

        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", "coco")
        evaluators = []
        if evaluator_type == "lits":
            evaluators.append(LiTSEvaluator(cfg, dataset_name, output_folder))
        elif evaluator_type == "deeplesion":
            evaluators.append(DeepLesionFROCEvaluator(cfg, dataset_name, output_folder))
        is_detector = cfg.MODEL.META_ARCHITECTURE != "SemanticSegmentor"
        if is_detector and (evaluator_type == "coco" or cfg.TEST.CT.SLICE_AP):
            evaluators.append(COCOEvaluator(dataset_name, output_dir=output_folder, use_fast_impl=False))
        return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)
