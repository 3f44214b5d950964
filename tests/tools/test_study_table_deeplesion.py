"""tools/study_table.py --kind deeplesion: the FROC columns, mean ± std over seeds, from summaries that the DeepLesion
evaluator itself writes into fake run folders."""
import json
import statistics

import pytest
import torch
from _study_scripts import finished_study_tables

from volumetric_attention.evaluation import DeepLesionFROCEvaluator

from detectron2.structures import Boxes, BoxMode, Instances

# one lesion per image, one of each size range and a second 10-30 mm one: (box, long diameter in mm)
LESIONS = [([10.0, 10.0, 20.0, 20.0], 6.0), ([30.0, 30.0, 50.0, 50.0], 20.0), ([5.0, 40.0, 60.0, 90.0], 45.0),
           ([60.0, 10.0, 80.0, 30.0], 15.0)]
FP_BOX = [100.0, 100.0, 110.0, 110.0]


def _evaluate(run_dir, dataset, found, times, lookalikes=None):
    """Score 4 images with the evaluator into ``run_dir/inference/<dataset>``: the lesions of ``found`` (indices) are
    detected at score 0.9, every image gets a false positive at 0.5; ``times``: metrics.json's iteration times.
    The evaluator's dataset is not registered, so that it takes the ground truth from the inputs."""
    evaluator = DeepLesionFROCEvaluator(f"fake_{dataset}", output_dir=str(run_dir / "inference" / dataset),
                                        distributed=False, lookalikes=lookalikes)
    evaluator.reset()
    for k, (box, diameter) in enumerate(LESIONS):
        boxes, scores = [FP_BOX], [0.5]
        if k in found:
            boxes, scores = [box] + boxes, [0.9] + scores
        out = Instances((128, 128), pred_boxes=Boxes(torch.tensor(boxes)), scores=torch.tensor(scores),
                        pred_classes=torch.zeros(len(boxes), dtype=torch.int64))
        inp = {"image_id": f"{dataset}_{k}", "case_id": f"case{k}", "annotations": [
            {"bbox": box, "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "lesion_type": -1, "diameter_mm": diameter}]}
        evaluator.process([inp], [{"instances": out}])
    metrics = evaluator.evaluate()["deeplesion"]
    (run_dir / "metrics.json").write_text("\n".join(json.dumps({"iteration": i, "time": t})
                                                    for i, t in enumerate(times)) + "\n")
    return metrics


def _cells(line):
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_deeplesion_rows_are_mean_and_std_of_the_evaluator_summaries(tmp_path, capsys, load_tool):
    runs = {"va_s0": ({0, 1, 2, 3}, [1.0, 1.2]), "va_s1": ({1, 2}, [1.4]), "base_s0": ({2}, [0.5])}
    # the baseline's run is scored with look-alikes: the FP of images 0 and 1 lies on one
    vessel = {"case0": [FP_BOX], "case1": [FP_BOX], "case2": [[0.0, 0.0, 1.0, 1.0]]}
    scored = {name: _evaluate(tmp_path / name, "deeplesion_test", found, times,
                              vessel if name == "base_s0" else None)
              for name, (found, times) in runs.items()}
    _evaluate(tmp_path / "va_s0", "deeplesion_train", {0, 1, 2, 3}, [1.0, 1.2])
    va, base = f"{tmp_path / 'va_s0'},{tmp_path / 'va_s1'}", str(tmp_path / "base_s0")
    out = tmp_path / "study.json"
    plot = tmp_path / "froc.png"
    assert load_tool("study_table").main([f"VA={va}", f"baseline={base}", "--kind", "deeplesion",
                                          "--json", str(out), "--froc-plot", str(plot)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert _cells(lines[0]) == ["model", "runs", "sens@0.5", "sens@1", "sens@2", "sens@4", "mean sens", "AP50",
                                "sens <10 mm", "sens 10-30 mm", "sens >30 mm", "FP on vessels @1",
                                "FP on vessels @4", "s / iteration"]
    assert lines[-1] == f"FROC curves: {plot}" and plot.stat().st_size > 1000
    row = dict(zip(_cells(lines[0]), _cells(lines[2])))
    assert row["model"] == "VA" and row["runs"] == "2"
    for title, key in [("sens@1", "sens@1"), ("mean sens", "sens_avg"), ("AP50", "AP50"),
                       ("sens <10 mm", "sens_avg/<10mm"), ("sens 10-30 mm", "sens_avg/10to30mm")]:
        values = [scored["va_s0"][key], scored["va_s1"][key]]
        assert row[title] == f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}", title
    # seed 1 missed the small lesion and found the large one, as seed 0: 50 ± 70.7 and 100 (no spread)
    assert row["sens <10 mm"] == f"50.0 ± {statistics.stdev([100.0, 0.0]):.1f}"
    assert row["sens >30 mm"] == "100.0 ± 0.0"
    assert row["s / iteration"] == f"1.25 ± {statistics.stdev([1.1, 1.4]):.2f}"  # medians 1.1 and 1.4
    baseline = dict(zip(_cells(lines[0]), _cells(lines[3])))
    assert baseline["runs"] == "1" and baseline["sens@4"] == f"{scored['base_s0']['sens@4']:.1f}"
    assert baseline["sens <10 mm"] == "0.0" and baseline["s / iteration"] == "0.50"
    # 4 FPs (one per image, all at 0.5, image 3's ranked first): 1 FP/image allows all 4, 2 of them on vessels
    assert baseline["FP on vessels @1"] == "50.0" and baseline["FP on vessels @4"] == "50.0"
    assert row["FP on vessels @1"] == "n/a"  # scored without look-alikes
    saved = json.loads(out.read_text())
    assert saved[str(tmp_path / "va_s1")]["sens_avg"] == pytest.approx(scored["va_s1"]["sens_avg"])

    # the collapse check reads the training set's evaluation; a run without one is skipped and named
    assert load_tool("study_table").main([f"VA={va}", "--kind", "deeplesion", "--dataset", "deeplesion_train"]) == 1
    captured = capsys.readouterr()
    assert _cells(captured.out.strip().splitlines()[2])[:3] == ["VA", "1", "100.0"]
    assert "va_s1" in captured.err and "deeplesion_train/deeplesion_summary.json" in captured.err


def test_mean_froc_reads_each_curve_at_its_last_step_below_the_rate(load_tool):
    a = {"curve": {"fp_per_image": [0.0, 0.25, 0.5], "sensitivity": [50.0, 75.0, 100.0]}}
    b = {"curve": {"fp_per_image": [1.0], "sensitivity": [100.0]}}  # its first step at 1 FP/image: 0 before
    mean = load_tool("study_table").mean_froc([a, b], [0.1, 0.25, 0.5, 1.0, 8.0])
    assert list(mean) == pytest.approx([25.0, 37.5, 50.0, 100.0, 100.0])


def test_lits_summaries_are_not_read_as_deeplesion(tmp_path, capsys, load_tool):
    folder = tmp_path / "run" / "inference" / "deeplesion_test"
    folder.mkdir(parents=True)
    (folder / "lits_summary.json").write_text(json.dumps({"type": "lits", "metrics": {}}))
    assert load_tool("study_table").main([f"x={tmp_path / 'run'}", "--kind", "deeplesion"]) == 1
    assert "no deeplesion evaluation" in capsys.readouterr().err


@pytest.mark.slow
def test_study_script_skips_finished_runs_and_prints_both_tables(tmp_path):
    """tools/deeplesion_study.sh over finished runs (checkpoint, test and training-set evaluations) trains nothing
    and prints the test table and the collapse check's."""
    datasets, out = tmp_path / "datasets", tmp_path / "out"
    (datasets / "cache" / "deeplesion").mkdir(parents=True)
    (datasets / "cache" / "deeplesion" / "index.json").write_text("{}")  # prepared: no generation
    for name, found in (("baseline_s0", {2}), ("va_context_features_s0", {1, 2, 3})):
        _evaluate(out / name, "deeplesion_test", found, [2.0])
        _evaluate(out / name, "deeplesion_train", {0, 1, 2, 3}, [2.0])
        (out / name / "model_final.pth").write_bytes(b"")
    tables = finished_study_tables("deeplesion_study.sh", datasets, out, "baseline va_context_features")
    assert [t[0] for t in tables] == ["model", "baseline (2.5D, 3 slices)", "VA, cosine + context features"] * 2
    test_va, train_va = tables[2], tables[5]
    assert test_va[2:4] == ["75.0", "75.0"] and train_va[2:4] == ["100.0", "100.0"]  # sens@0.5, sens@1
    assert (out / "study.json").is_file() and (out / "study_train.json").is_file()
    assert (out / "froc.png").stat().st_size > 1000
