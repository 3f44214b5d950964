"""The tools' CPU threads: --threads, else $OMP_NUM_THREADS, else torch's default; logged and passed on."""
import logging
import os

import pytest
import torch

from volumetric_attention.utils import threads


@pytest.fixture
def keep_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    yield
    torch.set_num_threads(before)


def test_threads_option_wins_and_is_logged(keep_threads, monkeypatch, caplog):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    with caplog.at_level(logging.INFO, logger="volumetric_attention"):
        assert threads.set_threads(1) == 1
    assert torch.get_num_threads() == 1
    assert os.environ["OMP_NUM_THREADS"] == "1"  # processes started from here use the same number
    assert [r.getMessage() for r in caplog.records] == ["torch threads: 1 (--threads)"]


def test_omp_num_threads_is_honoured_explicitly(keep_threads, monkeypatch, caplog):
    torch.set_num_threads(2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with caplog.at_level(logging.INFO, logger="volumetric_attention"):
        assert threads.set_threads(None) == 1
    assert torch.get_num_threads() == 1
    assert caplog.records[-1].getMessage() == "torch threads: 1 (OMP_NUM_THREADS)"


@pytest.mark.parametrize("value", ["0", "two"])
def test_bad_omp_num_threads_is_one_line(keep_threads, monkeypatch, value):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    with pytest.raises(ValueError, match=f"OMP_NUM_THREADS='{value}' is not a positive whole number"):
        threads.set_threads(None)
