import os
import sys

import pytest

# The helper module of these tests is imported by name.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _runs  # noqa: E402


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory, load_tool):
    """$VA_DATASETS of a tiny prepared phantom dataset (4 cases of 12 x 48 x 48; 3 train, 1 val), in a folder whose
    name has a space and a non-ASCII letter."""
    root = tmp_path_factory.mktemp("va data ü")
    make_phantoms = load_tool("make_phantoms")
    code = make_phantoms.main([
        "--out", str(root / "phantom"), "--cache", str(root / "cache" / "phantom"), "--num-cases", "4",
        "--slices", "12", "--size", "48", "--slice-thickness", "2.0", "--slice-spacing", _runs.SLICE_SPACING,
    ])
    assert code == 0
    return root
