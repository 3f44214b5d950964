"""How busy the machine is when a benchmark starts: the CPUs this process may use, the load average, and how many of
those CPUs other processes keep busy. Wall-clock ratios taken on a machine whose CPUs are held are unreliable."""
import os
import re
import time
from typing import Optional

__all__ = ["machine_load", "cpu_contention_warning"]


def _cpu_times(cpus):
    """{cpu: (busy, total)} jiffies from /proc/stat for the given CPU numbers (Linux), or None."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    times = {}
    for line in lines:
        m = re.match(r"cpu(\d+)\s+(.*)", line)
        if m and int(m.group(1)) in cpus:
            values = [int(v) for v in m.group(2).split()]
            idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
            total = sum(values[:8])  # guest time is already counted in user time
            times[int(m.group(1))] = (total - idle, total)
    return times or None


def machine_load(sample_s: float = 0.5) -> dict:
    """The CPUs this process may run on, the 1-minute load average, and how many of those CPUs other processes
    kept busy over ``sample_s`` seconds while this one slept (``busy_cpus``; None where /proc/stat is missing)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    load = {"cpus": len(cpus), "loadavg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "busy_cpus": None}
    before = _cpu_times(set(cpus))
    if before is not None and sample_s > 0:
        time.sleep(sample_s)
        after = _cpu_times(set(cpus)) or {}
        busy = 0.0
        for cpu, (b0, t0) in before.items():
            b1, t1 = after.get(cpu, (b0, t0))
            busy += (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
        load["busy_cpus"] = busy
    return load


def cpu_contention_warning(threads: int, load: dict) -> Optional[str]:
    """A one-line warning when other processes hold the CPUs this one needs for ``threads`` threads, else None.

    Uses the sampled ``busy_cpus`` when there is one (the load average lags by a minute), else the load average.
    """
    busy = load.get("busy_cpus")
    what = "were busy"
    if busy is None:
        busy, what = load.get("loadavg_1min"), "load average"
    if busy is None:
        return None
    free = load["cpus"] - busy
    if free + 0.25 >= threads:
        return None
    advice = "run on an idle machine" + (" or with --threads 1" if threads > 1 else "")
    return (f"other processes hold the CPUs ({busy:.1f} of {load['cpus']} {what}; this run wants {threads} "
            f"thread(s)): timings and ratios are unreliable; {advice}")
