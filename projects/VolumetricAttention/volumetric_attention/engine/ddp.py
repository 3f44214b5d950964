"""DistributedDataParallel that also works for CPU processes over gloo."""
from detectron2.engine import defaults
from detectron2.utils import comm


def create_ddp_model(model, **kwargs):
    """detectron2's ``create_ddp_model``, except that a CPU model gets ``device_ids=None``.

    detectron2 always passes ``device_ids=[local_rank]``, which DistributedDataParallel rejects for a module on the CPU.
    """
    if comm.get_world_size() > 1 and "device_ids" not in kwargs:
        if next(model.parameters()).device.type == "cpu":
            kwargs["device_ids"] = None
    return _d2_create_ddp_model(model, **kwargs)


_d2_create_ddp_model = defaults.create_ddp_model
