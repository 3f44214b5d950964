"""Training with DATALOADER.SHARED_BAG_TARGETS: grouped batches, one iteration, resume, config errors."""
import json

import _runs
import pytest
import torch

from volumetric_attention import get_va_cfg
from volumetric_attention.engine import VATrainer

G = 2
SHARED = ["DATALOADER.SHARED_BAG_TARGETS", str(G)]


def _cfg(tmp_path, *opts):
    return get_va_cfg(str(_runs.VA_CONFIG), _runs.TINY + _runs.NO_TEST + ["OUTPUT_DIR", str(tmp_path), *opts])


def _next_batch(trainer):
    return next(trainer._trainer._data_loader_iter)


def test_grouped_batches_share_bag_images_and_one_iteration_trains(phantom_root, tmp_path, monkeypatch):
    monkeypatch.setenv("VA_DATASETS", str(phantom_root))
    cfg = _cfg(tmp_path, *SHARED, "SEED", "3", "SOLVER.MAX_ITER", "1")
    trainer = VATrainer(cfg)
    trainer.resume_or_load(resume=False)
    assert trainer.data_loader.items_per_batch == cfg.SOLVER.IMS_PER_BATCH // G == 1
    for _ in range(3):
        batch = _next_batch(trainer)
        assert len(batch) == cfg.SOLVER.IMS_PER_BATCH  # the phantom cases are long enough for full groups
        a, b = batch
        assert a["case_id"] == b["case_id"] and b["slice_index"] - a["slice_index"] == 3
        assert torch.equal(a["image"][3:], b["image"][:-3])  # one augmentation: the shared images are bit-identical

    trainer.train()
    metrics = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines() if line.strip()]
    shared = [m["va/backbone_images_per_target"] for m in metrics if "va/backbone_images_per_target" in m]
    # 2 targets 3 slices apart with bags of 3: 4 distinct images instead of 6 (fewer if two images are equal)
    assert shared and shared[-1] <= (G + 3 - 1) / G
    assert all(torch.isfinite(torch.tensor(m["total_loss"])) for m in metrics if "total_loss" in m)


@pytest.mark.parametrize("opts, message", [
    (["SOLVER.IMS_PER_BATCH", "3"],
     r"SOLVER.IMS_PER_BATCH \(3\) must be divisible by DATALOADER.SHARED_BAG_TARGETS \(2\)"),
    (["DATALOADER.SAMPLER_TRAIN", "RepeatFactorTrainingSampler"], "TrainingSampler"),
])
def test_unusable_group_size_is_a_clear_error(tmp_path, opts, message):
    cfg = _cfg(tmp_path, *SHARED, *opts)
    with pytest.raises(ValueError, match=message):
        VATrainer.build_train_loader(cfg)
    with pytest.raises(ValueError, match="must be >= 1"):
        VATrainer.build_train_loader(_cfg(tmp_path, "DATALOADER.SHARED_BAG_TARGETS", "0"))
