"""tools/attention_stats.py: slice weights and spatial gates per region, on a tiny prepared phantom set."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from volumetric_attention import get_va_cfg
from volumetric_attention.engine import VACheckpointer

from detectron2.modeling import build_model

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "projects" / "VolumetricAttention" / "configs" / "Phantom" / "semantic_R_18_FPN_GN_va_bag3.yaml"
TINY = ["MODEL.FPN.OUT_CHANNELS", "32", "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32", "INPUT.MIN_SIZE_TEST", "64",
        "INPUT.MAX_SIZE_TEST", "64", "INPUT.CT.SLICE_SPACING", "2.0"]


@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory, load_tool):
    root = tmp_path_factory.mktemp("attention_stats")
    assert load_tool("make_phantoms").main([
        "--out", str(root / "phantom"), "--cache", str(root / "cache" / "phantom"), "--num-cases", "4",
        "--slices", "16", "--size", "64", "--slice-thickness", "2.0", "--slice-spacing", "2.0",
    ]) == 0
    return root


def test_region_masks_split_liver_into_plain_and_lesion_like(load_tool):
    tool = load_tool("attention_stats")
    labels = np.zeros((20, 20), dtype=np.int64)
    labels[2:18, 2:18] = 1
    labels[3:6, 3:6] = 2
    image = np.full((20, 20), 100.0)
    image[10:15, 10:15] = 160.0  # a bright "vessel" inside the liver
    masks = tool.region_masks(labels, image, lesion_like=30.0)
    assert masks["lesion"].sum() == 9 and masks["background"].sum() == 400 - 256
    vessel = masks["lesion_like_liver"]
    assert vessel[11:14, 11:14].all() and not vessel[:8].any()
    assert not (masks["liver"] & vessel).any() and (masks["liver"] | vessel).sum() == 256 - 9


@pytest.mark.parametrize("bias", [3.0, 0.0])
def test_gates_at_initialisation_equal_sigmoid_of_the_bias(phantom_root, tmp_path, monkeypatch, bias, load_tool):
    monkeypatch.setenv("VA_DATASETS", str(phantom_root))
    opts = TINY + ["MODEL.VA.GATE_BIAS_INIT", str(bias)]
    torch.manual_seed(0)
    model = build_model(get_va_cfg(str(CONFIG), opts))
    VACheckpointer(model, str(tmp_path)).save("model_final")
    out = tmp_path / "stats.json"
    tool = load_tool("attention_stats")
    code = tool.main(["--config-file", str(CONFIG), "--num-slices", "6", "--json", str(out)] + opts
                     + ["MODEL.WEIGHTS", str(tmp_path / "model_final.pth")])
    assert code == 0
    stats = json.loads(out.read_text())
    assert stats["dataset"] == "phantom_val" and stats["slices"] >= 1
    assert set(stats["levels"]) == {"p2", "p3", "p4", "p5"}  # the levels the semantic FPN head reads
    expected = 1.0 / (1.0 + math.exp(-bias))
    assert "spatial_gate_lesion" in stats["levels"]["p2"]  # coarse levels may have no cell centred on a lesion
    for values in stats["levels"].values():
        # the last gate convs start with tiny weights: every gate is sigmoid(bias) up to ~1e-2
        gates = [values[f"spatial_gate_{r}"] for r in tool.REGIONS if f"spatial_gate_{r}" in values]
        assert gates and all(abs(g - expected) < 0.01 for g in gates)
        for kind in ("channel", "spatial"):
            # what VAStatsHook records in training, over the same slices
            assert abs(values[f"{kind}_gate_mean"] - expected) < 0.01 and 0.0 <= values[f"{kind}_gate_std"] < 0.01
            assert 1.0 / 3 - 1e-6 <= values[f"{kind}_max_weight"] <= 1.0 + 1e-6
            assert 0.0 <= values[f"{kind}_target_weight"] <= values[f"{kind}_max_weight"] + 1e-6
            assert 0.0 <= values[f"{kind}_context_positive"] <= 1.0


def test_baseline_config_is_refused(phantom_root, monkeypatch, capsys, load_tool):
    monkeypatch.setenv("VA_DATASETS", str(phantom_root))
    assert load_tool("attention_stats").main(["--config-file", str(CONFIG), "MODEL.VA.ENABLED", "False"]) == 2
    assert "no VA in the backbone" in capsys.readouterr().err
