"""engine/run_metrics.py: a run's metrics.json as detectron2's JSONWriter writes it from VAStatsHook's scalars: the
records, seconds per iteration, the va/ series, and what each gate did over the whole run."""
import json

import pytest

from volumetric_attention.engine.run_metrics import (
    gate_relu,
    read_metrics,
    seconds_per_iteration,
    summarize_gates,
    va_series,
)

from detectron2.utils.events import EventStorage, JSONWriter


def _write_run(run, records, gate_relu=None):
    """records: {iteration: {scalar name: value}} -> run/metrics.json as detectron2 writes it (+ an eval line)."""
    run.mkdir(parents=True)
    writer = JSONWriter(str(run / "metrics.json"))
    with EventStorage(0) as storage:
        for iteration, scalars in sorted(records.items()):
            storage.iter = iteration
            storage.put_scalars(**scalars, smoothing_hint=False)
            storage.put_scalars(total_loss=1.0, time=0.1 * iteration)
            writer.write()
    writer.close()
    with open(run / "metrics.json", "a", encoding="utf-8") as f:
        f.write(json.dumps({"iteration": 99, "phantom_val/tumour_dice_per_case": 50.0}) + "\n")
    if gate_relu is not None:
        (run / "config.yaml").write_text(f"MODEL:\n  VA:\n    GATE_RELU: {gate_relu}\n")
    return str(run)


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


def _rows(run, **kwargs):
    rows = summarize_gates(va_series(read_metrics(run)), relu=gate_relu(run), **kwargs)
    return {(r["module"], r["kind"]): r for r in rows}


def test_records_series_and_seconds_per_iteration(tmp_path):
    run = _write_run(tmp_path / "va_s0", {19: _scalars(0.5, 0.1, 1.0), 39: _scalars(0.5, 0.1, 3.0),
                                          59: _scalars(0.5, 0.1, 2.0)})
    records = read_metrics(run)
    assert len(records) == 4 and records[-1]["iteration"] == 99
    assert seconds_per_iteration(records) == pytest.approx(3.9)  # the median of 1.9, 3.9, 5.9
    series = va_series(records)
    assert series["va/backbone.va.p3/grad_norm"] == [(19, 1.0), (39, 3.0), (59, 2.0)]
    assert seconds_per_iteration([{"iteration": 1}]) is None


def test_first_last_and_median_per_module(tmp_path):
    run = _write_run(tmp_path / "va_s0", {19: _scalars(0.001, 0.0, 1.0), 39: _scalars(0.02, 0.0001, 3.0),
                                          59: _scalars(0.3, 0.05, 2.0)})
    rows = _rows(run)
    assert set(rows) == {("backbone.va.p2", "spatial"), ("backbone.va.p2", "channel"), ("backbone.va.p3", "spatial")}
    p3 = rows[("backbone.va.p3", "spatial")]
    assert (p3["context_positive_first"], p3["context_positive_last"]) == (0.001, 0.3)
    assert (p3["gate_std_first"], p3["gate_std_last"]) == (0.0, 0.05)
    assert p3["grad_norm_median"] == 2.0 and p3["max_weight_last"] is None
    assert rows[("backbone.va.p2", "spatial")]["temperature_last"] == 5.0
    assert rows[("backbone.va.p2", "spatial")]["dead"] is False


@pytest.mark.parametrize("records, dead", [
    # no positive input and a flat gate in every record: dead to the end
    ({19: (0.0, 0.0), 39: (0.004, 0.0), 59: (0.0, 0.0002)}, True),
    # dead at the first record, then its input turns positive and the gate spreads: recovered, not dead
    ({19: (0.001, 0.0), 39: (0.02, 0.0001), 59: (0.3, 0.05)}, False),
    # the share stays low but the gate spreads (revived through the context features' gradient): not dead
    ({19: (0.0, 0.0), 39: (0.005, 0.002), 59: (0.008, 0.07)}, False),
])
def test_dead_gates_are_judged_over_the_whole_run(tmp_path, records, dead):
    run = _write_run(tmp_path / "va", {i: _scalars(p, s, 1.0) for i, (p, s) in records.items()})
    assert _rows(run)[("backbone.va.p3", "spatial")]["dead"] is dead


def test_thresholds_and_a_run_without_the_relu(tmp_path):
    run = _write_run(tmp_path / "va_s0", {19: _scalars(0.0, 0.0, 1.0), 39: _scalars(0.005, 0.002, 1.0)})
    assert _rows(run)[("backbone.va.p3", "spatial")]["dead"] is False
    assert _rows(run, flat_below=0.01)[("backbone.va.p3", "spatial")]["dead"] is True
    no_relu = _write_run(tmp_path / "va_no_gate_relu_s0", {19: _scalars(0.0, 0.0, 1.0)}, gate_relu=False)
    assert gate_relu(no_relu) is False and gate_relu(run) is True
    assert not any(r["dead"] for r in _rows(no_relu).values())


def test_a_run_without_the_share_cannot_be_judged(tmp_path):
    scalars = {k: v for k, v in _scalars(0.0, 0.0, 1.0).items() if "context_positive" not in k}
    run = _write_run(tmp_path / "early", {19: scalars})
    assert _rows(run)[("backbone.va.p3", "spatial")]["dead"] is None


def test_missing_file_and_bad_line_are_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.json: no metrics.json"):
        read_metrics(str(tmp_path))
    (tmp_path / "metrics.json").write_text('{"iteration": 1}\n{"iteration": \n')
    with pytest.raises(ValueError, match=r"metrics.json: line 2 is not JSON"):
        read_metrics(str(tmp_path))
