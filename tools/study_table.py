#!/usr/bin/env python
"""Summarise training runs over seeds: one Markdown row per model, mean ± std over its runs (seeds).

    tools/study_table.py LABEL=RUN_DIR[,RUN_DIR...] [LABEL=...] [--kind lits|deeplesion] [--dataset NAME] \
        [--json OUT.json]

Each RUN_DIR is a ``train_net.py`` OUTPUT_DIR: its evaluation ``inference/<dataset>/<kind>_summary.json`` gives
the accuracy columns and detectron2's ``metrics.json`` the median seconds per training iteration. ``--kind lits``
(default; dataset phantom_val): the LiTS evaluator's 3D metrics, lesion figures in percent, FP lesions per case.
``--kind deeplesion`` (dataset deeplesion_test): the FROC evaluator's sensitivity at 0.5, 1, 2 and 4 FPs per image
and their mean, AP50, the mean sensitivity per lesion size (long diameter) and the share of the FPs that lie on
vessels (when the runs were scored with ``TEST.CT.LOOKALIKES``), all in percent; ``--froc-plot PNG`` draws each
row's FROC curve, the mean of its runs' curves, on one plot. ``--json`` also writes every run's values (atomically);
``--record FILE`` merges them into FILE under the dataset's name, keyed ``<parent folder>/<run folder>`` and rounded
to 4 decimals, so that a study keeps each run's values as it finishes (a lock on FILE's folder serialises writers).
"""
import argparse
import fcntl
import json
import os
import statistics
import sys

from volumetric_attention.engine.run_metrics import read_metrics, seconds_per_iteration
from volumetric_attention.utils.cli import setup_cli

# (column title, key of the LiTS evaluator's summary; percent except FP lesions per case)
LITS_COLUMNS = [
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
# (column title, key of the DeepLesion FROC evaluator's summary, evaluation/deeplesion_evaluator.py; percent)
DEEPLESION_COLUMNS = [
    ("sens@0.5", "sens@0.5"),
    ("sens@1", "sens@1"),
    ("sens@2", "sens@2"),
    ("sens@4", "sens@4"),
    ("mean sens", "sens_avg"),
    ("AP50", "AP50"),
    ("sens <10 mm", "sens_avg/<10mm"),
    ("sens 10-30 mm", "sens_avg/10to30mm"),
    ("sens >30 mm", "sens_avg/>30mm"),
    # share of the FPs allowed at 1 and 4 FPs/image that lie on a look-alike (TEST.CT.LOOKALIKES: vessels)
    ("FP on vessels @1", "lookalike_fp@1"),
    ("FP on vessels @4", "lookalike_fp@4"),
]
# --kind: (summary file, columns, default --dataset)
KINDS = {
    "lits": ("lits_summary.json", LITS_COLUMNS, "phantom_val"),
    "deeplesion": ("deeplesion_summary.json", DEEPLESION_COLUMNS, "deeplesion_test"),
}


def read_run(run_dir, dataset, kind="lits"):
    """The run's values by summary key (as the evaluator wrote them) plus ``s_per_iter``."""
    from volumetric_attention.evaluation import load_results

    summary, columns, _ = KINDS[kind]
    path = os.path.join(run_dir, "inference", dataset, summary)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no {kind} evaluation in this run (did it finish?)")
    metrics = load_results(path)["metrics"]
    values = {key: None if metrics.get(key) is None else float(metrics[key]) for _, key in columns}
    try:
        values["s_per_iter"] = seconds_per_iteration(read_metrics(run_dir))
    except FileNotFoundError:
        values["s_per_iter"] = None
    return values


def mean_froc(summaries, fps):
    """The mean over runs of their FROC curves at the FP rates ``fps`` (a row's curve for ``--froc-plot``).

    Each summary's ``curve`` holds the sensitivity at the top of each vertical step; the sensitivity at f FPs/image
    is that of the last step at most f (the evaluator's definition), 0 before the first.
    """
    import numpy as np

    fps = np.asarray(fps, dtype=np.float64)
    curves = []
    for s in summaries:
        fp = np.asarray(s["curve"]["fp_per_image"], dtype=np.float64)
        sens = np.asarray(s["curve"]["sensitivity"], dtype=np.float64)
        k = np.searchsorted(fp, fps + 1e-9, side="right") - 1
        curves.append(np.where(k >= 0, sens[np.clip(k, 0, None)] if len(sens) else 0.0, 0.0))
    return np.mean(curves, axis=0)


def plot_rows(rows, dataset, path):
    """One FROC curve per row (the mean of its runs') on one plot, the mean sens@f of its runs marked."""
    import numpy as np

    from volumetric_attention.evaluation import load_results, plot_froc

    grid = np.geomspace(0.05, 32.0, 200)
    results, labels = [], []
    for label, run_dirs in rows:
        summaries = [load_results(os.path.join(d, "inference", dataset, KINDS["deeplesion"][0])) for d in run_dirs]
        metrics = {k: statistics.fmean(float(s["metrics"][k]) for s in summaries)
                   for k in summaries[0]["metrics"] if k.startswith("sens@") or k == "sens_avg"}
        results.append({"unit": "percent", "metrics": metrics,
                        "curve": {"fp_per_image": grid, "sensitivity": mean_froc(summaries, grid)}})
        labels.append(f"{label} ({len(run_dirs)} run{'' if len(run_dirs) == 1 else 's'})")
    return plot_froc(results, labels, path)


def record_runs(path, dataset, per_run):
    """Merge ``per_run`` ({run_dir: values}) into the JSON file ``path`` as ``{dataset: {"<parent>/<run>": values}}``
    (values rounded to 4 decimals), atomically and under an exclusive lock on the file's folder."""
    from volumetric_attention.evaluation.results_io import write_json

    folder = os.path.dirname(os.path.abspath(path))
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        record = {}
        if os.path.isfile(path):
            with open(path) as f:
                record = json.load(f)
        runs = record.setdefault(dataset, {})
        for run_dir, values in per_run.items():
            key = "/".join(os.path.normpath(os.path.abspath(run_dir)).split(os.sep)[-2:])
            runs[key] = {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()}
        record[dataset] = dict(sorted(runs.items()))
        write_json(path, record)
    finally:
        os.close(fd)


def _cell(values, digits):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def markdown(rows, columns=LITS_COLUMNS):
    """rows: [(label, [run values, ...])] -> Markdown table (mean ± sample std over runs) of ``columns``."""
    head = ["model", "runs"] + [title for title, _ in columns] + ["s / iteration"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, runs in rows:
        cells = [label, str(len(runs))]
        for _, key in columns:
            cells.append(_cell([r[key] for r in runs], 2 if key == "fp_lesions_per_case" else 1))
        cells.append(_cell([r["s_per_iter"] for r in runs], 2))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", metavar="LABEL=RUN_DIR[,RUN_DIR...]")
    parser.add_argument("--kind", default="lits", choices=sorted(KINDS),
                        help="evaluation summary to read: lits (3D Dice, lesions) or deeplesion (FROC)")
    parser.add_argument("--dataset", help="evaluated dataset name (default: phantom_val for lits, deeplesion_test "
                                          "for deeplesion)")
    parser.add_argument("--json", help="also write every run's values to this JSON file")
    parser.add_argument("--record", metavar="FILE", help="merge every run's values into this study record (JSON)")
    parser.add_argument("--froc-plot", metavar="PNG", help="deeplesion: write the rows' mean FROC curves to this PNG")
    args = parser.parse_args(argv)
    setup_cli(log_threads=False)
    _, columns, default_dataset = KINDS[args.kind]
    dataset = args.dataset or default_dataset

    if args.froc_plot and args.kind != "deeplesion":
        parser.error("--froc-plot needs --kind deeplesion")
    rows, failures, per_run, row_dirs = [], [], {}, []
    for spec in args.models:
        label, sep, dirs = spec.partition("=")
        if not sep or not label or not dirs:
            parser.error(f"{spec!r}: expected LABEL=RUN_DIR[,RUN_DIR...]")
        runs = []
        for run_dir in dirs.split(","):
            try:
                values = read_run(run_dir, dataset, args.kind)
            except (OSError, ValueError) as e:
                failures.append(str(e))
                continue
            runs.append(values)
            per_run[run_dir] = dict(values, label=label)
        if runs:
            rows.append((label, runs))
            row_dirs.append((label, [d for d in dirs.split(",") if d in per_run]))
    print(markdown(rows, columns))
    if args.froc_plot and row_dirs:
        print(f"FROC curves: {plot_rows(row_dirs, dataset, args.froc_plot)}")
    if args.json:
        from volumetric_attention.evaluation.results_io import write_json

        write_json(args.json, per_run)
    if args.record and per_run:
        record_runs(args.record, dataset, per_run)
    for failure in failures:
        print(f"study_table: skipped {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
