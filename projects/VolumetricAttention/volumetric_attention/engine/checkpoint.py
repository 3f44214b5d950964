"""A DetectionCheckpointer that writes atomically and loads tensors only."""
import glob
import os
import re

import torch
from detectron2.checkpoint import DetectionCheckpointer

from ..utils.atomic_io import atomic_open, write_text_atomic

__all__ = ["VACheckpointer", "CheckpointLoadError"]

# torch names the refused object "GLOBAL module.name" in its weights-only unpickler errors
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class CheckpointLoadError(RuntimeError):
    """A ``.pth`` file that is not a tensors-only checkpoint. The message is one line naming the file and why."""


def _load_error_message(path, error):
    """One line for a failed weights-only load: the file, and the pickled object refused (or torch's first line)."""
    text = _ANSI_ESCAPE.sub("", str(error)).strip()
    refused = _REFUSED_GLOBAL.search(text)
    if refused:
        return (f"{path}: not a loadable tensor checkpoint: refused the pickled object {refused.group(1)} "
                "(loading it could run code; only tensors and plain containers are loaded)")
    first_line = text.splitlines()[0].strip() if text else type(error).__name__
    return f"{path}: not a loadable tensor checkpoint ({first_line})"


class VACheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` with two guarantees that long cluster jobs need.

    * Saving is atomic: the checkpoint and the ``last_checkpoint`` tag are written to a temporary file in the same
      folder and renamed into place, so a job killed during a save leaves the previous checkpoint loadable. The
      temporary file that a killed job leaves behind is removed by the next save of the same name.
    * ``.pth`` files are loaded with ``torch.load(weights_only=True)``: a checkpoint cannot run code when loaded.
      A file that needs more raises :class:`CheckpointLoadError`, one line naming the file and the refused object,
      whichever path loads it (``--eval-only``, ``MODEL.WEIGHTS`` for training, ``--resume``).
      (detectron2 model-zoo ``.pkl`` files keep detectron2's own loader.)
    """

    def save(self, name, **kwargs):
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        # a job killed (SIGKILL, preemption) during this save last time left its temporary file (see atomic_open)
        for stale in glob.glob(os.path.join(glob.escape(self.save_dir), f".{glob.escape(basename)}.*.tmp")):
            os.remove(stale)
        with atomic_open(save_file, "wb") as (f, _):
            torch.save(data, f)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename):
        write_text_atomic(os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename)

    def _torch_load(self, f):
        try:
            return torch.load(f, map_location=torch.device("cpu"), weights_only=True)
        except Exception as e:  # noqa: BLE001  (any unpickling failure is reported the same way)
            raise CheckpointLoadError(_load_error_message(f, e)) from e

