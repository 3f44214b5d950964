"""Fakes shared by the DeepLesion FROC evaluator tests: a registered dataset and predicted instances."""
import numpy as np
import torch

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances


def register(name, dicts):
    """Register ``dicts`` as a one-class DeepLesion-type dataset ``name`` (replacing an earlier registration)."""
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=["lesion"], evaluator_type="deeplesion")


def instances(boxes, scores):
    """Predicted lesion ``Instances`` on a 128 x 128 image: XYXY ``boxes`` and their ``scores``."""
    inst = Instances((128, 128))
    inst.pred_boxes = Boxes(torch.tensor(np.reshape(boxes, (-1, 4)), dtype=torch.float32))
    inst.scores = torch.tensor(scores, dtype=torch.float32)
    inst.pred_classes = torch.zeros(len(scores), dtype=torch.int64)
    return inst
