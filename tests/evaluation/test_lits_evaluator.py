"""The LiTS evaluator end to end (reset/process/evaluate) on a fake cache, and in 2 real gloo processes."""
import csv
import json
import logging
import os

import _lits_fakes as fakes
import numpy as np
import pytest

from volumetric_attention import add_va_config
from volumetric_attention.evaluation import LiTSEvaluator, load_results

from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator, DatasetEvaluators, print_csv_format
from detectron2.evaluation.testing import flatten_results_dict
from detectron2.utils.events import EventStorage

NAME = "lits_evaluator_test"


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("lits_cache")
    cases = fakes.make_fake_cache(root)
    if NAME not in DatasetCatalog.list():
        DatasetCatalog.register(NAME, lambda: [inp for inp, _ in fakes.inputs_outputs(cases, {
            c: lab for c, (_, lab, _) in cases.items()})])
        MetadataCatalog.get(NAME).set(thing_classes=["liver", "lesion"], evaluator_type="lits", ignore_label=255,
                                      stuff_classes=["background", "liver", "lesion"], cache_root=str(root))
    return cases


def _evaluate(pairs, output_dir=None, **kwargs):
    evaluator = LiTSEvaluator(NAME, output_dir=output_dir, distributed=False, **kwargs)
    evaluator.reset()
    for inp, out in pairs:
        evaluator.process([inp], [out])
    return evaluator.evaluate()


@pytest.mark.parametrize("kind", ["instances", "sem_seg"])
def test_perfect_prediction_scores_one(cases, kind, tmp_path):
    pairs = fakes.inputs_outputs(cases, fakes.predicted_labels(cases, "perfect"), kind)
    results = _evaluate(pairs, output_dir=str(tmp_path))
    # what EvalHook does with the results: flatten them and store each as a scalar for TensorBoard
    with EventStorage() as storage:
        storage.put_scalars(**{k: float(v) for k, v in flatten_results_dict(results).items()}, smoothing_hint=False)
    assert storage.latest()["lits/tumour_dice_per_case"][0] == pytest.approx(100.0)
    res = results["lits"]
    for key in ("tumour_dice_per_case", "tumour_dice_global", "liver_dice_per_case", "liver_dice_global",
                "lesion_dice_all", "lesion_recall"):
        assert res[key] == pytest.approx(100.0), key
    assert res["fp_lesions_per_case"] == 0 and res["n_cases"] == 3 and res["n_gt_lesions"] == 2
    with open(tmp_path / "lits_per_case.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["case_id"] for r in rows] == ["c1", "c2", "c3"]
    assert all(float(r["tumour_dice"]) == 100.0 for r in rows)  # percent, as the metrics
    summary = load_results(str(tmp_path / "lits_summary.json"))
    assert summary["metrics"]["tumour_dice_per_case"] == pytest.approx(100.0)
    assert os.path.getsize(tmp_path / "lits_dice_per_case.png") > 1000
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_imperfect_prediction_known_values(cases, tmp_path):
    # c1 perfect, c2's lesion missed (tumour Dice 0), c3 has no tumour and a predicted lesion outside the liver
    pairs = fakes.inputs_outputs(cases, fakes.predicted_labels(cases, "imperfect"))
    gt = {c: orig for c, (_, _, orig) in cases.items()}
    n1, n2 = int((gt["c1"] == 2).sum()), int((gt["c2"] == 2).sum())
    res = _evaluate(pairs, output_dir=str(tmp_path))["lits"]
    assert res["tumour_dice_per_case"] == pytest.approx(100 * (1 + 0 + 1) / 3)
    assert res["tumour_dice_global"] == pytest.approx(100 * 2 * n1 / (n1 + n1 + n2))
    assert res["liver_dice_per_case"] == pytest.approx(100.0)
    assert res["lesion_recall"] == pytest.approx(50.0) and res["fp_lesions_per_case"] == 0
    # without the lesion-in-liver AND the outside lesion survives: c3 scores 0 and has one FP lesion
    res = _evaluate(pairs, lesion_in_liver=False)["lits"]
    assert res["tumour_dice_per_case"] == pytest.approx(100 / 3)
    assert res["fp_lesions_per_case"] == pytest.approx(1 / 3)
    # sem_seg outputs are exclusive per pixel: the AND cannot remove the outside lesion
    pairs = fakes.inputs_outputs(cases, fakes.predicted_labels(cases, "imperfect"), "sem_seg")
    assert _evaluate(pairs)["lits"]["tumour_dice_per_case"] == pytest.approx(100 / 3)
    with open(tmp_path / "lits_lesions.csv") as f:
        lesions = list(csv.DictReader(f))
    assert [(r["case_id"], r["detected"]) for r in lesions] == [("c1", "True"), ("c2", "False")]


def test_files_and_log_use_percent_like_the_metrics(cases, tmp_path, caplog):
    """One unit everywhere: the per-case and per-lesion CSV, the JSON and the log give Dice and recall in percent."""
    pairs = fakes.inputs_outputs(cases, fakes.predicted_labels(cases, "imperfect"))
    with caplog.at_level(logging.INFO, logger="volumetric_attention.evaluation.lits_evaluator"):
        res = _evaluate(pairs, output_dir=str(tmp_path))["lits"]
    with open(tmp_path / "lits_per_case.csv") as f:
        rows = {r["case_id"]: r for r in csv.DictReader(f)}
    assert {c: float(r["tumour_dice"]) for c, r in rows.items()} == {"c1": 100.0, "c2": 0.0, "c3": 100.0}
    assert np.mean([float(r["tumour_dice"]) for r in rows.values()]) == pytest.approx(res["tumour_dice_per_case"])
    assert np.mean([float(r["liver_dice"]) for r in rows.values()]) == pytest.approx(res["liver_dice_per_case"])
    with open(tmp_path / "lits_lesions.csv") as f:
        lesion_dice = [float(r["dice"]) for r in csv.DictReader(f)]
    assert np.mean(lesion_dice) == pytest.approx(res["lesion_dice_all"]) and max(lesion_dice) > 1.0
    summary = load_results(str(tmp_path / "lits_summary.json"))
    assert summary["unit"] == "percent"
    assert [c["tumour_dice"] for c in summary["per_case"]] == [100.0, 0.0, 100.0]
    assert [lesion["dice"] for lesion in summary["lesions"]] == pytest.approx(lesion_dice)
    logged = [r.getMessage() for r in caplog.records if "LiTS 3D metrics" in r.getMessage()]
    assert f"tumour_dice_per_case={res['tumour_dice_per_case']:.2f}" in logged[0]


def test_missing_slices_count_as_background_with_one_warning(cases, caplog):
    pairs = fakes.inputs_outputs(cases, fakes.predicted_labels(cases, "perfect"))
    # drop cache slice 2 of c1, which holds half of its lesion
    pairs = [(i, o) for i, o in pairs if not (i["case_id"] == "c1" and i["slice_index"] == 2)]
    with caplog.at_level(logging.WARNING, logger="volumetric_attention.evaluation.lits_evaluator"):
        res = _evaluate(pairs)["lits"]
    warnings = [r for r in caplog.records if "never predicted" in r.getMessage()]
    assert len(warnings) == 1 and "c1 (1/5)" in warnings[0].getMessage()
    gt = cases["c1"][2]
    pred = gt.copy()
    pred[fakes.SliceResampler(fakes.Z0, fakes.SPACING_Z0, fakes.SPACING_ZC).original_to_cache_index(
        np.arange(fakes.Z0)) == 2] = 0
    inter = ((pred == 2) & (gt == 2)).sum()
    expected_c1 = 2 * inter / ((pred == 2).sum() + (gt == 2).sum())
    assert 0 < expected_c1 < 1
    assert res["tumour_dice_per_case"] == pytest.approx(100 * (expected_c1 + 1 + 1) / 3)


@pytest.mark.parametrize("kind", ["instances", "sem_seg"])
def test_a_class_never_predicted_gives_one_warning_line(cases, caplog, kind):
    """A model that collapsed to "no lesion" shows in the log without anyone reading losses."""
    collapsed = fakes.predicted_labels(cases, "perfect")
    for labels in collapsed.values():
        labels[labels == 2] = 1
    for prediction, expected in ((collapsed, 1), (fakes.predicted_labels(cases, "imperfect"), 0)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="volumetric_attention.evaluation.lits_evaluator"):
            res = _evaluate(fakes.inputs_outputs(cases, prediction, kind))["lits"]
        warnings = [r.getMessage() for r in caplog.records if "no voxel of it is predicted" in r.getMessage()]
        assert len(warnings) == expected, warnings
        if expected:
            assert "class 'lesion'" in warnings[0] and "3 cases" in warnings[0]
            assert res["lesion_recall"] == 0.0


def test_from_config_and_combination_with_other_evaluators(cases):
    cfg = get_cfg()
    add_va_config(cfg)
    cfg.TEST.CT.LESION_IN_LIVER = False
    cfg.TEST.CT.LESION_CONNECTIVITY = 6
    # detectron2's contract: from_config gives keyword arguments, the @configurable constructor takes the config
    assert LiTSEvaluator.from_config(cfg, NAME, "out") == {
        "dataset_name": NAME, "output_dir": "out", "score_thresh": cfg.TEST.CT.SCORE_THRESH, "lesion_in_liver": False,
        "connectivity": 6}
    evaluator = LiTSEvaluator(cfg, NAME, distributed=False)
    assert evaluator._lesion_in_liver is False and evaluator._score_thresh == cfg.TEST.CT.SCORE_THRESH
    assert evaluator._connectivity == 6 and evaluator._distributed is False and evaluator._output_dir is None
    # beside another evaluator (as with COCOEvaluator for per-slice AP) the results are merged under their own keys
    both = DatasetEvaluators([LiTSEvaluator(NAME, distributed=False), _CountingEvaluator()])
    both.reset()
    for inp, out in fakes.inputs_outputs(cases, fakes.predicted_labels(cases, "perfect")):
        both.process([inp], [out])
    res = both.evaluate()
    assert set(res) == {"lits", "bbox"} and res["bbox"]["n"] == 15
    assert res["lits"]["tumour_dice_per_case"] == pytest.approx(100.0)
    print_csv_format(res)  # the log format detectron2 uses after inference


class _CountingEvaluator(DatasetEvaluator):
    def reset(self):
        self.n = 0

    def process(self, inputs, outputs):
        self.n += len(inputs)

    def evaluate(self):
        return {"bbox": {"n": self.n}}


@pytest.mark.slow
def test_two_gloo_processes_give_the_single_process_metrics(cases, tmp_path):
    from volumetric_attention.engine import launch

    cache_root = os.path.dirname(cases["c1"][0])
    result_path = str(tmp_path / "dist.json")
    launch(fakes.run_split_evaluation, 2, dist_url="auto", args=(cache_root, str(tmp_path / "dist"), result_path))
    with open(result_path) as f:
        dist = json.load(f)
    assert dist["world"] == 2
    single = _evaluate(fakes.inputs_outputs(cases, fakes.predicted_labels(cases, "imperfect")),
                       output_dir=str(tmp_path / "single"))
    assert dist["results"] == json.loads(json.dumps(single))
    with open(tmp_path / "dist" / "lits_per_case.csv") as a, open(tmp_path / "single" / "lits_per_case.csv") as b:
        assert a.read() == b.read()
