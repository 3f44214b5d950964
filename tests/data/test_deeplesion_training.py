"""The CPU-sized DeepLesion configs end to end: a generated DeepLesion-layout folder is prepared with the config,
a model trains a few iterations and the FROC evaluator scores the test split."""
import json
import os
from pathlib import Path

import _deeplesion_fakes as fakes
import _tiny
import pytest
import torch

from volumetric_attention.config import get_va_cfg
from volumetric_attention.engine.trainer import VATrainer

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "projects" / "VolumetricAttention" / "configs" / "DeepLesion"
FPS = ("0.5", "1", "2", "4", "8", "16")


@pytest.mark.slow
@pytest.mark.parametrize("config", ["faster_rcnn_R_18_FPN_GN_baseline.yaml", "faster_rcnn_R_18_FPN_GN_va_bag3.yaml"])
def test_cpu_config_prepares_trains_and_scores_froc(config, tmp_path, monkeypatch, load_tool):
    monkeypatch.setenv("VA_DATASETS", str(tmp_path))
    fakes.lesion_dataset(tmp_path / "DeepLesion", size=64, num_train=4, num_val=1, num_test=2)
    assert load_tool("prepare_deeplesion").main(["--config-file", str(CONFIGS / config)]) == 0

    out = tmp_path / "output"
    cfg = get_va_cfg(str(CONFIGS / config), _tiny.INPUT + _tiny.TRAIN + [
        "SOLVER.MAX_ITER", "3", "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()", "SOLVER.CHECKPOINT_PERIOD", "100",
        "OUTPUT_DIR", str(out)])
    assert cfg.DATASETS.TEST == ("deeplesion_test",) and cfg.MODEL.ROI_HEADS.NUM_CLASSES == 1
    torch.manual_seed(0)
    trainer = VATrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()  # detectron2's EvalHook evaluates after the last iteration

    folder = out / "inference" / "deeplesion_test"
    metrics = json.loads((folder / "deeplesion_summary.json").read_text())["metrics"]
    assert metrics["num_images"] == 2 and metrics["num_gt"] == 2
    for key in [f"sens@{f}" for f in FPS] + ["sens_avg", "AP50"]:
        assert 0.0 <= metrics[key] <= 100.0, (key, metrics[key])
    # the hook handed the results to the trainer's storage (TensorBoard, metrics.json)
    assert trainer.storage.latest()["deeplesion/sens_avg"][0] == pytest.approx(metrics["sens_avg"])
    # the config's low SCORE_THRESH_TEST keeps the untrained model's detections: the curve has points
    # (scoring no detections at all is the evaluator's own test's concern)
    rows = (folder / "deeplesion_froc.csv").read_text().splitlines()
    assert rows[0] == "rank,fp_per_image,sensitivity,is_fp,image_id,case_id,score,x0,y0,x1,y1" and len(rows) > 1
    # the test mapper passes each key slice's case id through to the evaluator
    assert all(row.split(",")[5] for row in rows[1:])
    assert os.path.getsize(folder / "deeplesion_froc.png") > 0
    assert (out / "model_final.pth").is_file()
