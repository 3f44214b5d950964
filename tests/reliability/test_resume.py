"""Kill and resume: a SIGKILLed training run continues from its last checkpoint with the same iteration counter,
LR schedule and data stream."""
import json
import os
import signal
import subprocess
import time
from unittest import mock

import _runs
import pytest
import torch

from volumetric_attention import get_va_cfg
from volumetric_attention.data.samplers import ResumableRepeatFactorTrainingSampler, ResumableTrainingSampler
from volumetric_attention.engine import VATrainer

from detectron2.data.samplers import distributed_sampler
from detectron2.solver import build_lr_scheduler

MAX_ITER = 12
PERIOD = 3
KILL_AT = ("model_0000005.pth", "model_0000008.pth")  # periodic checkpoints are iterations 2, 5, 8, 11


def _schedule(opts):
    """LR of every iteration 0..MAX_ITER of an uninterrupted run: detectron2's scheduler stepped once per iteration."""
    cfg = get_va_cfg(str(_runs.VA_CONFIG), opts)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.SOLVER.BASE_LR)
    scheduler = build_lr_scheduler(cfg, optimizer)
    lrs = []
    for i in range(cfg.SOLVER.MAX_ITER + 1):
        lrs.append(optimizer.param_groups[0]["lr"])
        if i < cfg.SOLVER.MAX_ITER:
            optimizer.step()
            scheduler.step()
    return lrs


@pytest.mark.slow
def test_sigkilled_run_resumes_with_same_iteration_and_lr_schedule(phantom_root, tmp_path, train_net_in_process):
    out = tmp_path / "run ü out"
    # warm-up over the whole run: the LR is different at every iteration
    opts = _runs.TINY + _runs.NO_TEST + [
        "SEED", "7", "SOLVER.MAX_ITER", str(MAX_ITER), "SOLVER.CHECKPOINT_PERIOD", str(PERIOD),
        "SOLVER.WARMUP_ITERS", str(MAX_ITER), "OUTPUT_DIR", str(out),
    ]
    lrs = _schedule(opts)
    assert len(set(lrs)) == len(lrs)

    with open(tmp_path / "first.log", "wb") as log:
        proc = subprocess.Popen(_runs.train_net_cmd(opts), env=_runs.env(phantom_root), cwd=_runs.ROOT,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 240
            tag = out / "last_checkpoint"
            while not (tag.exists() and tag.read_text() in KILL_AT):
                assert proc.poll() is None, f"training ended before it was killed:\n{_tail(tmp_path / 'first.log')}"
                assert time.monotonic() < deadline, "no checkpoint within 240 s"
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "model_final.pth").exists(), "the run finished before the kill"
    saved = (out / "last_checkpoint").read_text()
    saved_iter = int(saved[len("model_"):-len(".pth")])
    assert torch.load(out / saved, weights_only=True)["iteration"] == saved_iter

    # the resumed run: train_net.py's main, in this process; its log is what it appended to the killed run's log.txt
    killed_log = (out / "log.txt").read_text()
    code = train_net_in_process(opts, ["--resume"], phantom_root=phantom_root)
    log = (out / "log.txt").read_text()
    assert log.startswith(killed_log)
    log = log[len(killed_log):]
    assert code == 0, log[-3000:]
    assert f"Loading from {out / saved}" in log
    assert f"Starting training from iteration {saved_iter + 1}" in log

    # every checkpoint of both runs holds the LR an uninterrupted run has after that iteration
    files = sorted(p.name for p in out.glob("model_*.pth"))
    assert files == ["model_0000002.pth", "model_0000005.pth", "model_0000008.pth", "model_0000011.pth",
                     "model_final.pth"]
    for name in files:
        ckpt = torch.load(out / name, weights_only=True)
        it = ckpt["iteration"]
        assert ckpt["trainer"]["iteration"] == it
        assert ckpt["trainer"]["hooks"]["LRScheduler"]["last_epoch"] == it + 1, name
        assert ckpt["trainer"]["_trainer"]["optimizer"]["param_groups"][0]["lr"] == pytest.approx(lrs[it + 1]), name
    assert torch.load(out / "model_final.pth", weights_only=True)["iteration"] == MAX_ITER - 1

    # detectron2's JSONWriter (metrics.json): the resumed run's last iteration has the uninterrupted run's LR,
    # not the LR of a schedule restarted at the resumed iteration
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines() if line.strip()]
    last = [m for m in metrics if "lr" in m][-1]
    assert last["iteration"] == MAX_ITER - 1
    assert last["lr"] == pytest.approx(lrs[MAX_ITER - 1])
    assert last["lr"] != pytest.approx(lrs[MAX_ITER - 1 - (saved_iter + 1)])


def _tail(path, n=3000):
    return path.read_text(errors="replace")[-n:]


def _batches(trainer, n):
    return [[(d["case_id"], d["slice_index"]) for d in next(trainer._trainer._data_loader_iter)] for _ in range(n)]


@pytest.mark.parametrize("sampling", [["DATALOADER.LESION_SLICE_SHARE", "0.0"],
                                      ["DATALOADER.LESION_SLICE_SHARE", "0.5"],
                                      ["DATALOADER.LESION_SLICE_SHARE", "0.0", "DATALOADER.SHARED_BAG_TARGETS", "2"],
                                      ["DATALOADER.LESION_SLICE_SHARE", "0.5", "DATALOADER.SHARED_BAG_TARGETS", "2"]],
                         ids=["uniform", "lesion_share", "uniform_groups", "lesion_share_groups"])
def test_resumed_trainer_continues_the_sampler_stream(phantom_root, tmp_path, monkeypatch, sampling):
    """With a fixed SEED, the batches after resuming at iteration k are the uninterrupted run's batches k, k+1, ...
    (detectron2's TrainingSampler alone restarts its stream: the resumed run would see batches 0, 1, ... again),
    with the uniform and the lesion-share sampler, of slices and of slice groups (the skip then counts groups,
    IMS_PER_BATCH / G per iteration, not dicts)."""
    monkeypatch.setenv("VA_DATASETS", str(phantom_root))
    cfg = get_va_cfg(str(_runs.VA_CONFIG), _runs.TINY + _runs.NO_TEST + ["SEED", "7", "OUTPUT_DIR", str(tmp_path)]
                     + sampling)
    first = VATrainer(cfg)
    first.resume_or_load(resume=False)
    stream = _batches(first, 6)
    assert stream[:3] != stream[3:]
    first.iter = 2
    first.checkpointer.save("model_0000002", iteration=2)

    resumed = VATrainer(cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 3
    assert _batches(resumed, 3) == stream[3:]


@pytest.mark.parametrize("make_sampler", [lambda: ResumableTrainingSampler(10, seed=3),
                                          lambda: ResumableRepeatFactorTrainingSampler(torch.linspace(0.2, 3.0, 10),
                                                                                       seed=3)],
                         ids=["uniform", "repeat_factors"])
def test_sampler_skip_is_taken_from_the_global_stream_before_sharding(make_sampler):
    """Two processes resumed at the same point together see what one process sees after the skip."""
    def stream(rank, world, skip, n):
        with mock.patch.object(distributed_sampler.comm, "get_rank", return_value=rank), \
                mock.patch.object(distributed_sampler.comm, "get_world_size", return_value=world):
            sampler = make_sampler()
        sampler.skip = skip
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    single = stream(0, 1, 0, 40)
    assert stream(0, 1, 14, 26) == single[14:]
    rank0, rank1 = stream(0, 2, 14, 13), stream(1, 2, 14, 13)
    assert [i for pair in zip(rank0, rank1) for i in pair] == single[14:]
