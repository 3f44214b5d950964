"""Tiny model settings shared by the modeling tests (CPU, a few seconds per model)."""
import _tiny
import pytest
import torch

# Small R18 + GN (detectron2's from-scratch recipe) and small heads; the deformable variant is a narrow R-50.
TINY_OPTS = _tiny.FROM_SCRATCH_R18 + _tiny.MODEL
TINY_DEFORM_OPTS = _tiny.FROM_SCRATCH_DEFORM_R50 + _tiny.MODEL


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_cfg():
    """``tiny_cfg(config_file=None, opts=(), deform=False)``: a frozen VA config shrunk for the CPU."""
    from volumetric_attention import get_va_cfg

    def make(config_file=None, opts=(), deform=False, freeze=True):
        base = TINY_DEFORM_OPTS if deform else TINY_OPTS
        return get_va_cfg(config_file, base + list(opts), freeze=freeze)

    return make


@pytest.fixture
def load_incompatible():
    """``load_incompatible(checkpointer, path, **load_kwargs)``: ``checkpointer.load(path, **load_kwargs)``, returning
    fvcore's record of that load's incompatible keys (``missing_keys``, ``unexpected_keys``, ``incorrect_shapes``)."""

    def load(checkpointer, path, **kwargs):
        results = []
        load_model = checkpointer._load_model
        checkpointer._load_model = lambda checkpoint: results.append(load_model(checkpoint)) or results[-1]
        checkpointer.load(path, **kwargs)
        return results[0]

    return load
