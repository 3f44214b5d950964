"""What every command-line tool of the project does first: CPU threads, known third-party noise, colour, config
overrides and the project's logger.

Importing this module needs only the standard library (torch and detectron2 are imported inside the functions), so
the package can use :func:`quiet_import_noise` around its own imports.
"""
import argparse
import contextlib
import logging
import os
import re
import sys
import time
import warnings
from typing import List, Optional

__all__ = ["add_threads_argument", "set_threads", "machine_load", "cpu_contention_warning",
           "quiet_third_party_warnings", "quiet_import_noise", "colour_enabled", "disable_colour_unless_terminal",
           "add_override_arguments", "config_overrides", "setup_project_logger", "default_setup", "setup_cli",
           "PROJECT_LOGGER"]

PROJECT_LOGGER = "volumetric_attention"
logger = logging.getLogger(__name__)

# Third-party warnings every run prints and no user can act on: (category, message regex, module regex).
KNOWN_WARNINGS = (
    # fvcore scripts its losses with torch.jit.script when detectron2 imports it
    (FutureWarning, r"`torch\.jit\.script` is deprecated", r"torch\."),
    # detectron2's anchor generator calls torch.meshgrid without indexing=
    (UserWarning, r"torch\.meshgrid: in an upcoming release", r"torch\."),
    # detectron2 resizes masks through PIL and hands the read-only result to torch.from_numpy
    (UserWarning, r"The given NumPy array is not writable", r"detectron2\.data\.detection_utils"),
)
# Third-party log records of the same kind: logger name -> start of the message.
KNOWN_LOG_RECORDS = {
    # torch finds no CUDA runtime on a CPU machine with a CUDA toolkit installed
    "torch.utils.cpp_extension": "No CUDA runtime is found",
    # detectron2's ROIPooler asks torch.fx whether it is tracing
    "torch.fx._symbolic_trace": "is_fx_tracing will return true",
}


# ---------------------------------------------------------------------------------------------------- threads
def add_threads_argument(parser):
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch CPU threads (default: $OMP_NUM_THREADS, else torch's default); on a shared "
                             "machine 1 per process is often fastest")
    return parser


def set_threads(threads: Optional[int] = None, log=True) -> int:
    """Set torch's intra-op CPU threads from ``threads``, else ``$OMP_NUM_THREADS``, else keep torch's default.

    The choice is also written to ``$OMP_NUM_THREADS`` so that processes this one starts (detectron2's ``launch``,
    the benchmark's workers) use the same number. Logs one line ``torch threads: N (source)``. Returns N.
    """
    import torch

    source = "--threads"
    if threads is None and os.environ.get("OMP_NUM_THREADS", "").strip():
        value = os.environ["OMP_NUM_THREADS"].strip()
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"OMP_NUM_THREADS={value!r} is not a positive whole number")
        threads, source = int(value), "OMP_NUM_THREADS"
    if threads is None:
        threads, source = torch.get_num_threads(), "torch default"
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if log:
        logging.getLogger(PROJECT_LOGGER).info(f"torch threads: {threads} ({source})")
    return threads


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


# ---------------------------------------------------------------------------------------------------- noise
class _DropRecords(logging.Filter):
    def __init__(self, prefix):
        super().__init__()
        self.prefix = prefix

    def filter(self, record):
        return not str(record.msg).startswith(self.prefix)


_installed_log_filters = {}


def _add_log_filters():
    added = []
    for name, prefix in KNOWN_LOG_RECORDS.items():
        if name not in _installed_log_filters:
            f = _DropRecords(prefix)
            logging.getLogger(name).addFilter(f)
            added.append((name, f))
    return added


def quiet_third_party_warnings():
    """Hide :data:`KNOWN_WARNINGS` and :data:`KNOWN_LOG_RECORDS` for the rest of the process (CLIs only).

    Each filter matches one message of one library; every other warning, the project's own included, still shows.
    """
    for category, message, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name, f in _add_log_filters():
        _installed_log_filters[name] = f


@contextlib.contextmanager
def quiet_import_noise():
    """Hide the known third-party warnings printed while importing detectron2 and fvcore, for the block only."""
    added = _add_log_filters()
    try:
        with warnings.catch_warnings():
            for category, message, module in KNOWN_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category, module=module)
            yield
    finally:
        for name, f in added:
            logging.getLogger(name).removeFilter(f)


# ---------------------------------------------------------------------------------------------------- colour
def colour_enabled(stream=None) -> bool:
    """Colour only on a terminal, and not with ``$NO_COLOR`` or ``TERM=dumb``."""
    stream = stream if stream is not None else sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def disable_colour_unless_terminal(stream=None) -> bool:
    """Turn off termcolor's escape codes (detectron2's and fvcore's coloured log prefixes) unless ``stream`` (stdout)
    is a terminal, for this process and the ones it starts. Overrides ``$FORCE_COLOR``. Returns whether colour is on.
    """
    if colour_enabled(stream):
        return True
    os.environ["ANSI_COLORS_DISABLED"] = "1"
    try:  # termcolor >= 2.1 caches its decision
        import termcolor.termcolor as tc

        for name in ("can_colorize", "_can_do_colour"):
            cache_clear = getattr(getattr(tc, name, None), "cache_clear", None)
            if cache_clear is not None:
                cache_clear()
    except ImportError:
        pass
    return False


# ---------------------------------------------------------------------------------------------------- overrides
def add_override_arguments(parser, positional=True):
    """Config overrides as trailing ``KEY VALUE`` pairs and, equally, after ``--opts``; both may be combined.

    ``positional=False`` adds only ``--opts`` (for a parser that already has a positional ``opts``).
    """
    if positional:
        parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                            help="config overrides, e.g. MODEL.DEVICE cpu (last on the command line)")
    parser.add_argument("--opts", dest="flag_opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                        help="the same overrides after --opts (last on the command line)")
    return parser


def config_overrides(args) -> List[str]:
    """The ``KEY VALUE`` list of :func:`add_override_arguments`, both forms merged in command-line order.

    Raises ValueError (one line) for an option caught among the pairs, or an odd number of items.
    """
    items = [str(t) for t in (list(getattr(args, "opts", None) or []) + list(getattr(args, "flag_opts", None) or []))]
    items = [t for t in items if t != "--opts"]  # "KEY VALUE --opts KEY VALUE" lands in the positional list
    stray = [t for t in items if t.startswith("--") and not re.fullmatch(r"--?[\d.eE+-]+", t)]
    if stray:
        raise ValueError(f"option {stray[0]} after the config overrides; put KEY VALUE pairs last")
    if len(items) % 2:
        raise ValueError(f"config overrides must be KEY VALUE pairs; got {len(items)} items: {' '.join(items)}")
    return items


# ---------------------------------------------------------------------------------------------------- logging
def setup_project_logger(output_dir=None, rank=0):
    """detectron2's ``setup_logger`` for the project's own ``volumetric_attention`` logger: console on the main
    process, ``<output_dir>/log.txt`` (``log.txt.rank<k>`` on the others), formatted as detectron2's own logger
    (its colours are off unless stdout is a terminal, see :func:`disable_colour_unless_terminal`)."""
    from detectron2.utils.logger import setup_logger

    return setup_logger(output_dir or None, distributed_rank=rank, name=PROJECT_LOGGER, abbrev_name="va")


def default_setup(cfg, args):
    """detectron2's ``default_setup`` (its loggers, ``log.txt``, config dump, seed), plus the project's logger.

    The config is dumped without pygments' escape codes: the same record goes to ``log.txt``, never a terminal.
    """
    from unittest import mock

    from detectron2.engine import defaults
    from detectron2.utils import comm

    with mock.patch.object(defaults, "_highlight", lambda code, filename: code):
        defaults.default_setup(cfg, args)
    return setup_project_logger(cfg.OUTPUT_DIR, comm.get_rank())


def setup_cli(threads: Optional[int] = None, log_threads=True) -> int:
    """Colour, third-party noise and CPU threads for a CLI process; returns the number of torch threads."""
    disable_colour_unless_terminal()
    quiet_third_party_warnings()
    return set_threads(threads, log=log_threads)
