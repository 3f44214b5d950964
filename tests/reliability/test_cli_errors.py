"""train_net.py stops with one line naming the culprit: a config key typo (in the options or in a yaml file),
and --eval-only weights of another architecture (detectron2 alone would warn, skip them and evaluate a half-loaded
model). The refusal of the weights runs as a train_net.py process (exit status, stderr); the other runs go through
train_net.py's main in this process."""
import _runs
import pytest
import torch

from volumetric_attention import get_va_cfg
from volumetric_attention.engine import VACheckpointer

from detectron2.modeling import build_model


def _assert_one_line_error(proc, *parts):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = _runs.last_line(proc.stderr)
    assert line.startswith("error: "), proc.stderr[-3000:]
    for part in parts:
        assert str(part) in line, line


def _assert_one_line_exit(code, *parts):
    """The in-process form of :func:`_assert_one_line_error`: the run stopped with ``SystemExit("error: ...")``,
    whose one-line message Python prints as the process's last stderr line, with exit status 1 and no traceback
    (a real train_net.py process shows that in test_eval_only_refuses_weights_of_another_architecture)."""
    assert isinstance(code, str) and "\n" not in code, code
    assert code.startswith("error: "), code
    for part in parts:
        assert str(part) in code, code


def test_option_key_typo_names_the_key(phantom_root, tmp_path, train_net_in_process):
    code = train_net_in_process(["MODEL.VA.BAGSIZE", "3", "OUTPUT_DIR", tmp_path / "out"], phantom_root=phantom_root)
    _assert_one_line_exit(code, "Non-existent key: MODEL.VA.BAGSIZE", _runs.VA_CONFIG)
    assert not (tmp_path / "out").exists()  # stopped before default_setup wrote anything


def test_yaml_key_typo_names_the_key_and_the_file(phantom_root, tmp_path, train_net_in_process):
    config = tmp_path / "my config ü.yaml"
    config.write_text(f'_BASE_: "{_runs.VA_CONFIG}"\nMODEL:\n  VA:\n    BAGSIZE: 3\n')
    code = train_net_in_process(["OUTPUT_DIR", tmp_path / "out"], config=config, phantom_root=phantom_root)
    _assert_one_line_exit(code, "Non-existent config key: MODEL.VA.BAGSIZE", config)


def _save_tiny(config, path):
    torch.manual_seed(0)
    model = build_model(get_va_cfg(str(config), _runs.TINY))
    VACheckpointer(model, str(path.parent)).save(path.stem)
    return path


@pytest.mark.slow
def test_eval_only_refuses_weights_of_another_architecture(phantom_root, tmp_path):
    # a baseline Mask R-CNN (no VA, 3-channel stem) given to the VA config
    weights = _save_tiny(_runs.BASELINE_CONFIG, tmp_path / "baseline ü" / "model_final.pth")
    proc = _runs.run_train_net(_runs.TINY + ["MODEL.WEIGHTS", weights, "OUTPUT_DIR", tmp_path / "out"], ["--eval-only"],
                               phantom_root=phantom_root)
    _assert_one_line_error(proc, weights, "does not match the config's model", "missing backbone.va")
    assert "Start inference" not in proc.stdout + proc.stderr


def test_eval_only_with_matching_weights_evaluates(phantom_root, tmp_path, train_net_in_process):
    weights = _save_tiny(_runs.VA_CONFIG, tmp_path / "va ü" / "model_final.pth")
    out = tmp_path / "out ü"
    code = train_net_in_process(_runs.TINY + ["MODEL.WEIGHTS", weights, "OUTPUT_DIR", out], ["--eval-only"],
                                phantom_root=phantom_root)
    log = (out / "log.txt").read_text()
    assert code == 0, log[-4000:]
    assert "copypaste: Task: lits" in log
    assert (out / "inference" / "phantom_val").is_dir()
