"""Checkpoints: an interrupted or killed save leaves the previous checkpoint loadable; loading runs no pickled code."""
import logging
import os
import signal
import subprocess
import sys

import _runs
import pytest
import torch
from torch import nn

from volumetric_attention import get_va_cfg
from volumetric_attention.engine import CheckpointLoadError, VACheckpointer

from detectron2.modeling import build_model


def _model(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4))


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_save_interrupted_midway_keeps_previous_checkpoint(tmp_path, monkeypatch):
    folder = tmp_path / "out ü"
    model = _model(0)
    checkpointer = VACheckpointer(model, str(folder))
    checkpointer.save("model_0000001", iteration=1)

    real_save = torch.save

    def save_half_then_stop(obj, f, *args, **kwargs):
        f.write(b"\x80\x02half a checkpoint")
        raise KeyboardInterrupt  # e.g. Ctrl-C or a scheduler's SIGINT during the write

    monkeypatch.setattr(torch, "save", save_half_then_stop)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save("model_0000002", iteration=2)
    monkeypatch.setattr(torch, "save", real_save)

    assert sorted(os.listdir(folder)) == ["last_checkpoint", "model_0000001.pth"]  # no partial file, no temp file
    assert (folder / "last_checkpoint").read_text() == "model_0000001.pth"
    fresh = _model(1)
    extra = VACheckpointer(fresh, str(folder)).resume_or_load("", resume=True)
    assert extra["iteration"] == 1
    assert _same_weights(fresh, _model(0))


KILL_DURING_SAVE = r"""
import os, signal, sys
import torch
from torch import nn
from volumetric_attention.engine import VACheckpointer

torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4))
checkpointer = VACheckpointer(model, sys.argv[1])
checkpointer.save("model_0000001", iteration=1)

def save_half_then_die(obj, f, *args, **kwargs):
    f.write(b"\x80\x02half a checkpoint")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)

torch.save = save_half_then_die
checkpointer.save("model_0000002", iteration=2)
"""


@pytest.mark.slow
def test_sigkill_during_save_keeps_previous_checkpoint_and_next_save_cleans_up(tmp_path):
    folder = tmp_path / "out ü"
    proc = subprocess.run([sys.executable, "-c", KILL_DURING_SAVE, str(folder)], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]

    names = sorted(os.listdir(folder))
    # the temporary file of the killed save is all that is left of it; it is not a checkpoint name
    assert [n for n in names if not n.startswith(".")] == ["last_checkpoint", "model_0000001.pth"]
    stale = [n for n in names if n.startswith(".")]
    assert len(stale) == 1 and stale[0].startswith(".model_0000002.pth.") and stale[0].endswith(".tmp")
    assert (folder / "last_checkpoint").read_text() == "model_0000001.pth"
    model = _model(1)
    checkpointer = VACheckpointer(model, str(folder))
    assert checkpointer.resume_or_load("", resume=True)["iteration"] == 1
    assert _same_weights(model, _model(0))

    # the resumed job saves the same name again: the killed job's temporary file goes
    checkpointer.save("model_0000002", iteration=2)
    assert sorted(os.listdir(folder)) == ["last_checkpoint", "model_0000001.pth", "model_0000002.pth"]


class _RunsCodeWhenUnpickled:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_checkpoint_with_pickled_object_is_refused_with_one_line(tmp_path):
    marker = tmp_path / "code ran"
    path = tmp_path / "dir ü" / "model_final.pth"
    path.parent.mkdir()
    model = _model(0)
    torch.save({"model": model.state_dict(), "iteration": 5, "extra": _RunsCodeWhenUnpickled(str(marker))}, path)

    for load in (lambda c: c.load(str(path)), lambda c: c.resume_or_load(str(path), resume=False)):
        with pytest.raises(RuntimeError) as info:
            load(VACheckpointer(_model(1)))
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith(f"{path}: not a loadable tensor checkpoint")
        assert not marker.exists()  # the pickled call did not run

    # the same dict without the object loads: the refusal is about the object, not the file
    torch.save({"model": model.state_dict(), "iteration": 5}, path)
    fresh = _model(1)
    assert VACheckpointer(fresh).load(str(path))["iteration"] == 5
    assert _same_weights(fresh, model)


class _PlainObject:
    pass


def test_refusal_names_a_pickled_class_without_escape_codes(tmp_path):
    # torch's message for a class outside its allow-list has bold-text escape codes and many lines
    path = tmp_path / "model_final.pth"
    torch.save({"model": _model(0).state_dict(), "extra": _PlainObject()}, path)
    with pytest.raises(CheckpointLoadError) as info:
        VACheckpointer(_model(1)).load(str(path))
    assert str(info.value) == (f"{path}: not a loadable tensor checkpoint: refused the pickled object "
                               f"{__name__}._PlainObject (loading it could run code; only tensors and plain "
                               "containers are loaded)")
    # a file that is no checkpoint at all: torch's first line, still one line
    path.write_bytes(b"not a zip archive")
    with pytest.raises(CheckpointLoadError, match=r"not a loadable tensor checkpoint \(") as info:
        VACheckpointer(_model(1)).load(str(path))
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)


def test_training_init_from_another_architecture_logs_what_it_skips(tmp_path):
    """Training (not --eval-only) keeps detectron2's lenient loading, as fine-tuning from another model needs:
    parameters of another shape are skipped and missing ones reported in the log, and they keep their init."""
    source = nn.Sequential(nn.Conv2d(3, 4, 3))
    VACheckpointer(source, str(tmp_path)).save("other")
    torch.manual_seed(1)
    target = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8))
    before = {k: v.clone() for k, v in target.state_dict().items()}

    checkpointer = VACheckpointer(target)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    checkpointer.logger.addHandler(handler)
    try:
        checkpointer.resume_or_load(str(tmp_path / "other.pth"), resume=False)
    finally:
        checkpointer.logger.removeHandler(handler)
    log = "\n".join(r.getMessage() for r in records)
    assert "Skip loading parameter '0.weight'" in log and "(4, 3, 3, 3) in the checkpoint" in log
    assert "not found in the checkpoint" in log and "1.{bias, weight}" in log
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


@pytest.mark.slow
def test_unsafe_checkpoint_gives_one_line_on_every_path(phantom_root, tmp_path, train_net_in_process):
    """--eval-only, training from MODEL.WEIGHTS and training with --resume refuse a checkpoint holding a pickled
    object with the same line: the file and the refused object, no traceback, no terminal escape codes.

    --resume runs as a train_net.py process (its exit status and stderr); the other two paths through train_net.py's
    main in this process, where the line is the message of the SystemExit that ends it."""
    marker = tmp_path / "code ran"
    out = tmp_path / "run ü"
    out.mkdir()
    path = out / "model_0000004.pth"
    model = build_model(get_va_cfg(str(_runs.VA_CONFIG), _runs.TINY))
    torch.save({"model": model.state_dict(), "iteration": 4, "extra": _RunsCodeWhenUnpickled(str(marker))}, path)
    (out / "last_checkpoint").write_text(path.name)
    expected = (f"error: {path}: not a loadable tensor checkpoint: refused the pickled object posix.mkdir "
                "(loading it could run code; only tensors and plain containers are loaded)")
    runs = {
        "--eval-only": (["MODEL.WEIGHTS", path], ["--eval-only"]),
        "MODEL.WEIGHTS": (["MODEL.WEIGHTS", path], []),
        "--resume": ([], ["--resume"]),
    }
    for what, (opts, flags) in runs.items():
        opts = _runs.TINY + ["SOLVER.MAX_ITER", "5", "OUTPUT_DIR", out] + opts
        if what == "--resume":
            proc = _runs.run_train_net(opts, flags, phantom_root=phantom_root)
            assert proc.returncode != 0, what
            assert "Traceback" not in proc.stderr, (what, proc.stderr[-3000:])
            assert "Weights only load failed" not in proc.stdout + proc.stderr, what  # torch's many-line message
            assert _runs.last_line(proc.stderr) == expected, (what, proc.stderr[-3000:])
            assert not marker.exists(), what
            assert "Starting training" not in proc.stdout + proc.stderr, what
        else:
            code = train_net_in_process(opts, flags, phantom_root=phantom_root)
            log = (out / "log.txt").read_text()
            assert code == expected, (what, code)  # a SystemExit with the line, not another exception
            assert "Weights only load failed" not in code + log, what  # torch's many-line message
            assert not marker.exists(), what
            assert "Starting training" not in log, what


def test_trainer_hook_saves_through_the_va_checkpointer(phantom_root, tmp_path, monkeypatch):
    """VATrainer builds detectron2's trainer with the project's checkpointer: the PeriodicCheckpointer hook saves
    through the same VACheckpointer (atomic saves, tensors-only loading) that resume_or_load loads with."""
    from volumetric_attention.engine import VATrainer

    from detectron2.engine import hooks

    monkeypatch.setenv("VA_DATASETS", str(phantom_root))
    trainer = VATrainer(get_va_cfg(str(_runs.VA_CONFIG), _runs.TINY + _runs.NO_TEST + ["OUTPUT_DIR", str(tmp_path)]))
    periodic = [h for h in trainer._hooks if isinstance(h, hooks.PeriodicCheckpointer)]
    assert isinstance(trainer.checkpointer, VACheckpointer)
    assert len(periodic) == 1 and periodic[0].checkpointer is trainer.checkpointer
    assert trainer.checkpointer.model is trainer.model
