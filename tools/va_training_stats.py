#!/usr/bin/env python
"""What each VA module's attention did over a training run, from the ``va/...`` scalars ``VAStatsHook`` writes to
detectron2's ``metrics.json`` (``MODEL.VA.STATS_PERIOD``): one Markdown row per run, module and attention kind.

    tools/va_training_stats.py RUN_DIR [RUN_DIR ...] [--dead-below 0.01] [--json OUT.json]

Columns, "first" and "last" being the first and the last recorded iteration:

* ``gate std``: the gate's spread over channels / positions (0 = a constant gate, which does nothing before a
  normalisation layer);
* ``context positive``: the share of the gate's input that is positive; with the paper's ReLU before the gate conv
  (``MODEL.VA.GATE_RELU True``) a share of 0 leaves the gate conv and the embedding without gradient;
* ``dead``: ``yes`` when the first recorded ``context positive`` is below ``--dead-below`` and the run has the ReLU;
* ``max weight``: the largest slice weight at the end (1/N = uniform over the bag, 1 = one image);
* ``temperature``: the cosine similarity's tau at the end;
* ``grad norm``: the median over the recorded iterations of the module's parameter-gradient L2 norm.

A run whose ``metrics.json`` is missing or has no ``va/`` scalars is listed on stderr and the exit status is 1.
"""
import argparse
import json
import os
import statistics
import sys

KINDS = ("channel", "spatial")


def read_series(run_dir):
    """{scalar name: [(iteration, value), ...]} of the ``va/`` scalars in ``RUN_DIR/metrics.json``."""
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no metrics.json (is this a train_net.py OUTPUT_DIR?)")
    series = {}
    with open(path, "r", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {number} is not JSON ({e.msg})") from None
            for key, value in record.items():
                if key.startswith("va/") and value is not None:
                    series.setdefault(key, []).append((int(record.get("iteration", -1)), float(value)))
    if not any(key.count("/") == 2 for key in series):
        raise ValueError(f"{path}: no va/<module>/... scalars (VA off, or MODEL.VA.STATS_PERIOD 0)")
    return series


def gate_relu(run_dir):
    """``MODEL.VA.GATE_RELU`` of the run, from its ``config.yaml`` (True, the default, when it cannot be read)."""
    path = os.path.join(run_dir, "config.yaml")
    try:
        from detectron2.config import CfgNode

        with open(path, "r", encoding="utf-8") as f:
            cfg = CfgNode.load_cfg(f)
        return bool(cfg.MODEL.VA.get("GATE_RELU", True))
    except (OSError, AttributeError, KeyError):
        return True


def summarize(series, relu=True, dead_below=0.01):
    """Rows ``{"module", "kind", "gate_std_first", ...}`` for every module and attention kind with statistics."""
    modules = sorted({key.split("/")[1] for key in series if key.count("/") == 2})
    rows = []
    for module in modules:
        grad = [v for _, v in series.get(f"va/{module}/grad_norm", [])]
        for kind in KINDS:
            prefix = f"va/{module}/{kind}_"
            if prefix + "gate_std" not in series:
                continue

            def first_last(name):
                points = series.get(prefix + name)
                return (points[0][1], points[-1][1]) if points else (None, None)

            std_first, std_last = first_last("gate_std")
            pos_first, pos_last = first_last("context_positive")
            rows.append({
                "module": module,
                "kind": kind,
                "gate_std_first": std_first,
                "gate_std_last": std_last,
                "context_positive_first": pos_first,
                "context_positive_last": pos_last,
                "dead": None if pos_first is None else bool(relu and pos_first < dead_below),
                "max_weight_last": first_last("max_weight")[1],
                "temperature_last": first_last("temperature")[1],
                "grad_norm_median": statistics.median(grad) if grad else None,
            })
    return rows


def _fmt(value, digits=3):
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.{digits}f}"


def markdown(runs):
    """runs: [(run name, rows of ``summarize``)] -> Markdown table."""
    head = ["run", "module", "kind", "gate std first", "gate std last", "context positive first",
            "context positive last", "dead", "max weight last", "temperature last", "grad norm"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, rows in runs:
        for r in rows:
            cells = [name, r["module"], r["kind"], _fmt(r["gate_std_first"]), _fmt(r["gate_std_last"]),
                     _fmt(r["context_positive_first"]), _fmt(r["context_positive_last"]), _fmt(r["dead"]),
                     _fmt(r["max_weight_last"]), _fmt(r["temperature_last"], 2), _fmt(r["grad_norm_median"], 4)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--dead-below", type=float, default=0.01,
                        help="a gate whose first 'context positive' is below this is dead (default 0.01)")
    parser.add_argument("--json", help="also write the rows of every run to this JSON file")
    args = parser.parse_args(argv)

    runs, failures = [], []
    for run_dir in args.runs:
        try:
            rows = summarize(read_series(run_dir), relu=gate_relu(run_dir), dead_below=args.dead_below)
        except (OSError, ValueError) as e:
            failures.append(str(e))
            continue
        runs.append((os.path.basename(os.path.normpath(run_dir)), rows))
    print(markdown(runs))
    if args.json:
        from volumetric_attention.evaluation.results_io import write_json

        write_json(args.json, dict(runs))
    for failure in failures:
        print(f"va_training_stats: skipped {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
