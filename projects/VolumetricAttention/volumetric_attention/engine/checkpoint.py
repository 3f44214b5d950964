"""A DetectionCheckpointer that writes atomically and loads tensors only."""
import glob
import os

import torch

from detectron2.checkpoint import DetectionCheckpointer

from ..modeling.stem_init import widen_checkpoint_stems
from ..utils.atomic_io import atomic_open, write_text_atomic
from ..utils.detectron2_private import CheckpointFileReading
from ..utils.tensor_checkpoint import CheckpointLoadError, load_tensor_checkpoint

__all__ = ["VACheckpointer", "CheckpointLoadError"]


class VACheckpointer(CheckpointFileReading, DetectionCheckpointer):
    """``DetectionCheckpointer`` with three guarantees that long cluster jobs need.

    * Saving is atomic: the checkpoint and the ``last_checkpoint`` tag are written to a temporary file in the same
      folder and renamed into place, so a job killed during a save leaves the previous checkpoint loadable. The
      temporary file that a killed job leaves behind is removed by the next save of the same name.
    * ``.pth`` files are loaded with ``torch.load(weights_only=True)``: a checkpoint cannot run code when loaded.
      A file that needs more raises :class:`CheckpointLoadError`, one line naming the file and the refused object,
      whichever path loads it (``--eval-only``, ``MODEL.WEIGHTS`` for training, ``--resume``).
      (detectron2 model-zoo ``.pkl`` files keep detectron2's own loader.)
    * A 2D checkpoint's stem conv is widened for the model's widened stems (early fusion, VA members of several
      images) by their ``MODEL.EARLY_FUSION.STEM_INIT``, ``.pth`` and ``.pkl`` alike (``modeling/stem_init.py``);
      a stem conv of neither the 2D nor the widened shape raises :class:`CheckpointLoadError`, one line naming the
      file and both shapes.
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

    def read_checkpoint_file(self, f):
        """detectron2's reading of any checkpoint file, with the 2D stems widened for the model."""
        checkpoint = super().read_checkpoint_file(f)
        if isinstance(checkpoint.get("model"), dict):
            try:
                widen_checkpoint_stems(self.model, checkpoint["model"], source=f)
            except ValueError as e:  # train_net.py stops on CheckpointLoadError with its one line
                raise CheckpointLoadError(str(e)) from None
        return checkpoint

    def read_torch_file(self, f):
        """Tensors only (``weights_only=True``), or a one-line :class:`CheckpointLoadError`."""
        return load_tensor_checkpoint(f)

