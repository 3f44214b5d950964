"""Running a study script (tools/zcontext_study.sh, tools/deeplesion_study.sh, tools/pretrained_study.sh) over run
folders a test made, or with a stand-in python that records what the script runs."""
import os
import subprocess
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]

# A stand-in for .venv/bin/python in a copy of a study script's checkout: it appends each call to $CALLS (one line,
# shell-quoted arguments); train_net.py --resume leaves a checkpoint, metrics.json and the $TEST_SET summary,
# --eval-only the summary of its DATASETS.TEST
FAKE_PYTHON = r"""#!/usr/bin/env bash
printf '%q ' "$@" >> "$CALLS"; echo >> "$CALLS"
case "$1" in
*train_net.py)
    prev=""
    for a in "$@"; do
        [ "$prev" = OUTPUT_DIR ] && dir=$a
        [ "$prev" = DATASETS.TEST ] && dataset=$(echo "$a" | tr -d '()",')
        prev=$a
    done
    echo "training output"
    if [ "$4" = --resume ]; then
        mkdir -p "$dir/inference/$TEST_SET"
        touch "$dir/model_final.pth" "$dir/metrics.json" "$dir/inference/$TEST_SET/$SUMMARY"
    else
        mkdir -p "$dir/inference/$dataset"
        touch "$dir/inference/$dataset/$SUMMARY"
    fi ;;
esac
"""


def finished_study_tables(script: str, datasets: Path, out: Path, runs: str) -> List[List[str]]:
    """Run ``tools/<script>`` on the prepared data under ``datasets`` and the finished runs of seed 0 in ``out``
    (STUDY_RUNS ``runs``); check that it exits 0 having trained and evaluated nothing.

    Returns:
        the rows of the tables it printed (header, then a row per run; the test set's table, then the training
        set's), each a list of cells.
    """
    env = dict(os.environ, STUDY_DATASETS=str(datasets), STUDY_OUT=str(out), STUDY_SEEDS="0", STUDY_RUNS=runs,
               OMP_NUM_THREADS="1")
    done = subprocess.run(["bash", str(ROOT / "tools" / script)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "==" not in done.stdout  # no training, no evaluation
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in done.stdout.splitlines() if line.startswith("| ")]
