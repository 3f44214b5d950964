import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

# tests/_tiny.py, the CPU-sized config overrides every folder's tests share, is imported by name
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def load_tool():
    """``load_tool(name)``: ``tools/<name>.py`` imported as a module, without running its ``__main__`` block."""

    def load(name):
        path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"_tool_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
