"""tools/va_training_stats.py: the Markdown table of every run's gates, the runs it cannot read listed on stderr."""
import json


def _write_run(run, p3_records):
    """metrics.json with VAStatsHook's P3 spatial gate scalars: {iteration: (context positive, gate std)}."""
    run.mkdir(parents=True)
    lines = [{"iteration": i, "total_loss": 1.0, "va/backbone.va.p3/spatial_context_positive": positive,
              "va/backbone.va.p3/spatial_gate_std": std} for i, (positive, std) in sorted(p3_records.items())]
    (run / "metrics.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(run)


def test_table_row_per_run_module_and_kind(tmp_path, capsys, load_tool):
    dead = _write_run(tmp_path / "va_s0", {19: (0.001, 0.0), 39: (0.0, 0.0)})
    recovered = _write_run(tmp_path / "va_s1", {19: (0.001, 0.0), 39: (0.3, 0.05)})
    assert load_tool("va_training_stats").main([dead, recovered]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| run | module | kind | gate std first |")
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert cells[0][:8] == ["va_s0", "backbone.va.p3", "spatial", "0.000", "0.000", "0.001", "0.000", "yes"]
    assert cells[1][:8] == ["va_s1", "backbone.va.p3", "spatial", "0.000", "0.050", "0.001", "0.300", "no"]


def test_runs_without_va_scalars_are_listed_and_fail(tmp_path, capsys, load_tool):
    good = _write_run(tmp_path / "va_s1", {19: (0.5, 0.1)})
    baseline = tmp_path / "baseline_s1"
    baseline.mkdir()
    (baseline / "metrics.json").write_text(json.dumps({"iteration": 19, "total_loss": 1.0}) + "\n")
    out = tmp_path / "stats.json"
    tool = load_tool("va_training_stats")
    assert tool.main([good, str(baseline), str(tmp_path / "missing"), "--json", str(out)]) == 1
    captured = capsys.readouterr()
    assert "va_s1" in captured.out and "baseline_s1 |" not in captured.out
    errors = captured.err.strip().splitlines()
    assert len(errors) == 2
    assert "baseline_s1/metrics.json: no va/<module>/... scalars" in errors[0]
    assert "missing/metrics.json: no metrics.json" in errors[1]
    assert list(json.loads(out.read_text())) == ["va_s1"]
