"""Cached = naive inference checks: what the backbone hands the heads per target, and a negative control.

A random VA model with the gates of ``_tiny.VARYING_GATES`` depends on its context images. Between the feature cache
and the naive path the backbone's output per target differs by float rounding only (about 4e-6 relative); with the
context images one slice off (:class:`ShiftedContextLoop`) it differs by more than 1e-2 on every target. A comparison
at :data:`FEATURE_RTOL` therefore sees a cache that serves the wrong neighbours, which label maps would rarely show.
"""
import contextlib
from typing import Dict, List

import torch

from volumetric_attention.inference.case_loop import CaseLoop

# largest relative difference ||a - b|| / ||b|| of one target's features (any level) that counts as equal
FEATURE_RTOL = 1e-4


class ShiftedContextLoop(CaseLoop):
    """A :class:`CaseLoop` whose bags hold the right target image but context images one slice further up (clamped
    at the top): what a cache that serves the wrong neighbours would compute. The negative control."""

    def _image_keys(self, z, num_slices):
        keys = super()._image_keys(z, num_slices)
        middle = self.bag_size // 2
        return [k if i == middle else tuple(min(s + 1, num_slices - 1) for s in k) for i, k in enumerate(keys)]


@contextlib.contextmanager
def recorded_backbone_outputs(model):
    """Collect what ``model.backbone`` returns: one ``{level: [C, h, w]}`` per target, in call order.

    A forward hook runs on the cached path too, where ``backbone_output`` swaps the backbone's ``forward``. The bag
    features of LOCATION "RCNN" (``[B, N, C, h, w]``) are left out.
    """
    records: List[Dict[str, torch.Tensor]] = []

    def hook(module, inputs, output):
        batch = next(iter(output.values())).shape[0]
        records.extend({k: v[i].detach().clone() for k, v in output.items() if v.dim() == 4} for i in range(batch))

    handle = model.backbone.register_forward_hook(hook)
    try:
        yield records
    finally:
        handle.remove()


@contextlib.contextmanager
def recorded_model_outputs(model):
    """Collect what ``model`` returns: one output dict per target (``instances`` or ``sem_seg``), in call order."""
    records: List[dict] = []
    handle = model.register_forward_hook(lambda module, inputs, output: records.extend(output))
    try:
        yield records
    finally:
        handle.remove()


def run_case(loop: CaseLoop, image, targets=None):
    """``{z: (backbone features {level: [C, h, w]}, model output)}`` for every target of ``loop.run(image)``."""
    results = {}
    with recorded_backbone_outputs(loop.model) as records:
        for batch, outputs in loop.run(image, targets):
            for z, features, output in zip(batch, records[-len(batch):], outputs):
                results[z] = (features, output)
    return results


def assert_same_outputs(a: List[dict], b: List[dict], atol: float = 1e-6):
    """Two runs' model outputs, target by target: instance scores equal up to ``atol`` (boxes to 1e-3 px), or
    semantic logits up to :data:`FEATURE_RTOL` times their largest magnitude.

    A random model's scores hardly depend on its features (detectron2 starts the box predictor at std 0.01):
    features equal to :data:`FEATURE_RTOL` move them by well under 1e-6, a shifted bag by over 1e-4 here.
    """
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        if "instances" in y:
            torch.testing.assert_close(x["instances"].scores, y["instances"].scores, atol=atol, rtol=0)
            torch.testing.assert_close(x["instances"].pred_boxes.tensor, y["instances"].pred_boxes.tensor,
                                       atol=1e-3, rtol=0)
        else:
            scale = float(y["sem_seg"].abs().max())
            torch.testing.assert_close(x["sem_seg"], y["sem_seg"], atol=FEATURE_RTOL * scale, rtol=0)


def relative_change(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> float:
    """Largest ``||a - b|| / ||b||`` over the levels of one target's features."""
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-12)) for k in a)


def assert_same_features(a: List[dict], b: List[dict], rtol: float = FEATURE_RTOL):
    """Two runs' features, target by target, equal up to ``rtol``."""
    assert len(a) == len(b) > 0
    changes = [relative_change(x, y) for x, y in zip(a, b)]
    assert max(changes) < rtol, f"features differ by up to {max(changes):.2e} (relative); allowed {rtol:.0e}"


def assert_all_features_differ(a: List[dict], b: List[dict], rtol: float = FEATURE_RTOL):
    """The negative control: every target's features differ by well over ``rtol`` (10 times)."""
    assert len(a) == len(b) > 0
    changes = [relative_change(x, y) for x, y in zip(a, b)]
    assert min(changes) > 10 * rtol, f"a shifted bag changed some target's features by only {min(changes):.2e}"


def assert_outputs_differ(a: List[dict], b: List[dict], atol: float = 1e-6):
    """The negative control on the outputs: some instance score (or semantic logit) changes by over 10 times the
    tolerance of :func:`assert_same_outputs`, or the number of instances changes."""
    assert len(a) == len(b) > 0
    ratio = 0.0
    for x, y in zip(a, b):
        if "instances" in y:
            u, v, allowed = x["instances"].scores, y["instances"].scores, atol
        else:
            u, v, allowed = x["sem_seg"], y["sem_seg"], FEATURE_RTOL * float(y["sem_seg"].abs().max())
        ratio = max(ratio, float((u - v).abs().max()) / allowed if u.shape == v.shape else float("inf"))
    assert ratio > 10, f"a shifted bag changed the outputs by only {ratio:.1f} times the tolerance"
