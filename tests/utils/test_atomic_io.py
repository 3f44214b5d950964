"""atomic_open gives new files the permissions an ordinary open() gives them under the process umask."""
import os
import stat

import numpy as np
import pytest

from volumetric_attention.data.cache import write_index
from volumetric_attention.utils.atomic_io import atomic_open


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    old = os.umask(0o022)
    os.umask(old)

    def set_umask(mask):
        os.umask(mask)
        return mask

    yield set_umask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_new_files_get_the_mode_of_open_under_the_umask(tmp_path, umask, mask):
    umask(mask)
    reference = tmp_path / "plain.txt"
    with open(reference, "w") as f:
        f.write("x")
    expected = _mode(reference)
    assert expected == 0o666 & ~mask

    with atomic_open(tmp_path / "text.json", "w") as (f, _):
        f.write("{}")
    with atomic_open(tmp_path / "array.npy", None, suffix=".npy") as (_, tmp):
        np.save(tmp, np.zeros(3))  # a writer that creates the file under its own name
    write_index(tmp_path / "cache", [], {"slice_spacing": 1.5})
    for name in ("text.json", "array.npy", "cache/index.json"):
        assert _mode(tmp_path / name) == expected, name


def test_replacing_a_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "shared.json"
    path.write_text("old")
    os.chmod(path, 0o664)
    with atomic_open(path, "w") as (f, _):
        f.write("new")
    assert path.read_text() == "new"
    assert _mode(path) == 0o664
