#!/usr/bin/env python
"""Plot one or two evaluation result files (e.g. baseline vs VA) on one figure.

    tools/plot_results.py RESULT_A [RESULT_B] [--labels baseline VA] --out DIR

RESULT_* are the evaluators' summary files (``lits_summary.json`` or ``deeplesion_summary.json``), all of one type.
LiTS results give ``dice_per_case.png`` (tumour and liver Dice per case); DeepLesion results give ``froc.png``.
A metrics table is printed, one column per result.
"""
import argparse
import os
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="one or two summary JSON files written by the evaluators")
    parser.add_argument("--labels", nargs="+", help="legend names, one per result file (default: file names)")
    parser.add_argument("--out", required=True, help="folder for the PNG files")
    args = parser.parse_args(argv)

    from volumetric_attention.evaluation import load_results, plot_dice_per_case, plot_froc
    from volumetric_attention.utils.cli import setup_cli

    setup_cli(log_threads=False)

    if len(args.results) > 2:
        parser.error("give one or two result files")
    # default names: the folder each result file sits in (an evaluation's output folder)
    labels = args.labels or [os.path.basename(os.path.dirname(os.path.abspath(p))) for p in args.results]
    if len(labels) != len(args.results):
        parser.error(f"--labels has {len(labels)} names for {len(args.results)} result files")
    try:
        results = [load_results(p) for p in args.results]
    except (OSError, ValueError) as e:
        print(f"plot_results: error: {e}", file=sys.stderr)
        return 2
    kinds = {r["type"] for r in results}
    if len(kinds) != 1:
        print(f"plot_results: error: cannot compare result types {sorted(kinds)} on one figure", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    if kinds == {"lits"}:
        path = plot_dice_per_case(results, labels, os.path.join(args.out, "dice_per_case.png"))
    else:
        path = plot_froc(results, labels, os.path.join(args.out, "froc.png"))

    keys = [k for k in results[0]["metrics"] if "/" not in k]
    width = max(len(k) for k in keys)
    print(" " * width + "".join(f"{label:>14}" for label in labels))
    for k in keys:
        values = [r["metrics"].get(k) for r in results]
        print(f"{k:<{width}}" + "".join(f"{v:>14.2f}" if isinstance(v, (int, float)) else f"{'-':>14}"
                                         for v in values))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
