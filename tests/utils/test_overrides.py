"""Config overrides: trailing KEY VALUE pairs and pairs after --opts, in both forms and mixed; one-line errors."""
import argparse

import pytest

from volumetric_attention.utils import overrides


def _parse(positional, argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--config-file")
    overrides.add_override_arguments(parser, positional=positional)
    return parser.parse_args(argv)


@pytest.mark.parametrize("argv", [
    ["--config-file", "c.yaml", "MODEL.DEVICE", "cpu", "SOLVER.MAX_ITER", "3"],
    ["--config-file", "c.yaml", "--opts", "MODEL.DEVICE", "cpu", "SOLVER.MAX_ITER", "3"],
    ["--config-file", "c.yaml", "MODEL.DEVICE", "cpu", "--opts", "SOLVER.MAX_ITER", "3"],
])
def test_both_override_forms_give_the_same_list(argv):
    assert overrides.config_overrides(_parse(True, argv)) == ["MODEL.DEVICE", "cpu", "SOLVER.MAX_ITER", "3"]


def test_override_errors_are_one_line():
    with pytest.raises(ValueError, match="^config overrides must be KEY VALUE pairs; got 3 items: A 1 B$"):
        overrides.config_overrides(_parse(True, ["A", "1", "B"]))
    with pytest.raises(ValueError, match="^option --config-file after the config overrides; put KEY VALUE pairs last$"):
        overrides.config_overrides(_parse(True, ["--opts", "A", "1", "--config-file", "x"]))
    # negative numbers are values, not options
    assert overrides.config_overrides(_parse(True, ["SEED", "-1"])) == ["SEED", "-1"]
