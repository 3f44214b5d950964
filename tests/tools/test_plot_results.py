"""tools/plot_results.py (baseline vs VA on one figure) and the plots it draws, read back from the figures."""
import os

import numpy as np
import pytest

from volumetric_attention.evaluation import plot_dice_per_case, plot_froc, plots
from volumetric_attention.evaluation.plots import dice_per_case_figure, froc_figure
from volumetric_attention.evaluation.results_io import write_json

PNG = b"\x89PNG\r\n\x1a\n"


def _lits(seed, percent=False):
    rng = np.random.default_rng(seed)
    scale = 100.0 if percent else 1.0
    per_case = [{"case_id": f"c{i}", "tumour_dice": float(rng.uniform()) * scale,
                 "liver_dice": float(rng.uniform(0.9, 1)) * scale} for i in range(6)]
    per_case[2]["tumour_dice"] = None  # a case without tumour: no tumour Dice, not plotted
    result = {"type": "lits", "metrics": {"tumour_dice_per_case": 60.0 + seed, "lesion_dice_large": float("nan")},
              "per_case": per_case}
    if percent:
        result["unit"] = "percent"
    return result


def _deeplesion(shift, percent=False):
    fp = np.array([0.0, 0.1, 0.3, 0.6, 1.2, 3.0, 9.0, 20.0])
    sens = np.clip(0.4 + 0.12 * np.log2(fp + 0.2) + shift, 0, 1)
    scale = 100.0 if percent else 1.0
    result = {"type": "deeplesion",
              "metrics": {"sens@0.5": 60.0 + 100 * shift, "sens@1": 70.0 + 100 * shift, "sens@2": None,
                          "sens_avg": 68.0 + 100 * shift, "AP50": 50.0},
              "curve": {"fp_per_image": fp.tolist(), "sensitivity": (scale * sens).tolist()}}
    if percent:
        result["unit"] = "percent"
    return result


def _expected_froc(result):
    """(x, y in percent) of a result's curve on the log axis, and its reported points, computed here."""
    fp = np.array(result["curve"]["fp_per_image"])
    sens = np.array(result["curve"]["sensitivity"]) * (1.0 if result.get("unit") == "percent" else 100.0)
    points = sorted((float(k[len("sens@"):]), v) for k, v in result["metrics"].items()
                    if k.startswith("sens@") and v is not None)
    return fp[fp > 0], sens[fp > 0], points


def _check_froc(fig, results, labels):
    (ax,) = fig.axes
    curves = [line for line in ax.lines if line.get_drawstyle() == "steps-post"]
    markers = [line for line in ax.lines if line.get_marker() == "o"]
    assert len(curves) == len(markers) == len(results)
    for curve, marker, result, label in zip(curves, markers, results, labels):
        x, y, points = _expected_froc(result)
        np.testing.assert_allclose(curve.get_xdata(), x)
        np.testing.assert_allclose(curve.get_ydata(), y)
        assert curve.get_label() == f"{label} (avg {result['metrics']['sens_avg']:.1f})"
        np.testing.assert_allclose(np.column_stack([marker.get_xdata(), marker.get_ydata()]), points)
        assert marker.get_color() == curve.get_color()
    assert len({c.get_color() for c in curves}) == len(results)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [c.get_label() for c in curves]
    assert ax.get_xscale() == "log" and ax.get_ylabel() == "sensitivity (%)"
    assert ax.get_xlabel() == "false positives per image"


def _check_dice(fig, results, labels):
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["tumour (dashed: mean)", "liver (dashed: mean)"]
    for ax, key in zip(axes, ("tumour_dice", "liver_dice")):
        assert [t.get_text() for t in ax.get_xticklabels()] == list(labels)
        np.testing.assert_allclose(ax.get_xticks(), np.arange(1, len(results) + 1))
        points = [line for line in ax.lines if line.get_marker() == "o"]
        means = [line for line in ax.lines if line.get_linestyle() == "--"]
        assert len(points) == len(means) == len(results)
        for i, (result, pts, mean) in enumerate(zip(results, points, means)):
            scale = 1.0 if result.get("unit") == "percent" else 100.0
            values = np.array([c[key] * scale for c in result["per_case"] if c[key] is not None])
            np.testing.assert_allclose(pts.get_ydata(), values)
            assert np.all(np.abs(np.asarray(pts.get_xdata()) - (i + 1)) <= 0.15)
            np.testing.assert_allclose(mean.get_ydata(), [values.mean()] * 2)
            np.testing.assert_allclose(mean.get_xdata(), [i + 0.7, i + 1.3])
            # the box: quartiles over x = i + 1 +- 0.25, the median across it
            lines = [(np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)) for line in ax.lines]
            q1, median, q3 = np.percentile(values, [25, 50, 75])
            box = [y for x, y in lines if len(x) == 5 and np.allclose(x, i + 1 + np.array([-1, 1, 1, -1, -1]) / 4)]
            np.testing.assert_allclose(box, [[q1, q1, q3, q3, q1]])
            across = [y for x, y in lines if len(x) == 2 and np.allclose(x, [i + 0.75, i + 1.25])]
            np.testing.assert_allclose(across, [[median, median]])


def test_froc_figure_draws_each_results_curve_points_and_legend():
    results = [_deeplesion(0.0), _deeplesion(0.07, percent=True)]
    _check_froc(froc_figure(results, ["baseline", "VA"]), results, ["baseline", "VA"])
    # default legend names: the result's label, else its dataset, else its position
    named = [dict(results[0], label="run a"), dict(results[1], dataset="deeplesion_test")]
    _check_froc(froc_figure(named, None), named, ["run a", "deeplesion_test"])
    _check_froc(froc_figure(results, None), results, ["result 1", "result 2"])
    with pytest.raises(ValueError, match="labels"):
        froc_figure(results, ["only one"])


def test_dice_figure_draws_each_results_cases_box_and_mean():
    results = [_lits(0), _lits(1, percent=True)]
    _check_dice(dice_per_case_figure(results, ["a", "b"]), results, ["a", "b"])
    # the checks see the data: another result's cases do not pass for these
    with pytest.raises(AssertionError):
        _check_dice(dice_per_case_figure([results[1], results[0]], ["a", "b"]), results, ["a", "b"])


def test_plot_functions_write_pngs_of_those_figures(tmp_path, monkeypatch):
    saved = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: saved.append(fig) or save(fig, path))
    froc, lits = [_deeplesion(0)], [_lits(0), _lits(1)]
    paths = (plot_froc(froc, None, str(tmp_path / "f.png")),
             plot_dice_per_case(lits, ["a", "b"], str(tmp_path / "d.png")))
    assert paths == (str(tmp_path / "f.png"), str(tmp_path / "d.png"))
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == PNG
    _check_froc(saved[0], froc, ["result 1"])
    _check_dice(saved[1], lits, ["a", "b"])


def test_cli_baseline_vs_va(tmp_path, capsys, load_tool, monkeypatch):
    tool = load_tool("plot_results")
    saved = {}
    save = plots._save
    monkeypatch.setattr(plots, "_save",
                        lambda fig, path: saved.update({os.path.basename(path): fig}) or save(fig, path))
    results = {}
    for name, shift in (("baseline", 0.0), ("va", 0.05)):
        results[name] = (_deeplesion(shift), _lits(int(shift * 100)))
        write_json(str(tmp_path / name / "deeplesion_summary.json"), results[name][0])
        write_json(str(tmp_path / name / "lits_summary.json"), results[name][1])
    out = tmp_path / "plots"
    rc = tool.main([str(tmp_path / "baseline" / "deeplesion_summary.json"),
                    str(tmp_path / "va" / "deeplesion_summary.json"), "--labels", "baseline", "VA", "--out", str(out)])
    assert rc == 0
    with open(out / "froc.png", "rb") as f:
        assert f.read(8) == PNG
    _check_froc(saved["froc.png"], [results["baseline"][0], results["va"][0]], ["baseline", "VA"])
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["baseline", "VA"]
    assert [line.split() for line in table if line.startswith("sens_avg")] == [["sens_avg", "68.00", "73.00"]]
    # without --labels: the folders the result files are in
    rc = tool.main([str(tmp_path / "baseline" / "lits_summary.json"), str(tmp_path / "va" / "lits_summary.json"),
                    "--out", str(out)])
    assert rc == 0 and os.path.isfile(out / "dice_per_case.png")
    _check_dice(saved["dice_per_case.png"], [results["baseline"][1], results["va"][1]], ["baseline", "va"])
    # mixed types and unreadable files: one-line error, non-zero exit
    assert tool.main([str(tmp_path / "baseline" / "lits_summary.json"),
                      str(tmp_path / "va" / "deeplesion_summary.json"), "--out", str(out)]) == 2
    assert tool.main([str(tmp_path / "missing.json"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("plot_results: error:") for line in err)
    with pytest.raises(SystemExit):
        tool.main([str(tmp_path / "baseline" / "lits_summary.json"), "--labels", "a", "b", "--out", str(out)])
