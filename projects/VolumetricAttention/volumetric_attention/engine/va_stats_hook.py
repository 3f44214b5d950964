"""Training-time measurements of the VA modules, written with detectron2's other metrics (``metrics.json``,
TensorBoard): what the attention does and how much gradient each module receives, over training."""
from typing import Dict

import torch

from detectron2.engine import HookBase

from ..modeling import VolumetricAttention

__all__ = ["VAStatsHook", "attention_statistics", "KINDS"]

KINDS = ("channel", "spatial")


def attention_statistics(attn: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """What :class:`VAStatsHook` records of one forward's attention (the dict of ``VolumetricAttention(...,
    return_attention=True)``), each a 0-dim tensor, a mean over the batch, for each attention kind in use:

    * ``<kind>_max_weight``: the largest slice weight (1 = one image of the bag, 1/N = uniform);
    * ``<kind>_gate_mean`` and ``<kind>_gate_std``: the gate's mean, and its spread over channels / positions;
    * ``<kind>_context_positive``: the share of the gate's input that is positive.
    """
    values = {}
    for kind in KINDS:
        if f"{kind}_weights" not in attn:
            continue
        values[f"{kind}_max_weight"] = attn[f"{kind}_weights"].amax(dim=1).mean()
        gate = attn[f"{kind}_gate"].float().flatten(1)
        values[f"{kind}_gate_mean"] = gate.mean()
        values[f"{kind}_gate_std"] = gate.std(dim=1).mean() if gate.shape[1] > 1 else gate.std()
        values[f"{kind}_context_positive"] = (attn[f"{kind}_context"] > 0).float().mean()
    return values


class VAStatsHook(HookBase):
    """Every ``period`` iterations, for each VA module (``<name>`` = its path, e.g. ``backbone.va.p2``), put into
    the EventStorage:

    * ``va/<name>/{channel,spatial}_max_weight``: the largest slice weight, averaged over the batch (1 = the
      attention reads one image of the bag, 1/N = uniform);
    * ``va/<name>/{channel,spatial}_gate_std``: the spread of the gate over channels / positions, averaged over the
      batch (a constant gate does nothing before a normalisation layer), and ``..._gate_mean``;
    * ``va/<name>/{channel,spatial}_context_positive``: the share of the gate's input (the attention-weighted bag
      embedding) that is positive; with the paper's ReLU before the gate, 0 means a gate without gradient;
    * ``va/<name>/{channel,spatial}_temperature``: tau of the cosine similarity;
    * ``va/<name>/grad_norm``: the L2 norm of the gradients of the module's parameters in that iteration (read after
      the optimizer step, i.e. after ``SOLVER.CLIP_GRADIENTS`` where that is on: detectron2's ``DefaultTrainer``
      does not pass ``after_backward`` on to its hooks).

    ``MODEL.VA.STATS_PERIOD`` sets ``period``; only the recorded iterations pay for it (a few device-to-host reads).
    """

    def __init__(self, period: int):
        self._period = int(period)
        self._modules = {}

    def before_train(self):
        model = self.trainer.model
        model = getattr(model, "module", model)  # DDP
        self._modules = {name: m for name, m in model.named_modules() if isinstance(m, VolumetricAttention)}

    def _recording(self) -> bool:
        return self._period > 0 and (self.trainer.iter + 1) % self._period == 0

    def before_step(self):
        on = self._recording()
        for m in self._modules.values():
            m.keep_attention = on

    def after_step(self):
        if not self._recording():
            return
        values = {}
        for name, m in self._modules.items():
            attn, m.last_attention, m.keep_attention = m.last_attention or {}, None, False
            values.update({f"va/{name}/{key}": value for key, value in attention_statistics(attn).items()})
            for kind in KINDS:
                similarity = getattr(getattr(m, kind), "similarity", None)
                if similarity is not None and similarity.mode == "cosine":
                    values[f"va/{name}/{kind}_temperature"] = similarity.temperature()
            grads = [p.grad.detach().float().norm() for p in m.parameters() if p.grad is not None]
            if grads:
                values[f"va/{name}/grad_norm"] = torch.stack(grads).norm()
        if values:
            numbers = torch.stack([v.detach().float().reshape(()) for v in values.values()]).tolist()  # one read
            self.trainer.storage.put_scalars(**dict(zip(values, numbers)), smoothing_hint=False)
