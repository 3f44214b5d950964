"""Every tool starts through the project's start-up (utils/cli.py): colour, known third-party noise, a console
log, CPU threads; a config typo ends in one line and a non-zero exit, not a traceback."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "projects" / "VolumetricAttention" / "configs" / "Phantom" / "mask_rcnn_R_18_FPN_GN_va_bag3.yaml"
TYPO = ["SOLVER.BASE_LRR", "1"]
TYPO_LINE = f"error: {CONFIG} + command-line options: Non-existent key: SOLVER.BASE_LRR"
# runs before detectron2 and the package are installed
NOT_STARTED = {"install_detectron2.py"}


def _env(root):
    return dict(os.environ, VA_DATASETS=str(root), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")


def test_every_tool_goes_through_the_start_up():
    tools = [p for p in sorted((ROOT / "tools").glob("*.py")) if not p.name.startswith("_")]
    assert len(tools) > 10
    missing = [p.name for p in tools if p.name not in NOT_STARTED and "setup_cli(" not in p.read_text()]
    assert not missing, f"tools without the start-up: {missing}"


# a tool of each kind that reads a config: the arguments it needs besides the config
TOOLS_WITH_A_CONFIG = {
    "prepare_lits": lambda tmp: ["--source", str(tmp / "LiTS"), "--cache", str(tmp / "cache")],
    "prepare_deeplesion": lambda tmp: ["--source", str(tmp / "DeepLesion"), "--cache", str(tmp / "cache")],
    "make_phantoms": lambda tmp: ["--out", str(tmp / "out"), "--cache", str(tmp / "cache"), "--num-cases", "1"],
    "predict": lambda tmp: ["--input", str(tmp / "ct.nii.gz"), "--output", str(tmp / "out")],
    "attention_stats": lambda tmp: [],
}


@pytest.mark.parametrize("name", sorted(TOOLS_WITH_A_CONFIG))
def test_a_config_typo_ends_in_one_line(name, load_tool, tmp_path):
    argv = TOOLS_WITH_A_CONFIG[name](tmp_path) + ["--config-file", str(CONFIG), *TYPO]
    with pytest.raises(SystemExit) as e:
        load_tool(name).main(argv)
    assert e.value.code == TYPO_LINE
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()  # stopped before any work


@pytest.mark.slow
@pytest.mark.parametrize("name", ["prepare_lits", "prepare_deeplesion"])
def test_a_prepare_tool_process_ends_a_config_typo_in_one_line(name, tmp_path):
    argv = TOOLS_WITH_A_CONFIG[name](tmp_path) + ["--config-file", str(CONFIG), *TYPO]
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / f"{name}.py"), *argv], env=_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == TYPO_LINE


@pytest.mark.slow
def test_a_prepare_tool_logs_and_writes_plain_progress_lines_to_a_log_file(tmp_path, load_tool):
    source, cache = tmp_path / "phantom", tmp_path / "cache"
    assert load_tool("make_phantoms").main(["--out", str(source), "--num-cases", "3", "--slices", "8", "--size", "32",
                                            "--slice-thickness", "2.0", "--no-prepare"]) == 0
    cmd = [sys.executable, str(ROOT / "tools" / "prepare_lits.py"), "--source", str(source), "--cache", str(cache),
           "--slice-spacing", "2.0"]
    logs = []
    for run in range(2):
        with open(tmp_path / f"prepare{run}.log", "w") as log:
            assert subprocess.run(cmd, env=_env(tmp_path), stdout=log, stderr=subprocess.STDOUT,
                                  timeout=300).returncode == 0
        logs.append((tmp_path / f"prepare{run}.log").read_text())
    assert "\r" not in logs[0] and "\x1b[" not in logs[0]
    assert any(line.startswith("prepare LiTS: 3/3 (100%)") for line in logs[0].splitlines())
    # the project's log records reach the console (the second run finds every case prepared)
    assert " volumetric_attention.data.prepare INFO: 3 case(s) already prepared with these settings, skipped" in logs[1]
