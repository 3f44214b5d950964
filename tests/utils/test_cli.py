"""The start-up every tool goes through: one-line errors for a config typo, bad overrides and bad thread counts."""
import argparse
from pathlib import Path

import pytest

from volumetric_attention.utils import cli
from volumetric_attention.utils.overrides import add_override_arguments

CONFIG = str(Path(__file__).resolve().parents[2] / "projects" / "VolumetricAttention" / "configs" / "Phantom"
             / "mask_rcnn_R_18_FPN_GN_va_bag3.yaml")


def _args(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--config-file")
    add_override_arguments(parser)
    return parser.parse_args(argv)


def test_config_typo_ends_in_one_line():
    with pytest.raises(SystemExit) as e:
        cli.config_from_args(_args(["--config-file", CONFIG, "SOLVER.BASE_LRR", "1"]))
    assert e.value.code == f"error: {CONFIG} + command-line options: Non-existent key: SOLVER.BASE_LRR"


def test_missing_config_file_and_bad_overrides_end_in_one_line(tmp_path):
    with pytest.raises(SystemExit) as e:
        cli.load_config(str(tmp_path / "missing.yaml"))
    assert e.value.code.startswith(f"error: {tmp_path / 'missing.yaml'}: ") and "\n" not in e.value.code
    with pytest.raises(SystemExit) as e:
        cli.config_from_args(_args(["--config-file", CONFIG, "SOLVER.BASE_LR"]))
    assert e.value.code == "error: config overrides must be KEY VALUE pairs; got 1 items: SOLVER.BASE_LR"


def test_a_good_config_loads():
    cfg = cli.config_from_args(_args(["--config-file", CONFIG, "--opts", "SOLVER.BASE_LR", "0.5"]))
    assert cfg.SOLVER.BASE_LR == 0.5 and cfg.MODEL.VA.BAG_SIZE == 3


def test_bad_thread_count_ends_in_one_line(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "two")
    with pytest.raises(SystemExit) as e:
        cli.setup_cli(None, log=False)
    assert e.value.code == "error: OMP_NUM_THREADS='two' is not a positive whole number"


def test_one_line_keeps_a_key_error_unquoted():
    assert cli.one_line(KeyError("Non-existent key: A.B")) == "Non-existent key: A.B"
    assert cli.one_line(ValueError("two\n  lines")) == "two lines"
