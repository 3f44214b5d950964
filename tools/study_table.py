#!/usr/bin/env python
"""Summarise training runs over seeds: one Markdown row per model, mean ± std over its runs (seeds).

    tools/study_table.py LABEL=RUN_DIR[,RUN_DIR...] [LABEL=...] [--dataset phantom_val] [--json OUT.json]

Each RUN_DIR is a ``train_net.py`` OUTPUT_DIR: its LiTS evaluation ``inference/<dataset>/lits_summary.json`` gives
the accuracy columns and detectron2's ``metrics.json`` the median seconds per training iteration. Lesion figures
are in percent, as the evaluator writes them; FP lesions are per case. ``--json`` also writes every run's values
(atomically).
"""
import argparse
import os
import statistics
import sys

from volumetric_attention.engine.run_metrics import read_metrics, seconds_per_iteration
from volumetric_attention.utils.cli import setup_cli

# (column title, key of the LiTS evaluator's summary; percent except FP lesions per case)
COLUMNS = [
    ("tumour Dice per case", "tumour_dice_per_case"),
    ("Dice global", "tumour_dice_global"),
    ("FP lesions per case", "fp_lesions_per_case"),
    ("lesion recall", "lesion_recall"),
    ("recall s", "lesion_recall_small"),
    ("recall m", "lesion_recall_medium"),
    ("recall l", "lesion_recall_large"),
    ("lesion Dice s", "lesion_dice_small"),
    ("lesion Dice m", "lesion_dice_medium"),
    ("lesion Dice l", "lesion_dice_large"),
    ("liver Dice per case", "liver_dice_per_case"),
]


def read_run(run_dir, dataset):
    """The run's values by summary key (as the evaluator wrote them) plus ``s_per_iter``."""
    from volumetric_attention.evaluation import load_results

    path = os.path.join(run_dir, "inference", dataset, "lits_summary.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no LiTS evaluation in this run (did it finish?)")
    metrics = load_results(path)["metrics"]
    values = {key: None if metrics.get(key) is None else float(metrics[key]) for _, key in COLUMNS}
    try:
        values["s_per_iter"] = seconds_per_iteration(read_metrics(run_dir))
    except FileNotFoundError:
        values["s_per_iter"] = None
    return values


def _cell(values, digits):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def markdown(rows):
    """rows: [(label, [run values, ...])] -> Markdown table (mean ± sample std over runs)."""
    head = ["model", "runs"] + [title for title, _ in COLUMNS] + ["s / iteration"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, runs in rows:
        cells = [label, str(len(runs))]
        for _, key in COLUMNS:
            cells.append(_cell([r[key] for r in runs], 2 if key == "fp_lesions_per_case" else 1))
        cells.append(_cell([r["s_per_iter"] for r in runs], 2))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", metavar="LABEL=RUN_DIR[,RUN_DIR...]")
    parser.add_argument("--dataset", default="phantom_val", help="evaluated dataset name (default phantom_val)")
    parser.add_argument("--json", help="also write every run's values to this JSON file")
    args = parser.parse_args(argv)
    setup_cli(log_threads=False)

    rows, failures, per_run = [], [], {}
    for spec in args.models:
        label, sep, dirs = spec.partition("=")
        if not sep or not label or not dirs:
            parser.error(f"{spec!r}: expected LABEL=RUN_DIR[,RUN_DIR...]")
        runs = []
        for run_dir in dirs.split(","):
            try:
                values = read_run(run_dir, args.dataset)
            except (OSError, ValueError) as e:
                failures.append(str(e))
                continue
            runs.append(values)
            per_run[run_dir] = dict(values, label=label)
        if runs:
            rows.append((label, runs))
    print(markdown(rows))
    if args.json:
        from volumetric_attention.evaluation.results_io import write_json

        write_json(args.json, per_run)
    for failure in failures:
        print(f"study_table: skipped {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
