"""Label slices from Instances and sem_seg, and the lesion-in-liver AND."""
import numpy as np
import pytest
import torch

from volumetric_attention.inference.slice_labels import (
    instances_to_label_slice,
    output_to_label_slice,
    restrict_lesion_to_liver,
    sem_seg_to_label_slice,
)

from detectron2.structures import Boxes, Instances


def _instances(masks, classes, scores, size=(8, 10)):
    inst = Instances(size)
    inst.pred_masks = torch.as_tensor(np.stack(masks))
    inst.pred_classes = torch.tensor(classes)
    inst.scores = torch.tensor(scores, dtype=torch.float32)
    inst.pred_boxes = Boxes(torch.zeros(len(masks), 4))
    return inst


def _rect(y0, y1, x0, x1, size=(8, 10)):
    m = np.zeros(size, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_instances_paint_liver_then_lesion_and_drop_low_scores():
    liver = _rect(1, 7, 1, 7)
    lesion = _rect(2, 4, 2, 4)
    outside = _rect(5, 7, 8, 10)  # a lesion outside the liver
    low = _rect(0, 8, 0, 10)
    inst = _instances([liver, lesion, outside, low], [0, 1, 1, 1], [0.9, 0.8, 0.7, 0.4])
    labels = instances_to_label_slice(inst, 8, 10, score_thresh=0.5)
    expected = np.zeros((8, 10), np.uint8)
    expected[liver] = 1
    expected[lesion | outside] = 2
    assert labels.dtype == np.uint8 and np.array_equal(labels, expected)
    # the paper's AND: lesion kept only where the liver mask covers it
    labels = instances_to_label_slice(inst, 8, 10, score_thresh=0.5, lesion_in_liver=True)
    expected[outside] = 0
    assert np.array_equal(labels, expected)
    # a lesion straddling the liver border is cut at the border
    straddle = _rect(3, 5, 5, 9)
    inst = _instances([liver, straddle], [0, 1], [0.9, 0.9])
    labels = instances_to_label_slice(inst, 8, 10, lesion_in_liver=True)
    assert np.array_equal(labels == 2, straddle & liver)
    assert np.array_equal(labels == 1, liver & ~straddle)


def test_no_liver_removes_every_lesion_under_the_and():
    inst = _instances([_rect(2, 4, 2, 4)], [1], [0.9])
    assert not instances_to_label_slice(inst, 8, 10, lesion_in_liver=True).any()
    assert (instances_to_label_slice(inst, 8, 10, lesion_in_liver=False) == 2).sum() == 4


def test_restrict_lesion_to_liver_3d():
    liver = np.zeros((2, 3, 3), bool)
    liver[0] = True
    lesion = np.ones((2, 3, 3), bool)
    assert np.array_equal(restrict_lesion_to_liver(liver, lesion), liver)
    with pytest.raises(ValueError):
        restrict_lesion_to_liver(liver, lesion[0])


def test_sem_seg_argmax_and_dispatch():
    sem = torch.zeros(3, 4, 5)
    sem[1, :2] = 1.0
    sem[2, 0, 0] = 2.0
    labels = sem_seg_to_label_slice(sem)
    expected = np.zeros((4, 5), np.uint8)
    expected[:2] = 1
    expected[0, 0] = 2
    assert np.array_equal(labels, expected)
    assert np.array_equal(output_to_label_slice({"sem_seg": sem}), expected)
    inst = _instances([_rect(0, 2, 0, 2, (4, 5))], [0], [0.9], size=(4, 5))
    assert (output_to_label_slice({"instances": inst}) == 1).sum() == 4
    empty = Instances((4, 5))
    empty.pred_masks = torch.zeros(0, 4, 5, dtype=torch.bool)
    empty.pred_classes = torch.zeros(0, dtype=torch.int64)
    empty.scores = torch.zeros(0)
    assert output_to_label_slice({"instances": empty}).shape == (4, 5)
    with pytest.raises(ValueError):
        output_to_label_slice({"proposals": None})
    with pytest.raises(ValueError):
        sem_seg_to_label_slice(torch.zeros(2, 4, 5))
