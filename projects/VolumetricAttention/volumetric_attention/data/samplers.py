"""Training samplers whose index stream can continue where an interrupted run stopped."""
import itertools

from detectron2.data.samplers import RepeatFactorTrainingSampler, TrainingSampler

__all__ = ["ResumableTrainingSampler", "ResumableRepeatFactorTrainingSampler"]


class _SkipMixin:
    """``skip`` drops the first ``skip`` indices of the global stream, before it is split between processes.

    detectron2 restarts a sampler's stream when a run resumes: with a fixed ``SEED`` the resumed run replays the
    batches the run started with (a job preempted more often than once an epoch never reaches the rest of the data),
    and with ``SEED`` < 0 it draws a new random order. ``VATrainer.resume_or_load`` sets ``skip`` to
    ``start_iter x`` the items sampled per iteration (``SOLVER.IMS_PER_BATCH`` dicts, or ``IMS_PER_BATCH / G``
    slice groups with ``DATALOADER.SHARED_BAG_TARGETS`` = G), so that with a fixed seed the resumed run gets the
    batches the uninterrupted run would have got (exactly when every image has the same aspect ratio, as CT slices
    do; detectron2 groups batches by aspect ratio).
    """

    skip = 0

    def _infinite_indices(self):
        # read when the data loader starts iterating, i.e. after resume_or_load
        return itertools.islice(super()._infinite_indices(), self.skip, None)


class ResumableTrainingSampler(_SkipMixin, TrainingSampler):
    """detectron2's ``TrainingSampler`` that a resumed run continues (see :class:`_SkipMixin`)."""


class ResumableRepeatFactorTrainingSampler(_SkipMixin, RepeatFactorTrainingSampler):
    """detectron2's ``RepeatFactorTrainingSampler`` that a resumed run continues (see :class:`_SkipMixin`); with
    :func:`~.sampling.lesion_share_repeat_factors` it is the sampler of ``DATALOADER.LESION_SLICE_SHARE``."""
