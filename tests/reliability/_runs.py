"""Running train_net.py on a tiny phantom setup: paths, config overrides, a subprocess environment."""
import os
import subprocess
import sys
from pathlib import Path

import _tiny

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "projects" / "VolumetricAttention"
TRAIN_NET = PROJECT / "train_net.py"
VA_CONFIG = PROJECT / "configs" / "Phantom" / "mask_rcnn_R_18_FPN_GN_va_bag3.yaml"
BASELINE_CONFIG = PROJECT / "configs" / "Phantom" / "mask_rcnn_R_18_FPN_GN_baseline.yaml"
SLICE_SPACING = "2.0"

# CPU-sized: 64 px slices, a narrow model, no loader workers and no evaluation during training (after it, as
# configured); values go through str() onto the command line
TINY = _tiny.MODEL + _tiny.INPUT + _tiny.TRAIN + ["INPUT.CT.SLICE_SPACING", SLICE_SPACING]
NO_TEST = ["DATASETS.TEST", "()"]


def env(phantom_root):
    """The environment of a train_net.py subprocess: the dataset root, one thread per process.

    Two processes with two threads each on two busy cores run 20-30 times slower than with one thread each."""
    e = dict(os.environ, VA_DATASETS=str(phantom_root), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
             MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    e["CUDA_VISIBLE_DEVICES"] = ""  # the CPU path (gloo for --num-gpus N) even on a machine with a GPU
    return e


def train_net_cmd(opts, flags=(), config=VA_CONFIG):
    """``train_net.py --config-file CONFIG [flags] KEY VALUE ...`` (the options come last: argparse REMAINDER)."""
    return [sys.executable, str(TRAIN_NET), "--config-file", str(config), *flags, *map(str, opts)]


def run_train_net(opts, flags=(), *, phantom_root, config=VA_CONFIG, timeout=300):
    """Run train_net.py to the end; returns the CompletedProcess (text stdout/stderr)."""
    return subprocess.run(train_net_cmd(opts, flags, config=config), env=env(phantom_root), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def last_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
