"""train_net.py --num-gpus 2 on the CPU: detectron2's launch() starts 2 processes that train over gloo."""
import _runs
import pytest
import torch


@pytest.mark.slow
def test_two_gloo_processes_train_and_write_model_final(phantom_root, tmp_path):
    out = tmp_path / "ddp ü"
    opts = _runs.TINY + _runs.NO_TEST + ["SOLVER.MAX_ITER", "3", "SOLVER.CHECKPOINT_PERIOD", "100", "OUTPUT_DIR", out]
    proc = _runs.run_train_net(opts, ["--num-gpus", "2"], phantom_root=phantom_root, timeout=240)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "Rank of current process: 0. World size: 2" in log
    assert (out / "log.txt.rank1").exists()  # the second process ran default_setup too
    # IMS_PER_BATCH 2 over 2 processes: one image each
    assert "Making batched data loader with batch_size=1" in log
    ckpt = torch.load(out / "model_final.pth", weights_only=True)
    assert ckpt["iteration"] == 2
    assert not any(k.startswith("module.") for k in ckpt["model"])  # saved unwrapped from DDP
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


@pytest.mark.slow
def test_a_worker_error_ends_the_run_in_its_one_line(tmp_path):
    """A config typo stops both gloo processes: the run ends with the worker's line, not torch's
    ProcessExitedException traceback."""
    proc = _runs.run_train_net(["SOLVER.BASE_LRR", "1", "OUTPUT_DIR", tmp_path / "out"], ["--num-gpus", "2"],
                               phantom_root=tmp_path, timeout=240)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert _runs.last_line(proc.stderr) == (f"error: {_runs.VA_CONFIG} + command-line options: "
                                            "Non-existent key: SOLVER.BASE_LRR")
    assert proc.stderr.count("Non-existent key") == 1  # once, by the parent


def test_a_returning_worker_destroys_its_process_groups(tmp_path):
    """A worker that returns leaves no process group behind, detectron2's cached ones included, so that no gloo
    thread is left for the interpreter's teardown (which aborted such workers with SIGABRT)."""
    import torch.distributed as dist

    from volumetric_attention.engine.ddp import _WorkerMain

    from detectron2.utils import comm

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    comm.create_local_process_group(1)
    try:
        def main(x):
            comm._get_global_gloo_group()  # what comm.gather and comm.all_gather create and cache
            return x + 1

        assert _WorkerMain(main, str(tmp_path))(1) == 2
        assert not dist.is_initialized()
        assert comm._LOCAL_PROCESS_GROUP is None
        assert comm._get_global_gloo_group.cache_info().currsize == 0
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        comm._LOCAL_PROCESS_GROUP = None
        comm._get_global_gloo_group.cache_clear()
