import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

# tests/_tiny.py, the CPU-sized config overrides every folder's tests share, is imported by name
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
TOOLS = Path(__file__).resolve().parents[1] / "tools"

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _load_script(path):
    """The script at ``path`` imported as a module, without running its ``__main__`` block. The tools' helper
    modules (``tools/_*.py``) import by name, as they do when a tool runs from its folder."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"_tool_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_tool():
    """``load_tool(name)``: ``tools/<name>.py`` imported as a module, without running its ``__main__`` block;
    ``load_tool(path)`` does the same for another script (``train_net.py``). The one loader of the tests."""

    def load(name_or_path):
        path = Path(name_or_path)
        return _load_script(path if path.suffix == ".py" else TOOLS / f"{name_or_path}.py")

    return load


@pytest.fixture
def keep_process_state():
    """For a tool's ``main()`` run in this process: afterwards the environment (the start-up writes
    ``$OMP_NUM_THREADS`` and ``$ANSI_COLORS_DISABLED``, which the processes later tests start would inherit) and
    torch's thread count are as before."""
    environ, threads = dict(os.environ), torch.get_num_threads()
    yield
    os.environ.clear()
    os.environ.update(environ)
    torch.set_num_threads(threads)
