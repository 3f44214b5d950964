"""Load a checkpoint file as tensors only: ``torch.load(weights_only=True)``, so that loading cannot run code.

Shared by the trainer's checkpointer (``engine/``) and strict weight loading for inference (``inference/``), which is
why it lives at the bottom of the package.
"""
import torch

__all__ = ["load_tensor_checkpoint"]


def load_tensor_checkpoint(f):
    """``torch.load(f, map_location="cpu", weights_only=True)``.

    Args:
        f: a local path or a file object.
    Raises:
        RuntimeError: one line naming ``f`` and the first line of the unpickling error.
    """
    try:
        return torch.load(f, map_location=torch.device("cpu"), weights_only=True)
    except Exception as e:  # noqa: BLE001  (any unpickling failure is reported the same way)
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RuntimeError(f"{f}: not a loadable tensor checkpoint ({first_line})") from e
