"""The two FROC conventions: "official" (the published DeepLesion evaluation code of 3DCE/MULAN) and "continuous".

The official rule, as that code computes it: boxes are pooled over the images in order, ranked by a stable ascending
sort of the scores reversed (so among equal scores the later detection comes first), IoU with +1 px on widths and
heights, and the sensitivity at f FPs/image read off the per-detection curve by linear interpolation.
"""
import _froc_fakes as fakes
import numpy as np
import pytest
from scipy.interpolate import interp1d

from volumetric_attention import get_va_cfg
from volumetric_attention.engine import VATrainer
from volumetric_attention.evaluation import DeepLesionFROCEvaluator, average_precision, box_iou, froc, sensitivity_at
from volumetric_attention.evaluation.froc import rank_detections

from detectron2.structures import BoxMode


def test_official_iou_adds_one_pixel_to_widths_and_heights():
    # 10 x 10 px GT (pixels 0..9) against a 10 x 20 px box: official 100 / 200; continuous 9·9 / (9·19)
    assert box_iou([[0, 0, 9, 19]], [[0, 0, 9, 9]], pixel_inclusive=True)[0, 0] == pytest.approx(0.5)
    assert box_iou([[0, 0, 9, 19]], [[0, 0, 9, 9]])[0, 0] == pytest.approx(81 / 171)
    # [20,20,30,41] vs [20,20,30,30]: official 11·11 / (11·22) = 0.5 (a hit); continuous 100 / 210 (a miss)
    assert box_iou([[20, 20, 30, 41]], [[20, 20, 30, 30]], pixel_inclusive=True)[0, 0] == pytest.approx(0.5)
    assert box_iou([[20, 20, 30, 41]], [[20, 20, 30, 30]])[0, 0] == pytest.approx(100 / 210)
    # boxes one pixel apart touch in pixel terms only when they share a pixel column
    assert box_iou([[0, 0, 9, 9]], [[9, 0, 18, 9]], pixel_inclusive=True)[0, 0] == pytest.approx(10 / 190)
    assert box_iou([[0, 0, 9, 9]], [[9, 0, 18, 9]])[0, 0] == 0.0


def test_equal_scores_rank_the_later_detection_first_in_the_official_convention():
    scores = [np.array([0.5, 0.7]), np.array([0.7, 0.5, 0.7])]  # pooled: .5 .7 .7 .5 .7
    official, _, _ = rank_detections(scores, later_first=True)
    continuous, _, _ = rank_detections(scores, later_first=False)
    assert official.tolist() == [4, 2, 1, 3, 0]
    assert continuous.tolist() == [1, 2, 4, 0, 3]
    # the published expression, with the stable sort it needs to give one answer
    assert official.tolist() == np.argsort(np.concatenate(scores), kind="stable")[::-1].tolist()


# Worked by hand. Image 0: GT g0 [10,10,19,19]; d0 .9 on g0, d4 .5 far away.
# Image 1: GT g1 [0,0,9,9], g2 [30,30,40,40]; d1 .7 far away, d2 .7 on g1, d3 .6 [30,30,40,51] (IoU with g2:
# official 0.5, a hit; continuous 100/210, an FP). Pooled order d0 d4 | d1 d2 d3.
HAND_BOXES = [np.array([[10, 10, 19, 19], [60, 60, 69, 69]], float),
              np.array([[50, 50, 59, 59], [0, 0, 9, 9], [30, 30, 40, 51]], float)]
HAND_SCORES = [np.array([0.9, 0.5]), np.array([0.7, 0.7, 0.6])]
HAND_GTS = [np.array([[10, 10, 19, 19]], float), np.array([[0, 0, 9, 9], [30, 30, 40, 40]], float)]


def test_hand_worked_official():
    # ranking d0 d2 d1 d3 d4 (d2 before d1: the later of two equal scores): TP TP FP TP FP
    # per detection: sensitivity 1/3 2/3 2/3 1 1, FPs/image 0 0 .5 .5 1
    curve = froc(HAND_BOXES, HAND_SCORES, HAND_GTS, convention="official")
    assert curve["is_fp"].tolist() == [False, False, True, False, True]
    np.testing.assert_allclose(curve["sensitivity"], [1 / 3, 2 / 3, 2 / 3, 1, 1])
    np.testing.assert_allclose(curve["fp_per_image"], [0, 0, 0.5, 0.5, 1])
    # 0.25 (between the steps at 0 and 0.5): 2/3; 0.5 and 1: the top of the step, 1; 2: past the end, the last, 1
    np.testing.assert_allclose(sensitivity_at(curve, (0.25, 0.5, 1, 2)), [2 / 3, 1, 1, 1])
    # AP: TP TP FP TP FP -> precision 1, 1, 3/4 at recall 1/3, 2/3, 1
    ap, _, _ = average_precision(HAND_BOXES, HAND_SCORES, HAND_GTS, convention="official")
    assert ap == pytest.approx((1 + 1 + 0.75) / 3)


def test_hand_worked_continuous():
    # ranking d0 d1 d2 d3 d4: TP FP TP FP FP; sensitivity 1/3 1/3 2/3 2/3 2/3, FPs/image 0 .5 .5 1 1.5
    curve = froc(HAND_BOXES, HAND_SCORES, HAND_GTS, convention="continuous")
    assert curve["is_fp"].tolist() == [False, True, False, True, True]
    np.testing.assert_allclose(sensitivity_at(curve, (0.25, 0.5, 1, 2)), [1 / 3, 2 / 3, 2 / 3, 2 / 3])
    ap, _, _ = average_precision(HAND_BOXES, HAND_SCORES, HAND_GTS, convention="continuous")
    assert ap == pytest.approx((1 + 2 / 3) / 3)


def _iou_inclusive(box, gt):
    """IoU of two boxes given as first and last pixel, computed pixel-area-wise."""
    w = min(box[2], gt[2]) - max(box[0], gt[0]) + 1
    h = min(box[3], gt[3]) - max(box[1], gt[1]) + 1
    inter = max(w, 0) * max(h, 0)
    area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1) + (gt[2] - gt[0] + 1) * (gt[3] - gt[1] + 1)
    return inter / (area - inter)


def _published_rule(boxes, scores, gts, rates):
    """Sensitivities at ``rates`` FPs/image by the published rule, written out step by step."""
    pooled = [(image, box) for image in range(len(boxes)) for box in boxes[image]]
    ranked = np.argsort(np.concatenate(scores), kind="stable")[::-1]
    found = [set() for _ in gts]
    hits = misses = 0
    sens, fp_per_image = [], []
    num_gt = sum(len(g) for g in gts)
    for k in ranked:
        image, box = pooled[k]
        overlaps = [_iou_inclusive(box, g) for g in gts[image]]
        if not overlaps or max(overlaps) < 0.5:
            misses += 1
        for j, v in enumerate(overlaps):
            if v >= 0.5 and j not in found[image]:
                found[image].add(j)
                hits += 1
        sens.append(hits / num_gt)
        fp_per_image.append(misses / len(boxes))
    curve = interp1d(fp_per_image, sens)
    return np.array([float(curve(f)) if f <= fp_per_image[-1] else sens[-1] for f in rates])


def _random_set(rng):
    n_img = int(rng.integers(2, 7))
    boxes, scores, gts = [], [], []
    for _ in range(n_img):
        g = []
        for _ in range(int(rng.integers(0, 3))):
            x, y = rng.integers(0, 100, 2)
            w, h = rng.integers(4, 20, 2)
            g.append([x, y, x + w, y + h])
        b = []
        for _ in range(int(rng.integers(0, 5))):
            if g and rng.random() < 0.6:  # near a GT: a jittered copy, IoU around the 0.5 threshold
                b.append(np.array(g[int(rng.integers(len(g)))]) + rng.integers(-3, 4, 4))
            else:
                x, y = rng.integers(0, 100, 2)
                b.append([x, y, x + rng.integers(4, 20), y + rng.integers(4, 20)])
        boxes.append(np.array(b, float).reshape(-1, 4))
        scores.append(rng.integers(1, 5, len(b)) / 4.0)  # few distinct scores: many ties
        gts.append(np.array(g, float).reshape(-1, 4))
    return boxes, scores, gts


def test_official_convention_matches_the_published_rule_on_random_sets():
    rng = np.random.default_rng(0)
    rates = (0.5, 1.0, 2.0, 4.0)
    compared = differ = 0
    while compared < 60:
        boxes, scores, gts = _random_set(rng)
        if sum(len(g) for g in gts) == 0 or sum(len(s) for s in scores) < 2:
            continue  # the published code divides by the GT count and interpolates between two points at least
        expected = _published_rule(boxes, scores, gts, rates)
        official = sensitivity_at(froc(boxes, scores, gts, convention="official"), rates)
        np.testing.assert_allclose(official, expected, atol=1e-12)
        continuous = sensitivity_at(froc(boxes, scores, gts, convention="continuous"), rates)
        differ += not np.allclose(continuous, expected)
        compared += 1
    assert differ >= 5  # the sets exercise both differences; the check above is not vacuous


def test_evaluator_pools_images_in_dataset_order_for_the_official_ties(tmp_path):
    # The dataset lists "z_first" before "a_second" (not alphabetical). Both detections score 0.8: the FP in
    # z_first and the hit in a_second. Officially the later one (a_second's hit) ranks first, so at 0.25 FPs/image
    # (no FP allowed over 2 images) 1 of 2 lesions is found; alphabetical pooling would rank the FP first, 0 found.
    gt = [{"bbox": [0, 0, 9, 9], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0}]
    dicts = [{"image_id": "z_first", "height": 128, "width": 128, "annotations": gt},
             {"image_id": "a_second", "height": 128, "width": 128, "annotations": gt}]
    name = "deeplesion_froc_dataset_order"
    fakes.register(name, dicts)
    results = {}
    for convention in ("official", "continuous"):
        evaluator = DeepLesionFROCEvaluator(name, distributed=False, fps=(0.25,), convention=convention)
        evaluator.reset()
        evaluator.process([dicts[1]], [{"instances": fakes.instances([0, 0, 9, 9], [0.8])}])  # seen first
        evaluator.process([dicts[0]], [{"instances": fakes.instances([50, 50, 59, 59], [0.8])}])
        results[convention] = evaluator.evaluate()["deeplesion"]["sens@0.25"]
    assert results == {"official": 50.0, "continuous": 0.0}


def test_evaluator_default_is_official_and_config_chooses(tmp_path):
    assert DeepLesionFROCEvaluator("deeplesion_test", distributed=False).convention == "official"
    cfg = get_va_cfg(opts=["TEST.CT.FROC_CONVENTION", "continuous"])
    evaluator = VATrainer.build_evaluator(cfg, "deeplesion_test", output_folder=str(tmp_path))
    assert isinstance(evaluator, DeepLesionFROCEvaluator) and evaluator.convention == "continuous"
    # detectron2's contract: from_config gives keyword arguments; arguments beside the config override them
    assert DeepLesionFROCEvaluator.from_config(cfg, "deeplesion_test", "out") == {
        "dataset_name": "deeplesion_test", "output_dir": "out", "convention": "continuous", "lookalikes": None}
    evaluator = DeepLesionFROCEvaluator(cfg, "deeplesion_test", fps=(0.25,), convention="official")
    assert evaluator.convention == "official" and evaluator._fps == (0.25,)
    cfg = get_va_cfg(opts=["TEST.CT.FROC_CONVENTION", "offical"])
    with pytest.raises(ValueError, match=r"^TEST.CT.FROC_CONVENTION: unknown FROC convention 'offical'; "
                                         r"expected one of official, continuous$"):
        VATrainer.build_evaluator(cfg, "deeplesion_test", output_folder=str(tmp_path))


def test_deeplesion_configs_use_the_official_convention():
    import glob
    import os

    import volumetric_attention

    folder = os.path.join(os.path.dirname(volumetric_attention.__file__), "..", "configs", "DeepLesion")
    configs = glob.glob(os.path.join(folder, "*.yaml"))
    assert len(configs) >= 6
    for path in configs:
        assert get_va_cfg(path).TEST.CT.FROC_CONVENTION == "official", path
