#!/usr/bin/env python
"""The pretrained study's table and plot from its record of runs (tools/pretrained_study.sh).

    tools/learning_curve.py [RECORD.json] [--plot PNG]

RECORD (default ``projects/VolumetricAttention/docs/pretrained_study_runs.json``) holds every run's values under
``phantom_val`` (the 5 held-out cases) and ``phantom_train`` (the run's own training cases), keyed
``<column>/<row>_s<seed>``, and under ``scratch_k15_reference`` the scratch reference at 15 cases: the small-lesion
study's table (2000 iterations, 3 seeds; mean, std and runs, since its per-seed values were not kept). Prints, per
row and column, the tumour Dice per case and the FP lesions per case on the held-out cases (mean ± std over seeds,
the number of runs), the collapse check (the lowest share of its own training lesions any run found) and the
paper's thesis as the study states it; draws tumour Dice per case against the number of training cases, one line
per row, pretrained solid and scratch dashed.
"""
import argparse
import json
import os
import re
import statistics
import sys

from volumetric_attention.utils.cli import setup_cli

DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "projects", "VolumetricAttention", "docs")
# (column, training cases, pretrained)
COLUMNS = [("scratch_k3", 3, False), ("scratch_k15", 15, False), ("pretrained_k3", 3, True),
           ("pretrained_k15", 15, True)]
# a column's heading, after "scratch" or "pretrained, K cases": the scratch reference's own schedule
HEADING_NOTE = {"scratch_k15": " (2000 it.)"}
# (row of the record, its label); the scratch rows at 15 cases are the small-lesion study's of the same model
ROWS = [
    ("baseline", "baseline (2.5D)"),
    ("early_fusion", "early fusion, `centre` (`random` from scratch)"),
    ("early_fusion_inflate", "early fusion, `inflate`"),
    ("threedce", "3DCE"),
    ("va_paper", "VA as the paper fine-tunes it"),
    ("va_context_features", "VA + context features"),
    ("va_context_uniform", "VA + context features, uniform slice weights"),
    ("va_context_no_grad", "VA + context features, `CONTEXT_GRAD False`"),
]
# the VA rows the target compares; the uniform slice weights are the control without attention
VA_ROWS = ("va_paper", "va_context_features", "va_context_no_grad")
EARLY_FUSION_ROWS = ("early_fusion", "early_fusion_inflate")
RUN_KEY = re.compile(r"^(?P<column>[a-z0-9_]+)/(?P<row>[a-z0-9_]+)_s(?P<seed>\d+)$")


def collect(record, dataset="phantom_val"):
    """``{(column, row): [run values, ...]}`` of the record's runs on ``dataset``."""
    cells = {}
    for key, values in record.get(dataset, {}).items():
        m = RUN_KEY.match(key)
        if m:
            cells.setdefault((m.group("column"), m.group("row")), []).append(values)
    return cells


def summary(record, cells, column, row, key="tumour_dice_per_case"):
    """(mean, std, runs) of ``key`` in a cell: over its runs, or the reference's for scratch_k15; (None, None, 0)."""
    if column == "scratch_k15":
        ref = record.get("scratch_k15_reference", {}).get(row, {}).get(key)
        return (ref["mean"], ref["std"], ref["runs"]) if ref else (None, None, 0)
    values = [r.get(key) for r in cells.get((column, row), []) if r.get(key) is not None]
    if not values:
        return None, None, 0
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0), len(values)


def _text(mean, std, runs, digits):
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if runs > 1 else "")


def table(record, cells):
    """Markdown: tumour Dice per case / FP lesions per case per row and column, mean ± std, (runs) after each."""
    head = ["row"] + [f"{'pretrained' if pre else 'scratch'}, {k} cases{HEADING_NOTE.get(column, '')}"
                      for column, k, pre in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, label in ROWS:
        parts = [label]
        for column, _, _ in COLUMNS:
            dice, fp = summary(record, cells, column, row), summary(record, cells, column, row, "fp_lesions_per_case")
            parts.append(f"{_text(*dice, 1)} / {_text(*fp, 2)} ({dice[2]})" if dice[2] else "")
        if any(parts[1:]):
            lines.append("| " + " | ".join(parts) + " |")
    return "\n".join(lines)


def collapse_check(train_cells):
    """Lines naming, per cell, the lowest training-lesion recall of its runs (a run at 0 learnt no lesion)."""
    lines = []
    for (column, row), runs in sorted(train_cells.items()):
        recalls = [r.get("lesion_recall") for r in runs if r.get("lesion_recall") is not None]
        if recalls:
            lines.append(f"{column}/{row}: training lesions found, lowest run {min(recalls):.1f}%"
                         + ("  <- COLLAPSED" if min(recalls) == 0 else ""))
    return lines


def thesis(record, cells):
    """The study's target, from the means: pretrained with 3 cases, the best VA row >= 2 points above the best early
    fusion and above 3DCE, and pretraining lifting VA more than early fusion (pretrained minus scratch, 3 cases; VA +
    context features is the VA row that both columns have)."""
    def mean(column, row):
        return summary(record, cells, column, row)[0]

    va = {r: mean("pretrained_k3", r) for r in VA_ROWS if mean("pretrained_k3", r) is not None}
    ef = {r: mean("pretrained_k3", r) for r in EARLY_FUSION_ROWS if mean("pretrained_k3", r) is not None}
    threedce = mean("pretrained_k3", "threedce")
    if not va or not ef or threedce is None:
        return ["thesis: not every pretrained 3-case row has a run yet"]
    best_va, best_ef = max(va, key=va.get), max(ef, key=ef.get)
    lines = [f"pretrained, 3 cases: best VA ({best_va}) {va[best_va]:.1f}, best early fusion ({best_ef}) "
             f"{ef[best_ef]:.1f}, 3DCE {threedce:.1f}: VA - early fusion {va[best_va] - ef[best_ef]:+.1f} "
             f"(target >= +2.0), VA - 3DCE {va[best_va] - threedce:+.1f} (target >= +2.0)"]
    # the lift: of the VA row and the early fusion that the scratch column has too
    lifts = {}
    for row in ("va_context_features", "early_fusion"):
        pretrained, scratch = mean("pretrained_k3", row), mean("scratch_k3", row)
        if pretrained is not None and scratch is not None:
            lifts[row] = pretrained - scratch
    if len(lifts) < 2:
        lines.append("pretraining's lift at 3 cases: VA + context features or early fusion lacks a pretrained or a "
                     "scratch run")
    else:
        lines.append(f"pretraining's lift at 3 cases: va_context_features {lifts['va_context_features']:+.1f}, "
                     f"early fusion {lifts['early_fusion']:+.1f} (target: VA's larger)")
    return lines


def curves(record, cells):
    """The plot's lines: (row, label, pretrained, [(training cases, mean, std), ...]) for each row and start that
    has a cell."""
    lines = []
    for row, label in ROWS:
        for pretrained in (False, True):
            points = []
            for column, k, pre in COLUMNS:
                mean, std, _ = summary(record, cells, column, row) if pre == pretrained else (None, None, 0)
                if mean is not None:
                    points.append((k, mean, std))
            if points:
                lines.append((row, label, pretrained, points))
    return lines


def plot(record, cells, path):
    """Tumour Dice per case (mean ± std over seeds) against training cases; pretrained solid, scratch dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from volumetric_attention.utils.atomic_io import atomic_open

    fig, ax = plt.subplots(figsize=(10.5, 5))
    colours = dict(zip([r for r, _ in ROWS], plt.get_cmap("tab10").colors))
    for row, label, pretrained, points in curves(record, cells):
        ks, means, stds = zip(*points)
        ax.errorbar(ks, means, yerr=stds, color=colours[row], linestyle="-" if pretrained else "--",
                    marker="o" if pretrained else "s", capsize=3,
                    label=f"{label.replace('`', '')}, {'pretrained' if pretrained else 'scratch'}")
    ax.set_xlabel("training cases")
    ax.set_ylabel("tumour Dice per case (held-out cases)")
    ax.set_xticks([3, 15])
    ax.set_title("Pretrained study: zcontext_small phantoms, mean ± std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the lines, not over them
    fig.tight_layout()
    with atomic_open(path, "wb") as (f, _):
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return path


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except ValueError as e:
            raise ValueError(f"{path}: not JSON ({e})") from None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("record", nargs="?", default=os.path.join(DOCS, "pretrained_study_runs.json"))
    parser.add_argument("--plot", metavar="PNG", help="also draw the learning curves to this PNG")
    args = parser.parse_args(argv)
    setup_cli(log_threads=False)
    try:
        record = _read_json(args.record)
    except (OSError, ValueError) as e:
        print(f"learning_curve: {e}", file=sys.stderr)
        return 1
    cells = collect(record)
    print("Tumour Dice per case / FP lesions per case on the 5 held-out cases, mean ± std (runs):")
    print(table(record, cells))
    print("\nCollapse check (the runs' own training cases):")
    print("\n".join(collapse_check(collect(record, "phantom_train"))))
    print("\n" + "\n".join(thesis(record, cells)))
    if args.plot:
        print(f"plot: {plot(record, cells, args.plot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
