"""tools/_machine_load.py: the benchmark's reading of how busy the machine is, and its warning."""
import os

import pytest


@pytest.fixture
def tool(load_tool):
    return load_tool("_machine_load")


def test_contention_warning_from_busy_cpus_or_load_average(tool):
    idle = {"cpus": 2, "loadavg_1min": 3.0, "busy_cpus": 0.1}
    assert tool.cpu_contention_warning(1, idle) is None
    assert tool.cpu_contention_warning(2, idle) is None
    busy = {"cpus": 2, "loadavg_1min": 0.0, "busy_cpus": 1.6}
    assert tool.cpu_contention_warning(1, busy) == (
        "other processes hold the CPUs (1.6 of 2 were busy; this run wants 1 thread(s)): timings and ratios are "
        "unreliable; run on an idle machine")
    assert tool.cpu_contention_warning(2, busy).endswith("run on an idle machine or with --threads 1")
    # without /proc/stat the load average decides
    assert "load average" in tool.cpu_contention_warning(2, {"cpus": 2, "loadavg_1min": 1.5, "busy_cpus": None})
    assert tool.cpu_contention_warning(1, {"cpus": 2, "loadavg_1min": None, "busy_cpus": None}) is None


def test_machine_load_samples_this_process_cpus(tool):
    load = tool.machine_load(sample_s=0.05)
    assert load["cpus"] == len(os.sched_getaffinity(0))
    if load["busy_cpus"] is not None:
        assert 0.0 <= load["busy_cpus"] <= load["cpus"] + 1e-6
