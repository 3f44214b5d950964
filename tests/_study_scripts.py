"""Running a study script (tools/zcontext_study.sh, tools/deeplesion_study.sh) over run folders a test made."""
import os
import subprocess
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]


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
