"""tools/plot_results.py (baseline vs VA on one figure) and the plots it draws."""
import os

import numpy as np
import pytest

from volumetric_attention.evaluation import plot_dice_per_case, plot_froc
from volumetric_attention.evaluation.results_io import write_json

def _lits(seed):
    rng = np.random.default_rng(seed)
    per_case = [{"case_id": f"c{i}", "tumour_dice": float(rng.uniform()), "liver_dice": float(rng.uniform(0.9, 1))}
                for i in range(6)]
    return {"type": "lits", "metrics": {"tumour_dice_per_case": 60.0 + seed, "lesion_dice_large": float("nan")},
            "per_case": per_case}


def _deeplesion(shift):
    fp = np.array([0.0, 0.1, 0.3, 0.6, 1.2, 3.0, 9.0, 20.0])
    sens = np.clip(0.4 + 0.12 * np.log2(fp + 0.2) + shift, 0, 1)
    return {"type": "deeplesion", "metrics": {"sens@0.5": 60.0, "sens@1": 70.0, "sens_avg": 68.0, "AP50": 50.0},
            "curve": {"fp_per_image": fp.tolist(), "sensitivity": sens.tolist()}}


def test_plot_functions_write_pngs(tmp_path):
    for path in (plot_froc([_deeplesion(0)], None, str(tmp_path / "f.png")),
                 plot_dice_per_case([_lits(0), _lits(1)], ["a", "b"], str(tmp_path / "d.png"))):
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(path) > 5000


def test_cli_baseline_vs_va(tmp_path, capsys, load_tool):
    tool = load_tool("plot_results")
    for name, shift in (("baseline", 0.0), ("va", 0.05)):
        write_json(str(tmp_path / name / "deeplesion_summary.json"), _deeplesion(shift))
        write_json(str(tmp_path / name / "lits_summary.json"), _lits(int(shift * 100)))
    out = tmp_path / "plots"
    rc = tool.main([str(tmp_path / "baseline" / "deeplesion_summary.json"),
                    str(tmp_path / "va" / "deeplesion_summary.json"), "--labels", "baseline", "VA", "--out", str(out)])
    assert rc == 0 and os.path.getsize(out / "froc.png") > 5000
    assert "baseline" in capsys.readouterr().out
    rc = tool.main([str(tmp_path / "baseline" / "lits_summary.json"), str(tmp_path / "va" / "lits_summary.json"),
                    "--out", str(out)])
    assert rc == 0 and os.path.getsize(out / "dice_per_case.png") > 5000
    # mixed types and unreadable files: one-line error, non-zero exit
    assert tool.main([str(tmp_path / "baseline" / "lits_summary.json"),
                      str(tmp_path / "va" / "deeplesion_summary.json"), "--out", str(out)]) == 2
    assert tool.main([str(tmp_path / "missing.json"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("plot_results: error:") for line in err)
    with pytest.raises(SystemExit):
        tool.main([str(tmp_path / "baseline" / "lits_summary.json"), "--labels", "a", "b", "--out", str(out)])
