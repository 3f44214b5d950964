"""The tools' shared start-up: threads, known third-party noise, colour, config overrides."""
import argparse
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from volumetric_attention.utils import cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def keep_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    yield
    torch.set_num_threads(before)


def test_threads_option_wins_and_is_logged(keep_threads, monkeypatch, caplog):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    with caplog.at_level(logging.INFO, logger="volumetric_attention"):
        assert cli.set_threads(1) == 1
    assert torch.get_num_threads() == 1
    assert os.environ["OMP_NUM_THREADS"] == "1"  # processes started from here use the same number
    assert [r.getMessage() for r in caplog.records] == ["torch threads: 1 (--threads)"]


def test_omp_num_threads_is_honoured_explicitly(keep_threads, monkeypatch, caplog):
    torch.set_num_threads(2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with caplog.at_level(logging.INFO, logger="volumetric_attention"):
        assert cli.set_threads(None) == 1
    assert torch.get_num_threads() == 1
    assert caplog.records[-1].getMessage() == "torch threads: 1 (OMP_NUM_THREADS)"


@pytest.mark.parametrize("value", ["0", "two"])
def test_bad_omp_num_threads_is_one_line(keep_threads, monkeypatch, value):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    with pytest.raises(ValueError, match=f"OMP_NUM_THREADS='{value}' is not a positive whole number"):
        cli.set_threads(None)


def test_contention_warning_from_busy_cpus_or_load_average():
    idle = {"cpus": 2, "loadavg_1min": 3.0, "busy_cpus": 0.1}
    assert cli.cpu_contention_warning(1, idle) is None
    assert cli.cpu_contention_warning(2, idle) is None
    busy = {"cpus": 2, "loadavg_1min": 0.0, "busy_cpus": 1.6}
    assert cli.cpu_contention_warning(1, busy) == (
        "other processes hold the CPUs (1.6 of 2 were busy; this run wants 1 thread(s)): timings and ratios are "
        "unreliable; run on an idle machine")
    assert cli.cpu_contention_warning(2, busy).endswith("run on an idle machine or with --threads 1")
    # without /proc/stat the load average decides
    assert "load average" in cli.cpu_contention_warning(2, {"cpus": 2, "loadavg_1min": 1.5, "busy_cpus": None})
    assert cli.cpu_contention_warning(1, {"cpus": 2, "loadavg_1min": None, "busy_cpus": None}) is None


def test_machine_load_samples_this_process_cpus():
    load = cli.machine_load(sample_s=0.05)
    assert load["cpus"] == len(os.sched_getaffinity(0))
    if load["busy_cpus"] is not None:
        assert 0.0 <= load["busy_cpus"] <= load["cpus"] + 1e-6


def test_known_third_party_noise_is_quiet_and_the_rest_is_not():
    """In a fresh process: the CLI filters drop exactly the known messages, by library and message."""
    script = textwrap.dedent("""
        import logging, warnings
        from volumetric_attention.utils import cli
        cli.quiet_third_party_warnings()
        def warn(message, category, module):
            warnings.warn_explicit(message, category, module.replace(".", "/") + ".py", 1, module=module)
        warn("torch.meshgrid: in an upcoming release, it will be required", UserWarning, "torch.functional")
        warn("`torch.jit.script` is deprecated. Please switch to `torch.compile`", FutureWarning, "torch.jit._script")
        warn("The given NumPy array is not writable", UserWarning, "detectron2.data.detection_utils")
        warn("torch.meshgrid: in an upcoming release (from the project)", UserWarning, "volumetric_attention.x")
        warn("some other torch warning", UserWarning, "torch.functional")
        logging.getLogger("torch.fx._symbolic_trace").warning("is_fx_tracing will return true for both")
        logging.getLogger("torch.utils.cpp_extension").warning("No CUDA runtime is found, using CUDA_HOME='%s'", "x")
        logging.getLogger("torch.utils.cpp_extension").warning("another cpp_extension message")
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "projects" / "VolumetricAttention"), PYTHONWARNINGS="")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for quiet in ("torch.meshgrid: in an upcoming release, it", "torch.jit.script", "not writable", "is_fx_tracing",
                  "No CUDA runtime"):
        assert quiet not in out.stderr
    for shown in ("(from the project)", "some other torch warning", "another cpp_extension message"):
        assert shown in out.stderr


def test_importing_the_package_prints_no_known_notice():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "projects" / "VolumetricAttention"), PYTHONWARNINGS="")
    out = subprocess.run([sys.executable, "-c", "import volumetric_attention"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "torch.jit.script" not in out.stderr


def test_no_colour_codes_off_a_terminal(tmp_path, monkeypatch):
    """FORCE_COLOR stands for a colouring library that ignores the terminal test (termcolor < 2.1 did)."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("ANSI_COLORS_DISABLED", raising=False)
    import termcolor

    with open(tmp_path / "out.txt", "w") as stream:
        assert cli.disable_colour_unless_terminal(stream) is False
    try:
        assert termcolor.colored("WARNING", "red") == "WARNING"
    finally:
        os.environ.pop("ANSI_COLORS_DISABLED", None)
        cache_clear = getattr(getattr(termcolor.termcolor, "can_colorize", None), "cache_clear", None)
        if cache_clear:
            cache_clear()


def _parse(positional, argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--config-file")
    cli.add_override_arguments(parser, positional=positional)
    return parser.parse_args(argv)


@pytest.mark.parametrize("argv", [
    ["--config-file", "c.yaml", "MODEL.DEVICE", "cpu", "SOLVER.MAX_ITER", "3"],
    ["--config-file", "c.yaml", "--opts", "MODEL.DEVICE", "cpu", "SOLVER.MAX_ITER", "3"],
    ["--config-file", "c.yaml", "MODEL.DEVICE", "cpu", "--opts", "SOLVER.MAX_ITER", "3"],
])
def test_both_override_forms_give_the_same_list(argv):
    assert cli.config_overrides(_parse(True, argv)) == ["MODEL.DEVICE", "cpu", "SOLVER.MAX_ITER", "3"]


def test_override_errors_are_one_line():
    with pytest.raises(ValueError, match="^config overrides must be KEY VALUE pairs; got 3 items: A 1 B$"):
        cli.config_overrides(_parse(True, ["A", "1", "B"]))
    with pytest.raises(ValueError, match="^option --config-file after the config overrides; put KEY VALUE pairs last$"):
        cli.config_overrides(_parse(True, ["--opts", "A", "1", "--config-file", "x"]))
    # negative numbers are values, not options
    assert cli.config_overrides(_parse(True, ["SEED", "-1"])) == ["SEED", "-1"]
