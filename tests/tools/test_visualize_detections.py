"""tools/visualize_detections.py on a tiny synthetic DeepLesion and a detector trained for 2 iterations: one PNG per
key slice and a montage, the ground-truth boxes drawn where the annotations put them, predictions drawn, and
one-line errors for bad input."""
import io
from pathlib import Path

import _tiny
import cv2
import numpy as np
import pytest
import torch

from volumetric_attention.config import get_va_cfg
from volumetric_attention.data.deeplesion import prepare_deeplesion
from volumetric_attention.data.phantom_deeplesion import write_deeplesion_phantoms
from volumetric_attention.engine import VATrainer

from detectron2.data import DatasetCatalog

ROOT = Path(__file__).resolve().parents[2]
CONFIG = (ROOT / "projects" / "VolumetricAttention" / "configs" / "DeepLesion"
          / "faster_rcnn_R_18_FPN_GN_va_context_bag3.yaml")
# the tiny model at 64 px; every detection kept, so that an untrained model's boxes are drawn too
MODEL_OPTS = _tiny.FROM_SCRATCH_R18 + _tiny.MODEL + _tiny.INPUT + ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0]
SCALE = 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(VA_DATASETS root, checkpoint): 3 series of 64 x 64 slices prepared with the config, 2 training iterations."""
    root = tmp_path_factory.mktemp("va_datasets")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VA_DATASETS", str(root))
        cfg = get_va_cfg(str(CONFIG), MODEL_OPTS + _tiny.TRAIN + [
            "SOLVER.MAX_ITER", 2, "SOLVER.WARMUP_ITERS", 0, "SOLVER.STEPS", "()", "DATASETS.TEST", "()",
            "MODEL.VA.STATS_PERIOD", 0, "OUTPUT_DIR", str(root / "output")])
        write_deeplesion_phantoms(root / "DeepLesion", num_series=3, seed=1, size=64, slices=16, slice_interval=2.0,
                                  noisy_share=0.0)
        result = prepare_deeplesion(root / "DeepLesion", root / "cache" / "deeplesion", cfg.INPUT.CT.HU_WINDOW,
                                    cfg.INPUT.CT.SLICE_SPACING, cfg.INPUT.CT.CONTEXT_SLICES, stream=io.StringIO())
        assert result.ok
        torch.manual_seed(0)
        trainer = VATrainer(cfg)
        trainer.resume_or_load(resume=False)
        trainer.train()
        yield root, root / "output" / "model_final.pth"


def _run(tool, weights, out, *extra):
    opts = [str(v) for v in MODEL_OPTS]
    return tool.main(["--config-file", str(CONFIG), "--weights", str(weights), "--output", str(out), *extra, *opts])


def _green(image_bgr):
    b, g, r = (image_bgr[..., k].astype(int) for k in range(3))
    return g - np.maximum(r, b) > 100


def _red(image_bgr):
    b, g, r = (image_bgr[..., k].astype(int) for k in range(3))
    return r - np.maximum(g, b) > 100


def test_ground_truth_boxes_are_drawn_where_the_annotations_are(trained, tmp_path, load_tool, monkeypatch, capsys):
    """Without predictions (--top 0, nothing drawn over them): green pixels on every side of every annotated box and
    nowhere else."""
    root, weights = trained
    monkeypatch.setenv("VA_DATASETS", str(root))
    dicts = DatasetCatalog.get("deeplesion_val")
    cases = [dicts[-1]["case_id"], dicts[0]["case_id"]]
    out = tmp_path / "overlays"
    assert _run(load_tool("visualize_detections"), weights, out, "--dataset", "deeplesion_val", "--top", "0",
                "--cases", ",".join(cases)) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / f"{c}.png") for c in cases] + [str(out / "montage.png")]
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{c}.png" for c in cases] + ["montage.png"])

    for case in cases:
        d = next(d for d in dicts if d["case_id"] == case)
        image = cv2.imread(str(out / f"{case}.png"))
        assert image.shape == (SCALE * d["height"], SCALE * d["width"], 3)
        assert not _red(image).any()
        green = _green(image)
        near_an_edge = np.zeros_like(green)
        for a in d["annotations"]:
            x0, y0, x1, y1 = (int(round(SCALE * v)) for v in a["bbox"])
            band = np.zeros_like(green)
            band[max(y0 - 2, 0):y1 + 3, max(x0 - 2, 0):x1 + 3] = True
            band[y0 + 3:y1 - 2, x0 + 3:x1 - 2] = False  # the box's outline, 2 px either side
            near_an_edge |= band
            # every side of the box is drawn in green
            for side in (green[max(y0 - 2, 0):y0 + 3, x0:x1], green[y1 - 2:y1 + 3, x0:x1],
                         green[y0:y1, max(x0 - 2, 0):x0 + 3], green[y0:y1, x1 - 2:x1 + 3]):
                assert side.any(axis=0 if side.shape[0] < side.shape[1] else 1).mean() > 0.9, case
        assert not (green & ~near_an_edge).any()  # green only on ground-truth boxes
    assert cv2.imread(str(out / "montage.png")).size > 0


def test_predictions_on_the_default_dataset(trained, tmp_path, load_tool, monkeypatch):
    """The config's DATASETS.TEST, --count capped by its size; the untrained model's top boxes are drawn in red."""
    root, weights = trained
    monkeypatch.setenv("VA_DATASETS", str(root))
    out = tmp_path / "overlays"
    assert _run(load_tool("visualize_detections"), weights, out, "--count", "5") == 0
    names = {d["case_id"] + ".png" for d in DatasetCatalog.get("deeplesion_test")}
    assert {p.name for p in out.iterdir()} == names | {"montage.png"} and len(names) == 1
    image = cv2.imread(str(out / names.pop()))
    assert _red(image).sum() > 20 and _green(image).any()


@pytest.mark.parametrize("bad, expected", [
    (["--cases", "no_such_case"], "no_such_case not in the dataset"),
    (["--dataset", "no_such_dataset"], "dataset no_such_dataset is not registered"),
    (["--count", "0"], "--count must be at least 1"),
    (["--weights", "missing.pth"], "missing.pth"),
])
def test_bad_input_is_one_line(trained, tmp_path, load_tool, monkeypatch, capsys, bad, expected):
    root, weights = trained
    monkeypatch.setenv("VA_DATASETS", str(root))
    extra = bad if bad[0] != "--weights" else []
    weights = tmp_path / bad[1] if bad[0] == "--weights" else weights
    assert _run(load_tool("visualize_detections"), weights, tmp_path / "out", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_unprepared_dataset_is_one_line(tmp_path, load_tool, monkeypatch, capsys):
    monkeypatch.setenv("VA_DATASETS", str(tmp_path))
    assert _run(load_tool("visualize_detections"), tmp_path / "model.pth", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: dataset deeplesion_test") and len(err.splitlines()) == 1, err
