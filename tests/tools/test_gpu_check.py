"""tools/gpu_check.py runs its checks end to end on the CPU (--device cpu --tiny) and reports every figure."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


@pytest.mark.slow
def test_gpu_check_runs_tiny_on_the_cpu(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gpu_check.py"), "--device", "cpu", "--tiny",
                           "--output-dir", str(tmp_path)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    assert results["failed"] == [] and results["device"] == "cpu"
    rows = {r["variant"]: r for r in results["speed_and_memory"]}
    assert set(rows) == {"baseline", "baseline + AMP", "VA bag 3", "VA bag 3, no context grad", "VA bag 3 + AMP",
                         "VA bag 3 + AMP, no context grad"}
    for row in rows.values():
        assert row["status"] == "ok" and row["s_per_iter"] > 0 and row["peak_memory_mb"] > 0
        assert row["time_x_baseline"] == pytest.approx(row["s_per_iter"] / rows[
            "baseline + AMP" if row["amp"] else "baseline"]["s_per_iter"])
    amp = results["amp_training"]
    assert amp["status"] == "ok" and amp["finite"] and amp["config"].endswith("mask_rcnn_R_50_FPN_va_bag9.yaml")
    assert amp["amp"] is False  # detectron2's AMPTrainer needs CUDA
    assert results["deformable"]["status"].startswith("skipped")
    assert [r["variant"] for r in results["inference"]] == ["baseline", "VA bag 9, feature cache"]
    assert all(r["slices_per_s"] > 0 for r in results["inference"])
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| VA bag 3, no context grad | 3 | False | False |" in table


def test_gpu_check_refuses_cuda_without_a_device(load_tool, capsys):
    """gpu_check.py's main in this process: the exit status is the code of the SystemExit that argparse's error
    raises (a gpu_check.py process, with status 0: test_gpu_check_runs_tiny_on_the_cpu)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit) as exited:
        load_tool("gpu_check").main([])
    assert exited.value.code == 2 and "no CUDA device here; use --device cpu --tiny" in capsys.readouterr().err
