"""Case-level evaluation (whole cases through the feature cache) against detectron2's per-slice path: features, scores
or logits, and metrics, with a shifted bag as the negative control."""
import csv
import json
import logging
from unittest import mock

import _case_level_worker as w
import pytest
import torch
from _bag_checks import (
    ShiftedContextLoop,
    assert_all_features_differ,
    assert_outputs_differ,
    assert_same_features,
    assert_same_outputs,
    recorded_backbone_outputs,
    run_case,
)

from volumetric_attention.data.cache import load_case
from volumetric_attention.engine import VACheckpointer, VATrainer, launch
from volumetric_attention.engine import trainer as trainer_module
from volumetric_attention.evaluation import LiTSEvaluator, split_cases

from detectron2.data import transforms as T
from detectron2.evaluation import inference_context


@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory, load_tool):
    """$VA_DATASETS with 4 prepared phantoms of 12 x 48 x 48 (3 in phantom_train)."""
    root = tmp_path_factory.mktemp("case level")
    assert load_tool("make_phantoms").main(["--out", str(root / "phantom"), "--cache", str(root / "cache" / "phantom"),
                               "--num-cases", "4", "--slices", "12", "--size", "48", "--slice-thickness", "2.0",
                               "--slice-spacing", "2.0"]) == 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VA_DATASETS", str(root))
        yield root


def _random_model(config, folder):
    """(cfg, model, weights path) of a randomly initialised tiny model, saved so other processes load the same."""
    torch.manual_seed(0)
    cfg = w.tiny_cfg(config)
    model = VATrainer.build_model(cfg)
    VACheckpointer(model, str(folder)).save("random")
    return cfg, model, str(folder / "random.pth")


def _test(cfg, model, case_level, output_dir):
    """``VATrainer.test`` on one path. Returns the results, the per-case CSV rows and, per ``(case_id, slice_index)``,
    the backbone's output and the model's output that the LiTS evaluator was handed."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.TEST.CT.CASE_LEVEL = case_level
    cfg.OUTPUT_DIR = str(output_dir)
    calls = []
    per_slice = trainer_module.inference_on_dataset

    def spy(*args, **kwargs):
        calls.append(1)
        return per_slice(*args, **kwargs)

    seen = {}
    process = LiTSEvaluator.process

    def recording_process(self, inputs, outputs):
        # both paths hand the evaluator each batch right after the model ran on it
        for inp, features, out in zip(inputs, features_of_calls[-len(inputs):], outputs):
            seen[(str(inp["case_id"]), int(inp["slice_index"]))] = (features, out)
        return process(self, inputs, outputs)

    with mock.patch.object(trainer_module, "inference_on_dataset", spy), \
            mock.patch.object(LiTSEvaluator, "process", recording_process), \
            recorded_backbone_outputs(model) as features_of_calls:
        results = VATrainer.test(cfg, model)
    assert bool(calls) != case_level, "the configured path was not the one taken"
    with open(output_dir / "inference" / w.DATASET / "lits_per_case.csv") as f:
        rows = list(csv.DictReader(f))
    return results, rows, seen


@pytest.mark.slow
@pytest.mark.parametrize("config", [w.MASK_RCNN_VA, w.SEMANTIC_VA], ids=["mask_rcnn_va", "semantic_va"])
def test_case_level_equals_per_slice(phantom_root, tmp_path, caplog, config):
    cfg, model, _ = _random_model(config, tmp_path)
    # oneDNN's convolutions round an image's features differently depending on the other images in its batch (per
    # slice: the N images of one bag; case-level: the images new to the cache), by ~1e-5 here; a random model's
    # mask probabilities all sit near 0.5, where that flips pixels. PyTorch's own kernels compute each image alone,
    # so with them both paths must agree exactly.
    with torch.backends.mkldnn.flags(enabled=False):
        with caplog.at_level(logging.INFO, logger="volumetric_attention.evaluation.case_inference"):
            case_results, case_rows, case_seen = _test(cfg, model, True, tmp_path / "case")
        slice_results, slice_rows, slice_seen = _test(cfg, model, False, tmp_path / "slice")
    # what the heads read and what they output, slice by slice (the gates vary with the bag: _tiny.VARYING_GATES)
    assert sorted(case_seen) == sorted(slice_seen)
    keys = sorted(slice_seen)
    assert_same_features([case_seen[k][0] for k in keys], [slice_seen[k][0] for k in keys])
    assert_same_outputs([case_seen[k][1] for k in keys], [slice_seen[k][1] for k in keys])
    assert len(case_rows) == 3
    assert case_rows == slice_rows  # every per-case metric, as written
    assert case_results == slice_results
    assert case_results["lits"]["liver_dice_per_case"] < 100.0, "a random model should not be perfect"
    # every slice predicted, those outside the liver's z range included
    assert all(row["missing_slices"] == "0" for row in case_rows)
    cache = phantom_root / "cache" / "phantom"
    no_liver = [z for row in case_rows for z, lab in enumerate(load_case(str(cache / row["case_id"])).label)
                if not lab.any()]
    assert no_liver, "the phantoms should have slices outside the liver"
    progress = [r.getMessage() for r in caplog.records if "Case-level inference:" in r.getMessage()]
    assert progress and "3/3 cases" in progress[-1] and "(100%)" in progress[-1] and "ETA=0:00:00" in progress[-1]
    # negative control: one case with context images one slice off differs from the per-slice path
    case_id = case_rows[0]["case_id"]
    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    loop = ShiftedContextLoop(model, cfg.MODEL.VA.BAG_SIZE, [resize], use_feature_cache=False)
    with torch.backends.mkldnn.flags(enabled=False), inference_context(model):
        shifted = run_case(loop, load_case(str(cache / case_id)).image)
    reference = [slice_seen[(case_id, z)] for z in sorted(shifted)]
    assert_all_features_differ([shifted[z][0] for z in sorted(shifted)], [f for f, _ in reference])
    assert_outputs_differ([shifted[z][1] for z in sorted(shifted)], [o for _, o in reference])


@pytest.mark.slow
def test_two_gloo_processes_equal_one(phantom_root, tmp_path):
    cfg, model, weights = _random_model(w.MASK_RCNN_VA, tmp_path)
    single_results, single_rows, _ = _test(cfg, model, True, tmp_path / "single")
    result_path = str(tmp_path / "dist.json")
    launch(w.run_case_level_test, 2, dist_url="auto",
           args=(w.MASK_RCNN_VA, weights, str(tmp_path / "dist"), result_path))
    with open(result_path) as f:
        dist = json.load(f)
    assert dist["world"] == 2
    assert dist["results"] == json.loads(json.dumps(single_results))
    with open(tmp_path / "dist" / "inference" / w.DATASET / "lits_per_case.csv") as f:
        assert list(csv.DictReader(f)) == single_rows


def test_split_cases_keeps_cases_whole_and_balances_slices():
    sizes = {"a": 5, "b": 9, "c": 4, "d": 4, "e": 1}
    dicts = [{"case_dir": c, "slice_index": z} for c, n in sizes.items() for z in range(n)]
    parts = split_cases(dicts, 2)
    assert [[case[0]["case_dir"] for case in part] for part in parts] == [["b", "d"], ["a", "c", "e"]]
    assert [sum(map(len, part)) for part in parts] == [13, 10]
    for part in parts:
        for case in part:
            assert case == [d for d in dicts if d["case_dir"] == case[0]["case_dir"]]
    assert split_cases(dicts, 8)[5:] == [[], [], []]


@pytest.mark.parametrize("dataset, case_level, expected", [
    ("phantom_val", True, True), ("lits_val", True, True), ("phantom_val", False, False),
    # DeepLesion's key slices share no 2.5D image: per-slice path
    ("deeplesion_val", True, False), ("coco_2017_val", True, False),
])
def test_which_datasets_are_evaluated_case_by_case(dataset, case_level, expected):
    cfg = w.tiny_cfg(w.MASK_RCNN_VA, extra=["TEST.CT.CASE_LEVEL", case_level])
    assert trainer_module.case_level_applies(cfg, dataset) is expected
