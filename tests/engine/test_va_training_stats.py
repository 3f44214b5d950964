"""tools/va_training_stats.py: per-module attention statistics over a run, read from the metrics.json that
detectron2's JSONWriter writes from VAStatsHook's scalars."""
import json

from detectron2.utils.events import EventStorage, JSONWriter


def _write_run(run, records, gate_relu=None):
    """records: {iteration: {scalar name: value}} -> run/metrics.json as detectron2 writes it (+ an eval line)."""
    run.mkdir(parents=True)
    writer = JSONWriter(str(run / "metrics.json"))
    with EventStorage(0) as storage:
        for iteration, scalars in sorted(records.items()):
            storage.iter = iteration
            storage.put_scalars(**scalars, smoothing_hint=False)
            storage.put_scalar("total_loss", 1.0)
            writer.write()
    writer.close()
    with open(run / "metrics.json", "a", encoding="utf-8") as f:
        f.write(json.dumps({"iteration": 99, "phantom_val/tumour_dice_per_case": 50.0}) + "\n")
    if gate_relu is not None:
        (run / "config.yaml").write_text(f"MODEL:\n  VA:\n    GATE_RELU: {gate_relu}\n")


def _scalars(p3_positive, p3_std, grad):
    return {
        "va/backbone.va.p2/spatial_gate_std": 0.2, "va/backbone.va.p2/spatial_context_positive": 0.4,
        "va/backbone.va.p2/spatial_max_weight": 0.4, "va/backbone.va.p2/spatial_temperature": 5.0,
        "va/backbone.va.p2/channel_gate_std": 0.1, "va/backbone.va.p2/channel_context_positive": 0.5,
        "va/backbone.va.p2/grad_norm": grad,
        "va/backbone.va.p3/spatial_gate_std": p3_std, "va/backbone.va.p3/spatial_context_positive": p3_positive,
        "va/backbone.va.p3/grad_norm": grad,
        "va/backbone_images_per_target": 3.0,
    }


def test_first_last_dead_and_median_per_module(tmp_path, capsys, load_tool):
    run = tmp_path / "va_s0"
    _write_run(run, {19: _scalars(0.001, 0.0, 1.0), 39: _scalars(0.02, 0.0001, 3.0), 59: _scalars(0.3, 0.05, 2.0)})
    tool = load_tool("va_training_stats")
    rows = {(r["module"], r["kind"]): r for r in tool.summarize(tool.read_series(str(run)))}
    assert set(rows) == {("backbone.va.p2", "spatial"), ("backbone.va.p2", "channel"), ("backbone.va.p3", "spatial")}
    p3 = rows[("backbone.va.p3", "spatial")]
    assert (p3["context_positive_first"], p3["context_positive_last"]) == (0.001, 0.3)
    assert (p3["gate_std_first"], p3["gate_std_last"]) == (0.0, 0.05)
    assert p3["dead"] is True and rows[("backbone.va.p2", "spatial")]["dead"] is False
    assert p3["grad_norm_median"] == 2.0 and p3["max_weight_last"] is None
    assert rows[("backbone.va.p2", "spatial")]["temperature_last"] == 5.0

    assert tool.main([str(run)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| run | module | kind | gate std first |")
    p3_line = [c.strip() for c in next(line for line in lines if "p3" in line).strip("|").split("|")]
    assert p3_line[:8] == ["va_s0", "backbone.va.p3", "spatial", "0.000", "0.050", "0.001", "0.300", "yes"]


def test_no_relu_run_has_no_dead_gate(tmp_path, load_tool):
    run = tmp_path / "va_no_gate_relu_s0"
    _write_run(run, {19: _scalars(0.0, 0.0, 1.0)}, gate_relu=False)
    tool = load_tool("va_training_stats")
    assert tool.gate_relu(str(run)) is False
    rows = tool.summarize(tool.read_series(str(run)), relu=tool.gate_relu(str(run)))
    assert not any(r["dead"] for r in rows)


def test_runs_without_va_scalars_are_listed_and_fail(tmp_path, capsys, load_tool):
    good = tmp_path / "va_s1"
    _write_run(good, {19: _scalars(0.5, 0.1, 1.0)})
    baseline = tmp_path / "baseline_s1"
    baseline.mkdir()
    (baseline / "metrics.json").write_text(json.dumps({"iteration": 19, "total_loss": 1.0}) + "\n")
    out = tmp_path / "stats.json"
    assert load_tool("va_training_stats").main([str(good), str(baseline), str(tmp_path / "missing"), "--json", str(out)]) == 1
    captured = capsys.readouterr()
    assert "va_s1" in captured.out and "baseline_s1 |" not in captured.out
    errors = captured.err.strip().splitlines()
    assert len(errors) == 2
    assert "baseline_s1/metrics.json: no va/<module>/... scalars" in errors[0]
    assert "missing/metrics.json: no metrics.json" in errors[1]
    assert list(json.loads(out.read_text())) == ["va_s1"]
