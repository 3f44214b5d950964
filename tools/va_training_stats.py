#!/usr/bin/env python
"""What each VA module's attention did over a training run, from the ``va/...`` scalars ``VAStatsHook`` writes to
detectron2's ``metrics.json`` (``MODEL.VA.STATS_PERIOD``): one Markdown row per run, module and attention kind.

    tools/va_training_stats.py RUN_DIR [RUN_DIR ...] [--dead-below 0.01] [--flat-below 0.001] [--json OUT.json]

Columns, "first" and "last" being the first and the last recorded iteration:

* ``gate std``: the gate's spread over channels / positions (0 = a constant gate, which does nothing before a
  normalisation layer);
* ``context positive``: the share of the gate's input that is positive; with the paper's ReLU before the gate conv
  (``MODEL.VA.GATE_RELU True``) a share of 0 leaves the gate conv and the embedding without gradient;
* ``dead``: ``yes`` when the run has the ReLU and, in every record of the run, ``context positive`` is below
  ``--dead-below`` and ``gate std`` below ``--flat-below``: a gate that starts without positive input and recovers
  is not dead;
* ``max weight``: the largest slice weight at the end (1/N = uniform over the bag, 1 = one image);
* ``temperature``: the cosine similarity's tau at the end;
* ``grad norm``: the median over the recorded iterations of the module's parameter-gradient L2 norm.

A run whose ``metrics.json`` is missing or has no ``va/`` scalars is listed on stderr and the exit status is 1.
"""
import argparse
import os
import sys

from volumetric_attention.engine.run_metrics import (
    DEAD_BELOW,
    FLAT_BELOW,
    METRICS_FILE,
    gate_relu,
    read_metrics,
    summarize_gates,
    va_series,
)
from volumetric_attention.utils.cli import setup_cli


def read_run(run_dir, dead_below=DEAD_BELOW, flat_below=FLAT_BELOW):
    """The rows of :func:`~volumetric_attention.engine.run_metrics.summarize_gates` for one run.

    Raises:
        FileNotFoundError, ValueError: no metrics.json, a line that is not JSON, or no ``va/<module>/`` scalars.
    """
    series = va_series(read_metrics(run_dir))
    if not any(key.count("/") == 2 for key in series):
        path = os.path.join(run_dir, METRICS_FILE)
        raise ValueError(f"{path}: no va/<module>/... scalars (VA off, or MODEL.VA.STATS_PERIOD 0)")
    return summarize_gates(series, relu=gate_relu(run_dir), dead_below=dead_below, flat_below=flat_below)


def _fmt(value, digits=3):
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.{digits}f}"


def markdown(runs):
    """runs: [(run name, rows of ``summarize_gates``)] -> Markdown table."""
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
    parser.add_argument("--dead-below", type=float, default=DEAD_BELOW,
                        help=f"a gate whose 'context positive' stays below this (and whose spread stays below "
                             f"--flat-below) in every record is dead (default {DEAD_BELOW})")
    parser.add_argument("--flat-below", type=float, default=FLAT_BELOW,
                        help=f"a gate spread below this counts as flat (default {FLAT_BELOW})")
    parser.add_argument("--json", help="also write the rows of every run to this JSON file")
    args = parser.parse_args(argv)
    setup_cli(log_threads=False)

    runs, failures = [], []
    for run_dir in args.runs:
        try:
            rows = read_run(run_dir, args.dead_below, args.flat_below)
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
