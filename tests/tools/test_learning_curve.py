"""The pretrained study's record (tools/study_table.py --record) and its table, target and plot
(tools/learning_curve.py)."""
import json
import statistics

import pytest


def _run(root, column, name, dice, recall=80.0, dataset="phantom_val"):
    folder = root / column / name / "inference" / dataset
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {"tumour_dice_per_case": dice, "fp_lesions_per_case": dice / 100, "lesion_recall": recall}
    (folder / "lits_summary.json").write_text(json.dumps({"type": "lits", "metrics": metrics}))
    return str(root / column / name)


def _record(tmp_path, load_tool, cells):
    """cells: {(column, row): [dice per seed]}; each run recorded as the study script records it, every run finding
    90% of its training lesions."""
    study_table = load_tool("study_table")
    record = tmp_path / "runs.json"
    for (column, row), values in cells.items():
        for seed, dice in enumerate(values):
            run = _run(tmp_path / "out", column, f"{row}_s{seed}", dice)
            _run(tmp_path / "out", column, f"{row}_s{seed}", dice, recall=90.0, dataset="phantom_train")
            for dataset in ("phantom_val", "phantom_train"):
                assert study_table.main([f"{row}={run}", "--dataset", dataset, "--record", str(record)]) == 0
    return record


def test_record_merges_each_run_under_column_and_run_rounded(tmp_path, load_tool):
    record = _record(tmp_path, load_tool, {("pretrained_k3", "baseline"): [10.123456, 20.0]})
    saved = json.loads(record.read_text())
    assert set(saved) == {"phantom_val", "phantom_train"}
    assert set(saved["phantom_val"]) == {"pretrained_k3/baseline_s0", "pretrained_k3/baseline_s1"}
    run = saved["phantom_val"]["pretrained_k3/baseline_s0"]
    assert run["tumour_dice_per_case"] == 10.1235 and run["label"] == "baseline"
    # a run recorded again replaces its values, the others stay
    _run(tmp_path / "out", "pretrained_k3", "baseline_s0", 55.0)
    load_tool("study_table").main([f"baseline={tmp_path / 'out/pretrained_k3/baseline_s0'}", "--record", str(record)])
    saved = json.loads(record.read_text())
    assert saved["phantom_val"]["pretrained_k3/baseline_s0"]["tumour_dice_per_case"] == 55.0
    assert saved["phantom_val"]["pretrained_k3/baseline_s1"]["tumour_dice_per_case"] == 20.0


CELLS = {
    ("scratch_k3", "early_fusion"): [30.0, 34.0, 32.0],
    ("scratch_k3", "va_context_features"): [20.0, 22.0, 24.0],
    ("pretrained_k3", "early_fusion"): [40.0, 42.0, 44.0],
    ("pretrained_k3", "early_fusion_inflate"): [41.0, 41.0, 41.0],
    ("pretrained_k3", "threedce"): [43.0, 43.0, 43.0],
    ("pretrained_k3", "va_paper"): [45.0, 45.0, 45.0],
    ("pretrained_k3", "va_context_features"): [46.0, 47.0, 48.0],
    ("pretrained_k15", "baseline"): [60.0, 70.0],
}


def test_table_target_and_plot_from_the_record(tmp_path, capsys, load_tool):
    record = _record(tmp_path, load_tool, CELLS)
    saved = json.loads(record.read_text())
    saved["scratch_k15_reference"] = {"baseline": {"tumour_dice_per_case": {"mean": 32.1, "std": 3.2, "runs": 3},
                                                   "fp_lesions_per_case": {"mean": 9.4, "std": 1.59, "runs": 3}},
                                      "threedce": {"tumour_dice_per_case": {"mean": 43.3, "std": 1.3, "runs": 3}}}
    # one run that learnt no training lesion, one below its cell's others
    saved["phantom_train"]["pretrained_k3/va_paper_s1"]["lesion_recall"] = 0.0
    saved["phantom_train"]["pretrained_k3/early_fusion_s2"]["lesion_recall"] = 50.0
    # the uniform control, above every VA row, is not the best VA
    saved["phantom_val"]["pretrained_k3/va_context_uniform_s0"] = {"tumour_dice_per_case": 60.0}
    record.write_text(json.dumps(saved))
    curve = load_tool("learning_curve")
    capsys.readouterr()
    assert curve.main([str(record), "--plot", str(tmp_path / "curve.png")]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip().strip("|").split("|")[1:]]
            for line in out.splitlines() if line.startswith("| ") and not line.startswith("| row")}
    sd = statistics.stdev([46.0, 47.0, 48.0])
    # columns: scratch 3, scratch 15, pretrained 3, pretrained 15
    assert rows["VA + context features"][2] == f"47.0 ± {sd:.1f} / 0.47 ± {sd / 100:.2f} (3)"
    assert rows["baseline (2.5D)"][1] == "32.1 ± 3.2 / 9.40 ± 1.59 (3)"
    assert rows["3DCE"][1] == "43.3 ± 1.3 / – (3)"  # a reference without FP lesions
    assert rows["baseline (2.5D)"][3].startswith(f"65.0 ± {statistics.stdev([60.0, 70.0]):.1f}")
    # the target: best VA (47.0) against the best early fusion (42.0, centre) and 3DCE (43.0); the lifts over
    # scratch: VA + context features 47.0 - 22.0, early fusion 42.0 - 32.0
    assert "best VA (va_context_features) 47.0" in out
    assert "VA - early fusion +5.0 (target >= +2.0), VA - 3DCE +4.0 (target >= +2.0)" in out
    assert "va_context_features +25.0, early fusion +10.0" in out
    collapse = dict(line.split(": ", 1) for line in out.split("Collapse check")[1].splitlines() if ": " in line)
    assert collapse["pretrained_k3/va_paper"] == "training lesions found, lowest run 0.0%  <- COLLAPSED"
    assert collapse["pretrained_k3/early_fusion"] == "training lesions found, lowest run 50.0%"
    assert collapse["pretrained_k3/threedce"] == "training lesions found, lowest run 90.0%"
    assert out.count("COLLAPSED") == 1
    # the plot: one line per row and start (pretrained solid, scratch dashed), a point per column with runs
    import matplotlib.image

    assert matplotlib.image.imread(str(tmp_path / "curve.png")).shape[2] in (3, 4)
    saved = json.loads(record.read_text())
    lines = {(row, pre): points for row, _, pre, points in curve.curves(saved, curve.collect(saved))}
    assert lines[("baseline", False)] == [(15, 32.1, 3.2)]
    assert lines[("baseline", True)] == [(15, 65.0, pytest.approx(statistics.stdev([60.0, 70.0])))]
    assert lines[("early_fusion", False)] == [(3, 32.0, 2.0)] and lines[("early_fusion", True)] == [(3, 42.0, 2.0)]
    assert lines[("va_context_uniform", True)] == [(3, 60.0, 0.0)] and len(lines) == 11


def test_a_cell_without_runs_is_left_out_and_the_target_waits(tmp_path, capsys, load_tool):
    record = _record(tmp_path, load_tool, {("pretrained_k3", "baseline"): [50.0]})
    assert load_tool("learning_curve").main([str(record)]) == 0
    out = capsys.readouterr().out
    assert "not every pretrained 3-case row has a run yet" in out
    assert "3DCE" not in out.split("Collapse check")[0]


@pytest.mark.parametrize("content", ["{not json", None])
def test_a_bad_record_stops_with_one_line(tmp_path, capsys, load_tool, content):
    path = tmp_path / "runs.json"
    if content is not None:
        path.write_text(content)
    assert load_tool("learning_curve").main([str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("learning_curve: ") and "runs.json" in err and "\n" not in err
