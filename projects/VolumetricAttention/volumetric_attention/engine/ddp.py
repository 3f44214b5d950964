"""Several processes: DistributedDataParallel that also works for CPU processes over gloo, and detectron2's launch
with a worker's one-line error as the run's last line."""
import gc
import os
import sys
import tempfile

import torch.distributed as dist
from torch.multiprocessing import ProcessExitedException

from detectron2.engine import create_ddp_model as _d2_create_ddp_model
from detectron2.engine import launch as _d2_launch
from detectron2.utils import comm

from ..utils.detectron2_private import forget_process_groups

__all__ = ["create_ddp_model", "launch"]


def create_ddp_model(model, **kwargs):
    """detectron2's ``create_ddp_model``, except that a CPU model gets ``device_ids=None``.

    detectron2 always passes ``device_ids=[local_rank]``, which DistributedDataParallel rejects for a module on the CPU.
    """
    if comm.get_world_size() > 1 and "device_ids" not in kwargs:
        if next(model.parameters()).device.type == "cpu":
            kwargs["device_ids"] = None
    return _d2_create_ddp_model(model, **kwargs)


def launch(main_func, num_gpus_per_machine, num_machines=1, machine_rank=0, dist_url=None, args=()):
    """detectron2's ``launch``, except that a worker process that stops with a one-line error
    (``SystemExit("error: ...")``) ends the run with that line (``SystemExit`` of the parent) instead of torch's
    ``ProcessExitedException`` traceback, and that a worker which returns shuts its process groups down first
    (``_shut_down``). With one process ``main_func`` runs in this one, as in detectron2.
    """
    if num_gpus_per_machine * num_machines <= 1:
        return _d2_launch(main_func, num_gpus_per_machine, num_machines, machine_rank, dist_url, args)
    with tempfile.TemporaryDirectory(prefix="va_launch_") as errors:
        try:
            return _d2_launch(_WorkerMain(main_func, errors), num_gpus_per_machine, num_machines, machine_rank,
                              dist_url, args)
        except ProcessExitedException as e:
            message = _read_error(errors, e.error_index)
            if message is None:
                raise
            raise SystemExit(message) from None


class _WorkerMain:
    """``main_func`` in a worker process: a ``SystemExit`` with a message is written to ``<errors>/<local rank>``
    for the parent to end with, and the worker exits with status 1 without printing it; when ``main_func`` returns,
    the worker shuts its process groups down (``_shut_down``)."""

    def __init__(self, main_func, errors: str):
        self.main_func = main_func
        self.errors = errors

    def __call__(self, *args):
        try:
            result = self.main_func(*args)
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                raise
            with open(_error_path(self.errors, comm.get_local_rank()), "w", encoding="utf-8") as f:
                f.write(str(e.code))
            sys.stdout.flush()
            raise SystemExit(1) from None
        _shut_down()
        return result


def _shut_down():
    """Waits for the other workers, destroys every process group and drops detectron2's references to its groups,
    so that their threads end now. Left to the interpreter's teardown, gloo's threads could abort a worker whose
    work was done with SIGABRT ("terminate called without an active exception")."""
    comm.synchronize()
    dist.destroy_process_group()
    forget_process_groups()  # detectron2 has no public way to drop its references to the destroyed groups
    gc.collect()


def _error_path(errors, local_rank):
    return os.path.join(errors, str(local_rank))


def _read_error(errors, local_rank):
    try:
        with open(_error_path(errors, local_rank), "r", encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None
