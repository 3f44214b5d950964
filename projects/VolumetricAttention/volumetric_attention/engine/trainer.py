"""The project's DefaultTrainer: VA data loading, evaluators chosen by dataset, atomic checkpoints, CPU DDP."""
import os
import weakref
from unittest import mock

from detectron2.data import MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.data.build import get_detection_dataset_dicts
from detectron2.engine import DefaultTrainer, defaults
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators

from .checkpoint import VACheckpointer
from .ddp import create_ddp_model


class VATrainer(DefaultTrainer):
    """detectron2's ``DefaultTrainer`` with the project's mapper, evaluators and checkpointer.

    Everything else (hooks, EvalHook at ``TEST.EVAL_PERIOD``, LR schedule, EventStorage, TensorBoard) is
    detectron2's own.
    """

    checkpointer_class = VACheckpointer

    def __init__(self, cfg):
        # detectron2 hands device_ids to DDP even for CPU processes; use the CPU-aware version while it builds.
        with mock.patch.object(defaults, "create_ddp_model", create_ddp_model):
            super().__init__(cfg)
        self.checkpointer = self.checkpointer_class(self.model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        for hook in self._hooks:
            if hasattr(hook, "checkpointer"):
                hook.checkpointer = self.checkpointer

    @classmethod
    def build_train_loader(cls, cfg):
        from ..data import VolumetricDatasetMapper, filter_negative_slices

        dicts = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=False)
        dicts = filter_negative_slices(dicts, cfg.DATALOADER.NEGATIVE_SLICE_FRACTION)
        return build_detection_train_loader(
            cfg,
            dataset=dicts,
            mapper=VolumetricDatasetMapper(cfg, is_train=True),
        )

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        from ..data import VolumetricDatasetMapper

        return build_detection_test_loader(cfg, dataset_name, mapper=VolumetricDatasetMapper(cfg, is_train=False))

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
            evaluators.append(LiTSEvaluator.from_config(cfg, dataset_name, output_folder))
        elif evaluator_type == "deeplesion":
            evaluators.append(DeepLesionFROCEvaluator(dataset_name, output_dir=output_folder))
        is_detector = cfg.MODEL.META_ARCHITECTURE != "SemanticSegmentor"
        if is_detector and (evaluator_type == "coco" or cfg.TEST.CT.SLICE_AP):
            evaluators.append(COCOEvaluator(dataset_name, output_dir=output_folder, use_fast_impl=False))
        return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)
