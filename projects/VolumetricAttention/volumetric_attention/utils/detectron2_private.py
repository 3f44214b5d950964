"""Every reliance of the project on a private (underscore-named) name of detectron2 or fvcore.

The project uses detectron2's public API wherever it has one. The names in :data:`PRIVATE_NAMES` have no public
equivalent; the package reaches them through the functions and the mixin of this module, except for two overrides in
modules of the data and modeling layers, which the table lists with their place. ``tests/utils/
test_detectron2_private.py`` checks that every one of them still exists (and is still read where the project relies
on it being read) in the installed detectron2 and fvcore, so that an upgrade that renames one fails there, naming
it, instead of inside a run.
"""
from typing import NamedTuple, Optional

__all__ = ["PrivateName", "PRIVATE_NAMES", "DEFAULT_TRAINER_INIT_ATTRIBUTES", "forget_process_groups",
           "set_training_loop", "CheckpointFileReading"]


class PrivateName(NamedTuple):
    """A private name: ``owner`` (a module, or a class given as ``module.Class``) has ``name``; ``kind`` is
    "attribute" (found by ``getattr``) or "instance" (assigned on ``self`` in ``owner.__init__``, an instance
    attribute that the class does not hold); ``read_by`` (``module.function`` or ``module.Class.method``) is the
    detectron2/fvcore code that reads it, where the project relies on that (an override nobody calls does nothing)."""

    owner: str
    name: str
    kind: str
    read_by: Optional[str]
    used_in: str
    why: str


PRIVATE_NAMES = (
    PrivateName("detectron2.utils.comm", "_LOCAL_PROCESS_GROUP", "attribute", "detectron2.utils.comm.get_local_rank",
                "engine/ddp.py (_shut_down, through forget_process_groups)",
                "the local process group of launch(); no public function destroys or forgets it"),
    PrivateName("detectron2.utils.comm", "_get_global_gloo_group", "attribute", "detectron2.utils.comm.all_gather",
                "engine/ddp.py (_shut_down, through forget_process_groups)",
                "an lru_cache of the gloo group that comm.gather/all_gather create; only cache_clear() drops it"),
    PrivateName("detectron2.engine.defaults.DefaultTrainer", "_trainer", "instance",
                "detectron2.engine.defaults.DefaultTrainer.run_step",
                "engine/trainer.py (VATrainer.__init__, through set_training_loop)",
                "DefaultTrainer's SimpleTrainer/AMPTrainer, read by its model, data_loader, optimizer, run_step and "
                "state_dict; VATrainer builds it itself, since DefaultTrainer.__init__ hard-codes the DDP wrapper and "
                "the checkpointer"),
    PrivateName("fvcore.common.checkpoint.Checkpointer", "_load_file", "attribute",
                "fvcore.common.checkpoint.Checkpointer.load",
                "engine/checkpoint.py (VACheckpointer, through CheckpointFileReading)",
                "fvcore's documented override point for reading a checkpoint file (\"Can be overwritten by "
                "subclasses\"), underscore-named: VACheckpointer widens 2D stems of every file it reads"),
    PrivateName("detectron2.checkpoint.DetectionCheckpointer", "_torch_load", "attribute",
                "detectron2.checkpoint.DetectionCheckpointer._load_file",
                "engine/checkpoint.py (VACheckpointer, through CheckpointFileReading)",
                "how DetectionCheckpointer reads a torch file (not .pkl/.pyth) while keeping its URL-query handling: "
                "VACheckpointer reads tensors only"),
    PrivateName("detectron2.data.samplers.TrainingSampler", "_infinite_indices", "attribute",
                "detectron2.data.samplers.TrainingSampler.__iter__",
                "data/samplers.py (_SkipMixin, overridden there)",
                "the global index stream before it is split between processes, where a resumed run skips ahead"),
    PrivateName("detectron2.data.samplers.RepeatFactorTrainingSampler", "_infinite_indices", "attribute",
                "detectron2.data.samplers.RepeatFactorTrainingSampler.__iter__",
                "data/samplers.py (_SkipMixin, overridden there)",
                "as for TrainingSampler: the stream a resumed run skips ahead in"),
    PrivateName("detectron2.modeling.backbone.FPN", "_out_features", "instance", None,
                "modeling/va_fpn.py (VAFPN, read there)", "the FPN's output levels in order (p2, p3, ...)"),
    PrivateName("detectron2.modeling.backbone.FPN", "_out_feature_channels", "instance", None,
                "modeling/va_fpn.py (VAFPN, read there)",
                "the channels of each FPN level, for the VA modules (output_shape() holds the same)"),
)

# The attributes DefaultTrainer.__init__ assigns on self: VATrainer.__init__ builds the same ones (the test compares
# both with detectron2's source, so that a detectron2 whose trainer holds more state fails there).
DEFAULT_TRAINER_INIT_ATTRIBUTES = frozenset({"_trainer", "scheduler", "checkpointer", "start_iter", "max_iter", "cfg"})


def forget_process_groups():
    """Drops detectron2's references to its process groups (call after ``dist.destroy_process_group()``): the local
    group that ``launch`` creates and the gloo group that ``comm.gather``/``comm.all_gather`` cache. A group that
    stays referenced keeps its gloo threads until the interpreter's teardown, where they could abort a worker whose
    work was done with SIGABRT ("terminate called without an active exception")."""
    from detectron2.utils import comm

    comm._LOCAL_PROCESS_GROUP = None
    comm._get_global_gloo_group.cache_clear()


def set_training_loop(trainer, loop):
    """Gives a ``DefaultTrainer`` that builds itself its ``SimpleTrainer``/``AMPTrainer`` ``loop``, which
    ``DefaultTrainer`` keeps in ``_trainer`` (it has no public setter)."""
    trainer._trainer = loop


class CheckpointFileReading:
    """A mixin, before ``DetectionCheckpointer`` in the bases, that turns the two underscore-named steps in which
    fvcore and detectron2 read a checkpoint file into public methods for a subclass to override:

    * :meth:`read_checkpoint_file` (fvcore's ``_load_file``): any file that ``load`` reads, ``.pkl`` included;
    * :meth:`read_torch_file` (detectron2's ``_torch_load``): a torch file, read within ``read_checkpoint_file``.
    """

    def read_checkpoint_file(self, f):
        """detectron2's reading of checkpoint file ``f``: a dict with "model"."""
        return super()._load_file(f)

    def read_torch_file(self, f):
        """detectron2's reading of torch file ``f``: ``torch.load``."""
        return super()._torch_load(f)

    def _load_file(self, f):
        return self.read_checkpoint_file(f)

    def _torch_load(self, f):
        return self.read_torch_file(f)
