"""The LiTS 3D evaluator inside a training run's EvalHook, and a prepare run killed midway then finished."""
import json
import os
import signal
import subprocess
import sys
import time

import _runs
import pytest


@pytest.mark.slow
def test_lits_evaluator_runs_in_training_eval_hook(phantom_root, tmp_path, train_net_in_process):
    out = tmp_path / "eval hook"
    opts = _runs.TINY + ["SOLVER.MAX_ITER", "2", "OUTPUT_DIR", out]
    opts[opts.index("TEST.EVAL_PERIOD") + 1] = "2"  # detectron2's EvalHook evaluates at iteration 2
    code = train_net_in_process(opts, phantom_root=phantom_root)  # train_net.py's main, in this process
    assert code == 0, (out / "log.txt").read_text()[-3000:]
    summary = json.loads((out / "inference" / "phantom_val" / "lits_summary.json").read_text())
    assert summary["metrics"]["n_cases"] == 1 and len(summary["per_case"]) == 1
    # the results went through EventStorage to detectron2's metrics.json (and TensorBoard) under "lits/..."
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert any("lits/tumour_dice_per_case" in m and "lits/liver_dice_per_case" in m for m in metrics)


@pytest.mark.slow
def test_prepare_killed_midway_finishes_without_redoing_cases(tmp_path, load_tool, monkeypatch, keep_process_state):
    make_phantoms = load_tool("make_phantoms")
    source, cache = tmp_path / "raw", tmp_path / "cache"
    assert make_phantoms.main(["--out", str(source), "--num-cases", "6", "--slices", "40", "--size", "96",
                               "--no-prepare"]) == 0
    cmd = [sys.executable, str(_runs.ROOT / "tools" / "prepare_lits.py"), "--source", str(source), "--cache",
           str(cache), "--slice-spacing", "0.5", "--workers", "1"]
    proc = subprocess.Popen(cmd, env=_runs.env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not any((cache / d / "meta.json").exists() for d in
                                             (os.listdir(cache) if cache.exists() else [])):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {d: (cache / d / "meta.json").stat().st_mtime for d in os.listdir(cache)
                if (cache / d / "meta.json").exists()}
    assert 1 <= len(finished) < 6, "the kill should land after the first case and before the last"
    assert not (cache / "index.json").exists(), "the index is written last"

    # the rerun finishes the job: prepare_lits.py's main, in this process
    monkeypatch.setenv("VA_DATASETS", str(tmp_path))
    assert load_tool("prepare_lits").main(cmd[2:]) == 0
    index = json.loads((cache / "index.json").read_text())
    assert len(index["cases"]) == 6
    for case, mtime in finished.items():  # finished cases were not redone
        assert (cache / case / "meta.json").stat().st_mtime == mtime
    assert not [d for d in os.listdir(cache) if d.startswith(".")], "no temporary entries left"


@pytest.mark.slow
def test_deeplesion_evaluator_without_detections_keeps_training(phantom_root, tmp_path, monkeypatch):
    """A young model (here: a score threshold no detection passes) returns no boxes; the FROC evaluator in the
    periodic EvalHook reports sensitivity 0 and training goes on to MAX_ITER."""
    from volumetric_attention import get_va_cfg
    from volumetric_attention.engine import VATrainer

    from detectron2.data import DatasetCatalog, MetadataCatalog

    monkeypatch.setenv("VA_DATASETS", str(phantom_root))
    name = "phantom_val_scored_by_froc"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: DatasetCatalog.get("phantom_val"))
        MetadataCatalog.get(name).set(thing_classes=["liver", "lesion"], evaluator_type="deeplesion")
    out = tmp_path / "froc eval hook"
    out.mkdir()
    opts = _runs.TINY + ["SOLVER.MAX_ITER", "2", "OUTPUT_DIR", str(out), "DATASETS.TEST", f"('{name}',)",
                         "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "1.0"]
    opts[opts.index("TEST.EVAL_PERIOD") + 1] = "1"  # evaluates after iteration 1, and training must go on
    trainer = VATrainer(get_va_cfg(str(_runs.VA_CONFIG), opts))
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert trainer.iter == 2  # both iterations ran (detectron2 leaves iter at MAX_ITER after the loop)
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    evals = [m for m in metrics if "deeplesion/sens@0.5" in m]
    assert len(evals) == 2  # after iteration 1 (period) and after training (detectron2's final evaluation)
    assert all(m["deeplesion/sens@0.5"] == 0.0 and m["deeplesion/AP50"] == 0.0 for m in evals)
    summary = json.loads((out / "inference" / name / "deeplesion_summary.json").read_text())
    assert summary["metrics"]["sens@16"] == 0.0 and summary["curve"]["sensitivity"] == []
