"""A training run's ``metrics.json``, as detectron2's ``JSONWriter`` writes it (one JSON record per line) and
:class:`~.va_stats_hook.VAStatsHook` fills it with ``va/<module>/...`` scalars: the records, seconds per
iteration, the VA scalars as series, and per VA module and attention kind what its gate did over the run."""
import json
import os
import statistics
from typing import Dict, List, Optional, Tuple

from .va_stats_hook import KINDS

__all__ = ["METRICS_FILE", "read_metrics", "seconds_per_iteration", "va_series", "gate_relu", "summarize_gates"]

METRICS_FILE = "metrics.json"
# A gate that ends "flat" spreads less than this over its channels / positions (a constant gate does nothing before a
# normalisation layer); the share below which a gate's input counts as "none positive"
FLAT_BELOW = 1e-3
DEAD_BELOW = 0.01


def read_metrics(run_dir: str) -> List[dict]:
    """The records of ``RUN_DIR/metrics.json``, in file order.

    Raises:
        FileNotFoundError: the run has no metrics.json.
        ValueError: a line is not JSON (one line naming the file and the line number).
    """
    path = os.path.join(run_dir, METRICS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no {METRICS_FILE} (is this a train_net.py OUTPUT_DIR?)")
    records = []
    with open(path, "r", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {number} is not JSON ({e.msg})") from None
    return records


def seconds_per_iteration(records: List[dict]) -> Optional[float]:
    """The median of detectron2's per-iteration ``time``, or None where no record has one."""
    times = [float(r["time"]) for r in records if "time" in r]
    return statistics.median(times) if times else None


def va_series(records: List[dict]) -> Dict[str, List[Tuple[int, float]]]:
    """{scalar name: [(iteration, value), ...]} of the ``va/`` scalars, in iteration order of the file."""
    series = {}
    for record in records:
        for key, value in record.items():
            if key.startswith("va/") and value is not None:
                series.setdefault(key, []).append((int(record.get("iteration", -1)), float(value)))
    return series


def gate_relu(run_dir: str) -> bool:
    """``MODEL.VA.GATE_RELU`` of the run, from its ``config.yaml`` (True, the default, when it cannot be read)."""
    from detectron2.config import CfgNode

    try:
        with open(os.path.join(run_dir, "config.yaml"), "r", encoding="utf-8") as f:
            cfg = CfgNode.load_cfg(f)
        return bool(cfg.MODEL.VA.get("GATE_RELU", True))
    except (OSError, AttributeError, KeyError):
        return True


def _is_dead(positive: List[float], spread: List[float], relu: bool, dead_below: float, flat_below: float):
    """A gate is dead when, in every record of the run, its input has (almost) no positive value and its spread is
    (almost) 0: behind the ReLU it gets no gradient, and nothing revived it. None: no share was recorded."""
    if not positive:
        return None
    if not relu:
        return False
    return all(p < dead_below for p in positive) and all(s < flat_below for s in spread)


def summarize_gates(series: Dict[str, List[Tuple[int, float]]], relu: bool = True, dead_below: float = DEAD_BELOW,
                    flat_below: float = FLAT_BELOW) -> List[dict]:
    """Rows ``{"module", "kind", "gate_std_first", "gate_std_last", "context_positive_first",
    "context_positive_last", "dead", "max_weight_last", "temperature_last", "grad_norm_median"}`` for every VA
    module and attention kind with statistics in ``series`` (:func:`va_series`); "first" and "last" are the first
    and the last recorded iteration.

    ``dead`` judges the whole run (see :func:`_is_dead`): a gate that starts with no positive input and recovers is
    not dead. It is False without the ReLU before the gates (``relu``) and None where no share was recorded.
    """
    modules = sorted({key.split("/")[1] for key in series if key.count("/") == 2})
    rows = []
    for module in modules:
        grad = [v for _, v in series.get(f"va/{module}/grad_norm", [])]
        for kind in KINDS:
            prefix = f"va/{module}/{kind}_"
            if prefix + "gate_std" not in series:
                continue

            def values(name):
                return [v for _, v in series.get(prefix + name, [])]

            def first_last(name):
                points = values(name)
                return (points[0], points[-1]) if points else (None, None)

            std_first, std_last = first_last("gate_std")
            pos_first, pos_last = first_last("context_positive")
            rows.append({
                "module": module,
                "kind": kind,
                "gate_std_first": std_first,
                "gate_std_last": std_last,
                "context_positive_first": pos_first,
                "context_positive_last": pos_last,
                "dead": _is_dead(values("context_positive"), values("gate_std"), relu, dead_below, flat_below),
                "max_weight_last": first_last("max_weight")[1],
                "temperature_last": first_last("temperature")[1],
                "grad_norm_median": statistics.median(grad) if grad else None,
            })
    return rows
