"""Load a checkpoint file as tensors only: ``torch.load(weights_only=True)``, so that loading cannot run code.

Shared by the trainer's checkpointer (``engine/``) and :func:`load_weights_strict` (``--eval-only``, volume inference
in ``inference/``), which is why it lives at the bottom of the package. Every path that loads a ``.pth``
(``--eval-only``, ``MODEL.WEIGHTS`` for training, ``--resume``, ``tools/predict.py``) reports a refused file with the
same one line.
"""
import os
import re

import torch

from detectron2.utils.file_io import PathManager

__all__ = ["CheckpointLoadError", "load_tensor_checkpoint", "load_weights_strict"]

# torch names the refused object "GLOBAL module.name" in its weights-only unpickler errors
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class CheckpointLoadError(RuntimeError):
    """A file that is not a tensors-only checkpoint. The message is one line naming the file and why."""


def _load_error_message(path, error):
    """One line for a failed weights-only load: the file, and the pickled object refused (or torch's first line)."""
    text = _ANSI_ESCAPE.sub("", str(error)).strip()
    refused = _REFUSED_GLOBAL.search(text)
    if refused:
        return (f"{path}: not a loadable tensor checkpoint: refused the pickled object {refused.group(1)} "
                "(loading it could run code; only tensors and plain containers are loaded)")
    first_line = text.splitlines()[0].strip() if text else type(error).__name__
    return f"{path}: not a loadable tensor checkpoint ({first_line})"


def load_tensor_checkpoint(f):
    """``torch.load(f, map_location="cpu", weights_only=True)``.

    Args:
        f: a local path or a file object.
    Raises:
        CheckpointLoadError: one line naming ``f`` and the refused pickled object (or the unpickling error).
    """
    try:
        return torch.load(f, map_location=torch.device("cpu"), weights_only=True)
    except Exception as e:  # noqa: BLE001  (any unpickling failure is reported the same way)
        raise CheckpointLoadError(_load_error_message(f, e)) from e


def load_weights_strict(model, weights):
    """Load a checkpoint that holds exactly the parameters of ``model``, with the right shapes.

    Raises:
        FileNotFoundError: ``weights`` does not exist.
        ValueError: one line naming the file and the first mismatching parameters (config and weights disagree).
    """
    if not weights:
        raise ValueError("no weights given: pass a checkpoint path (or set MODEL.WEIGHTS)")
    if "://" not in weights and not os.path.isfile(weights):
        raise FileNotFoundError(f"{weights}: weights file not found")
    checkpoint = load_tensor_checkpoint(PathManager.get_local_path(weights))
    state = checkpoint.get("model", checkpoint)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(getattr(state[k], "shape", ())) != tuple(v.shape)
    ]
    if missing or unexpected or wrong_shape:
        problems = wrong_shape[:3] + [f"missing {k}" for k in missing[:3]] + [f"unexpected {k}" for k in unexpected[:3]]
        raise ValueError(
            f"{weights}: does not match the config's model ({len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(wrong_shape)} of another shape: {'; '.join(problems)})"
        )
    model.load_state_dict({k: torch.as_tensor(state[k]) for k in own}, strict=True)
