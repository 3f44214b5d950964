"""FROC sensitivities, AP50 and the DeepLesion evaluator on a hand-made list of detections."""
import csv
import json
import logging
import os

import _froc_fakes as fakes
import numpy as np
import pytest

from volumetric_attention.config import get_va_cfg
from volumetric_attention.evaluation import DeepLesionFROCEvaluator, average_precision, froc, sensitivity_at
from volumetric_attention.evaluation.deeplesion_evaluator import load_lookalikes
from volumetric_attention.evaluation.froc import fp_share_in_regions

from detectron2.evaluation import print_csv_format
from detectron2.structures import BoxMode

# 4 images, 4 GT lesions (image 3 has none), 9 detections. Ranked by score, with what each one is (continuous
# convention; the official +1 px makes d7's IoU with g1 exactly 0.5, a hit):
#   d9 .95 img3 FP#1 | d1 .90 img0 TP g0 | d2 .85 img1 FP#2 | d3 .80 img0 hits found g0: neither |
#   d4 .70 img2 TP g3 (IoU 100/110) | d5 .60 img2 FP#3 | d6 .50 img1 TP g2 (IoU exactly 0.5) |
#   d7 .40 img0 FP#4 (IoU 100/210 with g1) | d8 .30 img0 TP g1
GTS = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float), np.array([[0, 0, 10, 10]], float),
       np.array([[50, 50, 60, 60]], float), np.zeros((0, 4))]
GT_TYPES = [[4, 5], [4], [1], []]
GT_DIAMETERS = [[8.0, 40.0], [12.0], [30.0], []]
DETS = [
    (np.array([[0, 0, 10, 10], [1, 0, 10, 10], [20, 20, 30, 41], [20, 20, 30, 30]], float), [0.9, 0.8, 0.4, 0.3]),
    (np.array([[100, 100, 110, 110], [0, 0, 10, 20]], float), [0.85, 0.5]),
    (np.array([[50, 50, 60, 61], [0, 0, 5, 5]], float), [0.7, 0.6]),
    (np.array([[70, 70, 80, 80]], float), [0.95]),
]


def _curve():
    return froc([d[0] for d in DETS], [np.array(d[1]) for d in DETS], GTS, convention="continuous")


def test_sensitivity_at_fps_by_hand():
    curve = _curve()
    # f FPs/image allows floor(4 f) FPs: take every detection above the next FP.
    # 0.2 -> 0 FPs: nothing above d9 -> 0; 0.25 -> 1: d1 -> 1/4; 0.5 -> 2: d1, d4 -> 2/4;
    # 0.75 -> 3: + d6 -> 3/4; 1 -> 4: all -> 4/4; 16: all.
    sens = sensitivity_at(curve, (0.2, 0.25, 0.5, 0.75, 1.0, 16.0))
    assert sens.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert curve["is_fp"].tolist() == [True, False, True, False, False, True, False, True, False]
    assert curve["fp_per_image"][-1] == 1.0 and curve["sensitivity"][-1] == 1.0
    # subsets at the same cut-offs: at 0.5 FPs/image g0 (liver) and g3 (bone) are found, g1 (lung) and g2 (liver) not
    types = np.array([4, 5, 4, 1])
    assert sensitivity_at(curve, (0.5,), gt_subset=types == 4).tolist() == [0.5]
    assert sensitivity_at(curve, (0.5,), gt_subset=types == 5).tolist() == [0.0]
    assert sensitivity_at(curve, (0.5,), gt_subset=types == 1).tolist() == [1.0]
    assert np.isnan(sensitivity_at(curve, (0.5,), gt_subset=types == 7)).all()


def test_ap50_by_hand():
    # AP ranking: duplicates are FPs. TP flags 0 1 0 0 1 0 1 0 1; precision at the 4 recall steps (.25 .5 .75 1):
    # 1/2, 2/5, 3/7, 4/9; envelope (max to the right) 1/2, 4/9, 4/9, 4/9. AP = 0.25 (1/2 + 3 * 4/9).
    ap, precision, recall = average_precision([d[0] for d in DETS], [np.array(d[1]) for d in DETS], GTS,
                                              convention="continuous")
    assert ap == pytest.approx(0.25 * (0.5 + 3 * 4 / 9))
    assert recall.tolist() == [0, 0.25, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0]
    assert precision[4] == pytest.approx(2 / 5)


# look-alike regions per image, against the FPs in rank order: d9 (img3, centre 75, 75) inside; d2 (img1, centre
# 105, 105) inside; d5 (img2, centre 2.5, 2.5) on the region's corner, inside; d7 (img0, centre 25, 30.5) just outside
REGIONS = [np.array([[24, 30, 26, 30.4]]), np.array([[100, 100, 110, 110]]), np.array([[0, 0, 2.5, 2.5]]),
           np.array([[70, 70, 80, 80], [0, 0, 1, 1]])]


def test_fp_share_in_regions_by_hand():
    curve = _curve()
    # 4 images: 0.5 FPs/image allows the first 2 FPs, 1 allows 4, 2 and 4 allow all 4
    shares = fp_share_in_regions(curve, [d[0] for d in DETS], REGIONS, (0.25, 0.5, 1.0, 2.0, 4.0))
    np.testing.assert_allclose(shares, [1.0, 1.0, 0.75, 0.75, 0.75])
    # no region anywhere: no FP is on one; an FP rate that allows none: undefined
    empty = [np.zeros((0, 4))] * 4
    np.testing.assert_allclose(fp_share_in_regions(curve, [d[0] for d in DETS], empty, (0.1, 1.0)), [np.nan, 0.0])


def test_load_lookalikes_keys_by_case_id_and_names_a_bad_file(tmp_path):
    good = tmp_path / "lookalikes.json"
    good.write_text(json.dumps({"000001_01_01_012.png": [[1, 2, 3, 4]], "000001_01_01_020.png": []}))
    loaded = load_lookalikes(good)
    assert sorted(loaded) == ["000001_01_01_012", "000001_01_01_020"]
    np.testing.assert_array_equal(loaded["000001_01_01_012"], [[1, 2, 3, 4]])
    assert loaded["000001_01_01_020"].shape == (0, 4)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"a.png": [[1, 2, 3]]}))
    with pytest.raises(ValueError, match=r"bad.json: a.png: expected a list of \[x0, y0, x1, y1\] boxes"):
        load_lookalikes(bad)
    cfg = get_va_cfg(opts=["TEST.CT.LOOKALIKES", str(tmp_path / "missing.json")])
    with pytest.raises(ValueError, match=r"^TEST.CT.LOOKALIKES: .*missing.json: cannot read the look-alikes file"):
        DeepLesionFROCEvaluator(cfg, "any")


def _dataset_dicts():
    dicts = []
    for i, (boxes, types, diams) in enumerate(zip(GTS, GT_TYPES, GT_DIAMETERS)):
        anns = [{"bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0,
                 "lesion_type": t, "diameter_mm": d} for b, t, d in zip(boxes, types, diams)]
        dicts.append({"image_id": f"img{i}", "case_id": f"case{i}", "height": 128, "width": 128, "annotations": anns})
    return dicts


def _logged(logger_name, fn):
    """Messages ``fn`` logs to ``logger_name`` (read at the logger: detectron2's loggers may not propagate)."""
    records = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    log = logging.getLogger(logger_name)
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        fn()
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    return [r.getMessage() for r in records]


def test_deeplesion_evaluator_end_to_end(tmp_path):
    name = "deeplesion_froc_evaluator_test"
    fakes.register(name, _dataset_dicts())
    lookalikes = {f"case{i}": r for i, r in enumerate(REGIONS)}
    evaluator = DeepLesionFROCEvaluator(name, output_dir=str(tmp_path), distributed=False, convention="continuous",
                                        lookalikes=lookalikes)
    evaluator.reset()
    # feed in a shuffled order; image 1's input lacks annotations and case_id (a test mapper drops them): looked up
    # by image_id
    for i in (2, 0, 3, 1):
        inp = dict(_dataset_dicts()[i])
        if i == 1:
            del inp["annotations"], inp["case_id"]
        evaluator.process([inp], [{"instances": fakes.instances(DETS[i][0], DETS[i][1])}])
    res = evaluator.evaluate()["deeplesion"]
    assert res["sens@0.5"] == pytest.approx(50.0) and res["sens@1"] == pytest.approx(100.0)
    assert res["sens@16"] == pytest.approx(100.0)
    assert res["sens_avg"] == pytest.approx(100 * (0.5 + 1 + 1 + 1) / 4)
    assert res["AP50"] == pytest.approx(100 * 0.25 * (0.5 + 3 * 4 / 9))
    assert res["num_gt"] == 4 and res["num_images"] == 4
    assert [res[f"lookalike_fp@{f}"] for f in ("0.5", "1", "2", "4")] == pytest.approx([100.0, 75.0, 75.0, 75.0])
    assert res["sens_avg/liver"] == pytest.approx(100 * (0.5 + 1 + 1 + 1) / 4)
    # sizes: g0 8 mm (<10), g2 12 mm and g3 30 mm (10-30), g1 40 mm (>30, found last)
    assert res["sens_avg/>30mm"] == pytest.approx(100 * (0 + 1 + 1 + 1) / 4)
    assert res["sens_avg/10to30mm"] == pytest.approx(100 * (0.5 + 1 + 1 + 1) / 4)
    # detectron2's copypaste line (what users paste into tables) drops keys with "-": there are none
    lines = _logged("detectron2.evaluation.testing", lambda: print_csv_format({"deeplesion": res}))
    assert lines[1] == "copypaste: " + ",".join(res)
    with open(tmp_path / "deeplesion_summary.json") as f:
        summary = json.load(f)
    assert summary["type"] == "deeplesion" and summary["breakdown"]["bone"]["num_gt"] == 1
    with open(tmp_path / "deeplesion_froc.csv") as f:
        curve = list(csv.DictReader(f))
    assert len(curve) == 9
    # each ranked detection with its image and box: the first is d9, image 3's only detection
    assert (curve[0]["image_id"], curve[0]["case_id"], curve[0]["is_fp"]) == ("img3", "case3", "1")
    assert [float(curve[0][k]) for k in ("score", "x0", "y0", "x1", "y1")] == pytest.approx([0.95, 70, 70, 80, 80])
    assert [r["case_id"] for r in curve] == ["case3", "case0", "case1", "case0", "case2", "case2", "case1", "case0",
                                             "case0"]
    assert float(curve[-1]["sensitivity"]) == pytest.approx(100.0)  # percent, as the metrics
    assert summary["unit"] == "percent" and max(summary["curve"]["sensitivity"]) == pytest.approx(100.0)
    assert os.path.getsize(tmp_path / "deeplesion_froc.png") > 1000


def _evaluate(tmp_path, name, dicts, detections):
    """Run the evaluator over ``dicts`` with ``detections[i] = (boxes [N, 4], scores [N])``."""
    fakes.register(name, dicts)
    evaluator = DeepLesionFROCEvaluator(name, output_dir=str(tmp_path), distributed=False)
    evaluator.reset()
    for d, (boxes, scores) in zip(dicts, detections):
        evaluator.process([d], [{"instances": fakes.instances(boxes, scores)}])
    return evaluator.evaluate()["deeplesion"]


def test_evaluator_without_detections_scores_zero(tmp_path):
    dicts = _dataset_dicts()
    res = _evaluate(tmp_path, "deeplesion_froc_no_detections", dicts, [(np.zeros((0, 4)), [])] * len(dicts))
    assert [res[f"sens@{f:g}"] for f in (0.5, 1, 2, 4, 8, 16)] == [0.0] * 6
    assert res["sens_avg"] == 0.0 and res["AP50"] == 0.0 and res["num_gt"] == 4
    assert res["sens_avg/liver"] == 0.0 and res["sens_avg/>30mm"] == 0.0
    summary = json.loads((tmp_path / "deeplesion_summary.json").read_text())
    assert summary["curve"] == {"fp_per_image": [], "sensitivity": []}
    assert summary["metrics"]["sens@0.5"] == 0.0
    with open(tmp_path / "deeplesion_froc.csv") as f:
        assert list(csv.DictReader(f)) == []
    assert os.path.getsize(tmp_path / "deeplesion_froc.png") > 1000


def test_evaluator_without_ground_truth(tmp_path):
    dicts = [{"image_id": f"empty{i}", "height": 128, "width": 128, "annotations": []} for i in range(3)]
    detections = [(np.array([[0, 0, 10, 10]], float), [0.9]), (np.zeros((0, 4)), []),
                  (np.array([[5, 5, 20, 20], [30, 30, 40, 40]], float), [0.8, 0.3])]
    res = _evaluate(tmp_path, "deeplesion_froc_no_gt", dicts, detections)
    # no lesion to find: sensitivity and AP are undefined, reported as NaN (null in the JSON), never a crash
    assert res["num_gt"] == 0 and res["num_images"] == 3
    assert np.isnan(res["sens@0.5"]) and np.isnan(res["sens_avg"]) and np.isnan(res["AP50"])
    summary = json.loads((tmp_path / "deeplesion_summary.json").read_text())
    assert summary["metrics"]["sens_avg"] is None
    # every detection is an FP: the curve still runs to 3 FPs over 3 images
    assert summary["curve"]["fp_per_image"] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert summary["curve"]["sensitivity"] == [None] * 3
    # and the same with no detections either
    res = _evaluate(tmp_path, "deeplesion_froc_no_gt", dicts, [(np.zeros((0, 4)), [])] * 3)
    assert res["num_gt"] == 0 and np.isnan(res["sens_avg"]) and np.isnan(res["AP50"])


def test_evaluator_with_detections_in_some_images_only(tmp_path):
    # 3 images with one lesion each; only image 1 has detections: an FP (.9) then a hit (.6)
    dicts = [{"image_id": f"some{i}", "height": 128, "width": 128,
              "annotations": [{"bbox": [10, 10, 30, 30], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0,
                               "lesion_type": 4, "diameter_mm": 20.0}]} for i in range(3)]
    detections = [(np.zeros((0, 4)), []), (np.array([[60, 60, 80, 80], [10, 10, 30, 30]], float), [0.9, 0.6]),
                  (np.zeros((0, 4)), [])]
    res = _evaluate(tmp_path, "deeplesion_froc_some_detections", dicts, detections)
    # 0.5 FPs/image over 3 images allows floor(1.5) = 1 FP: both detections are taken, 1 of 3 lesions found
    assert res["sens@0.5"] == pytest.approx(100 / 3) and res["sens@16"] == pytest.approx(100 / 3)
    # AP: precision 1/2 at recall 1/3
    assert res["AP50"] == pytest.approx(100 * (1 / 3) * (1 / 2))
    with open(tmp_path / "deeplesion_froc.csv") as f:
        assert [r["is_fp"] for r in csv.DictReader(f)] == ["1", "0"]
