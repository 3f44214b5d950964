"""Plots of evaluation results (matplotlib, Agg canvas, PNG written atomically).

Both functions take one or more result dicts (the evaluators' summary JSON, see ``results_io.load_results``) so that
a baseline and a VA model can be drawn on one figure. ``froc_figure`` and ``dice_per_case_figure`` return the
figures that ``plot_froc`` and ``plot_dice_per_case`` write.
"""
import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .froc import AVG_FPS
from .results_io import atomic_write_bytes

__all__ = ["plot_froc", "plot_dice_per_case", "froc_figure", "dice_per_case_figure"]


def _labels(results, labels):
    if labels is None:
        labels = [r.get("label") or r.get("dataset") or f"result {i + 1}" for i, r in enumerate(results)]
    if len(labels) != len(results):
        raise ValueError(f"{len(labels)} labels for {len(results)} results")
    return list(labels)


def _percent(result):
    """Factor to percent of a result's per-case values and curve: result files without a ``unit`` used fractions."""
    return 1.0 if result.get("unit") == "percent" else 100.0


def _save(fig, path):
    # Figure + FigureCanvasAgg: no pyplot global state, works in any backend setting and in worker processes.
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


def plot_froc(results, labels, path):
    """FROC curves (sensitivity vs FPs/image, log x) of DeepLesion result dicts, with the reported FP rates marked.

    Args:
        results: list of result dicts with ``curve`` and ``metrics``; labels: names for the legend (or None).
        path: the PNG to write.
    Returns:
        ``path``.
    """
    return _save(froc_figure(results, labels), path)


def froc_figure(results, labels):
    """The :class:`Figure` that :func:`plot_froc` writes: one Axes, per result a step curve labelled
    ``"<label> (avg <sens_avg>)"`` and its ``sens@<fp>`` metrics as points, in the result's colour."""
    labels = _labels(results, labels)
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    for i, (res, label) in enumerate(zip(results, labels)):
        color = f"C{i % 10}"
        fp = np.asarray(res["curve"]["fp_per_image"], dtype=np.float64)
        sens = _percent(res) * np.asarray(res["curve"]["sensitivity"], dtype=np.float64)
        keep = fp > 0  # log axis
        metrics = res["metrics"]
        ax.step(fp[keep], sens[keep], where="post", color=color,
                label=f"{label} (avg {metrics.get('sens_avg', float('nan')):.1f})")
        pts = [(float(k[len("sens@"):]), v) for k, v in metrics.items() if k.startswith("sens@") and v is not None]
        if pts:
            ax.plot(*zip(*pts), "o", color=color, markersize=4)
    ax.set_xscale("log")
    ax.set_xlabel("false positives per image")
    ax.set_ylabel("sensitivity (%)")
    ax.set_ylim(0, 100)
    ax.set_xticks([0.125, 0.25] + list(AVG_FPS) + [8, 16])
    ax.set_xticklabels(["0.125", "0.25", "0.5", "1", "2", "4", "8", "16"])
    ax.set_xlim(0.1, 20)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("FROC")
    return fig


def plot_dice_per_case(results, labels, path):
    """Per-case Dice distributions (box plot + jittered points) for tumour and liver, one box per result.

    Args:
        results: list of LiTS result dicts with ``per_case``; labels: names for the legend (or None).
        path: the PNG to write.
    Returns:
        ``path``.
    """
    return _save(dice_per_case_figure(results, labels), path)


def dice_per_case_figure(results, labels):
    """The :class:`Figure` that :func:`plot_dice_per_case` writes: Axes "tumour" and "liver", per result (x = 1, 2,
    ..., tick labels ``labels``) a box, the cases as points and their mean as a dashed line."""
    labels = _labels(results, labels)
    fig = Figure(figsize=(4 + 2 * len(results), 4.5))
    rng = np.random.default_rng(0)  # fixed jitter: the same results give the same picture
    for j, (key, title) in enumerate((("tumour_dice", "tumour"), ("liver_dice", "liver"))):
        ax = fig.add_subplot(1, 2, j + 1)
        data = [_percent(r) * np.array([c[key] for c in r["per_case"] if c.get(key) is not None], dtype=np.float64)
                for r in results]
        ax.boxplot(data, showfliers=False, widths=0.5)
        for i, d in enumerate(data):
            ax.plot(i + 1 + rng.uniform(-0.15, 0.15, len(d)), d, "o", color=f"C{i}", alpha=0.6, markersize=4)
            if len(d):
                ax.plot([i + 0.7, i + 1.3], [d.mean()] * 2, "--", color="k", linewidth=1)
        ax.set_xticks(range(1, len(data) + 1))
        ax.set_xticklabels(labels)
        ax.set_ylim(-2, 102)
        ax.set_ylabel("Dice per case (%)")
        ax.set_title(f"{title} (dashed: mean)")
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
