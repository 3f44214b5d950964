"""tools/study_table.py: mean ± std over seeds from evaluation summaries and detectron2 metrics; the tables of
tools/zcontext_study.sh over finished runs."""
import json
import statistics

import pytest
from _study_scripts import finished_study_tables


def _run(tmp_path, name, dice, fp, times, dataset="phantom_val"):
    run = tmp_path / name
    folder = run / "inference" / dataset
    folder.mkdir(parents=True)
    metrics = {"tumour_dice_per_case": dice, "tumour_dice_global": dice + 10.0, "fp_lesions_per_case": fp,
               "lesion_recall": 50.0, "lesion_recall_small": None, "liver_dice_per_case": 95.0}
    (folder / "lits_summary.json").write_text(json.dumps({"type": "lits", "metrics": metrics}))
    (run / "metrics.json").write_text("\n".join(json.dumps({"iteration": i, "time": t}) for i, t in enumerate(times))
                                      + "\n" + json.dumps({"iteration": 99, "eval": 1}) + "\n")
    return str(run)


def test_rows_are_mean_and_sample_std_over_runs(tmp_path, capsys, load_tool):
    a = _run(tmp_path, "base_s0", 30.0, 1.0, [0.2, 0.3, 0.4])
    b = _run(tmp_path, "base_s1", 50.0, 2.0, [0.5])
    c = _run(tmp_path, "va_s0", 62.0, 0.0, [0.9, 1.1])
    out = tmp_path / "study.json"
    assert load_tool("study_table").main([f"baseline={a},{b}", f"VA={c}", "--json", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| model | runs | tumour Dice per case | Dice global | FP lesions per case")
    base = [cell.strip() for cell in lines[2].strip("|").split("|")]
    sd = statistics.stdev([30.0, 50.0])
    assert base[:4] == ["baseline", "2", f"40.0 ± {sd:.1f}", f"50.0 ± {sd:.1f}"]
    assert base[4] == f"1.50 ± {statistics.stdev([1.0, 2.0]):.2f}"
    assert base[6] == "n/a"  # small-lesion recall missing in both runs
    assert base[-1] == f"0.40 ± {statistics.stdev([0.3, 0.5]):.2f}"  # medians 0.3 and 0.5 s/iteration
    va = [cell.strip() for cell in lines[3].strip("|").split("|")]
    assert va[:3] == ["VA", "1", "62.0"] and va[-1] == "1.00"
    saved = json.loads(out.read_text())
    assert saved[c]["label"] == "VA" and abs(saved[c]["tumour_dice_per_case"] - 62.0) < 1e-9


def test_unfinished_run_is_listed_and_exit_code_is_1(tmp_path, capsys, load_tool):
    a = _run(tmp_path, "base_s0", 30.0, 1.0, [0.2])
    missing = tmp_path / "va_s0"
    missing.mkdir()
    assert load_tool("study_table").main([f"baseline={a}", f"VA={missing}"]) == 1
    captured = capsys.readouterr()
    assert "| baseline | 1 | 30.0 |" in captured.out and "| VA |" not in captured.out
    assert "skipped" in captured.err and "va_s0" in captured.err and "did it finish" in captured.err


@pytest.mark.slow
def test_study_script_skips_finished_runs_and_prints_both_tables(tmp_path):
    """tools/zcontext_study.sh over finished runs (checkpoint, phantom_val and phantom_train evaluations) trains
    nothing and prints the validation table and the collapse check's."""
    datasets, out = tmp_path / "datasets", tmp_path / "out"
    (datasets / "cache" / "phantom").mkdir(parents=True)
    (datasets / "cache" / "phantom" / "index.json").write_text("{}")  # prepared: no generation
    for name, dice in (("baseline_s0", 30.0), ("va_context_features_s0", 62.0)):
        _run(out, name, dice, 1.0, [0.5])
        _run(out, name, dice + 20.0, 0.0, [0.5], dataset="phantom_train")
        (out / name / "model_final.pth").write_bytes(b"")
    tables = finished_study_tables("zcontext_study.sh", datasets, out, "baseline va_context_features")
    assert [t[0] for t in tables] == ["model", "baseline (2.5D, 3 slices)", "VA, cosine + context features"] * 2
    # phantom_val's Dice, then phantom_train's
    assert [t[2] for t in tables] == ["tumour Dice per case", "30.0", "62.0", "tumour Dice per case", "50.0", "82.0"]
    assert (out / "study.json").is_file() and (out / "study_train.json").is_file()
