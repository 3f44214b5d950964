"""tools/pretrained_study.sh, run with a stand-in python that records its command lines and leaves what a finished
training or evaluation leaves: the pretraining (made once, on phantoms of another seed), the columns' overrides,
the pretrained VA rows' gates, and the record of every run."""
import os
import shlex
import subprocess
from pathlib import Path

from _study_scripts import FAKE_PYTHON

ROOT = Path(__file__).resolve().parents[2]
C = "projects/VolumetricAttention/configs/Phantom/zcontext_liver_semantic_R_18_FPN_GN"
TRAIN_NET = "projects/VolumetricAttention/train_net.py"


def _study(tmp_path, **env):
    root = tmp_path / "checkout"
    if not root.exists():
        (root / "tools").mkdir(parents=True)
        for name in ("pretrained_study.sh", "_study_runs.sh"):
            (root / "tools" / name).write_text((ROOT / "tools" / name).read_text())
        (root / "projects").symlink_to(ROOT / "projects")
        python = root / ".venv" / "bin" / "python"
        python.parent.mkdir(parents=True)
        python.write_text(FAKE_PYTHON)
        python.chmod(0o755)
    calls = tmp_path / "calls"
    done = subprocess.run(["bash", str(root / "tools" / "pretrained_study.sh"), "MODEL.X", "1"], cwd=root,
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, STUDY_OUT=str(tmp_path / "out"), STUDY_SEEDS="0",
                                   STUDY_PRETRAIN=str(tmp_path / "pre"), STUDY_RECORD=str(tmp_path / "runs.json"),
                                   CALLS=str(calls), TEST_SET="phantom_val", SUMMARY="lits_summary.json", **env))
    assert done.returncode == 0, done.stderr
    recorded = [shlex.split(line) for line in calls.read_text().splitlines()]
    calls.unlink()
    return recorded


def _trainings(calls):
    return [c for c in calls if c[0] == TRAIN_NET and "--resume" in c]


def _opts(call):
    """KEY VALUE pairs after the run's OUTPUT_DIR."""
    rest = call[call.index("OUTPUT_DIR"):]
    return dict(zip(rest[::2], rest[1::2]))


def test_pretraining_then_each_column_from_its_start(tmp_path):
    calls = _study(tmp_path, STUDY_RUNS="baseline va_context_features")
    makes = [c for c in calls if c[0] == "tools/make_phantoms.py"]
    # the fine-tuning phantoms (seed 0) and the pretraining phantoms of another seed, then the pretraining
    assert [(c[c.index("--profile") + 1], c[c.index("--seed") + 1]) for c in makes] == [
        ("zcontext_small", "0"), ("zcontext_liver", "1")]
    trainings = _trainings(calls)
    pretraining = trainings[0]
    assert pretraining[2] == f"{C}_baseline.yaml" and _opts(pretraining)["OUTPUT_DIR"] == str(tmp_path / "pre")
    assert "DATASETS.TRAIN_FIRST_CASES" not in pretraining
    runs = {(_opts(c)["OUTPUT_DIR"].split("/")[-2], _opts(c)["OUTPUT_DIR"].split("/")[-1]): _opts(c)
            for c in trainings[1:]}
    assert set(runs) == {(col, f"{row}_s0") for col in ("scratch_k3", "pretrained_k3", "pretrained_k15")
                         for row in ("baseline", "va_context_features")}
    weights = str(tmp_path / "pre" / "model_final.pth")
    for (column, run), opts in runs.items():
        assert opts["SOLVER.MAX_ITER"] == "1000" and opts["MODEL.X"] == "1"  # one schedule; the user's last
        assert opts["DATASETS.TRAIN_FIRST_CASES"] == ("15" if column.endswith("k15") else "3")
        assert opts.get("MODEL.WEIGHTS") == (weights if column.startswith("pretrained") else None)
        # the pretrained VA rows start their gates at sigmoid(3), as the LiTS configs do; scratch keeps 0.5
        assert opts.get("MODEL.VA.GATE_BIAS_INIT") == (
            "3.0" if column.startswith("pretrained") and run.startswith("va") else None)
    # the pretrained baseline not fine-tuned, evaluated on the fine-tuning set's held-out cases
    zero_shot = [c for c in calls if c[0] == TRAIN_NET and "zero_shot" in _opts(c)["OUTPUT_DIR"]]
    assert len(zero_shot) == 1 and zero_shot[0][1:4] == ["--config-file", f"{C}_baseline.yaml", "--eval-only"]
    assert _opts(zero_shot[0]) == {"OUTPUT_DIR": str(tmp_path / "out/zero_shot/baseline_s0"), "MODEL.WEIGHTS": weights}
    # each run's values go to the record, held-out and training cases, after the starting point's
    records = [c for c in calls if c[0] == "tools/study_table.py" and "--record" in c]
    assert all(c[c.index("--record") + 1] == str(tmp_path / "runs.json") for c in records)
    assert [c[1].split("=", 1)[1] for c in records[:2]] == [str(tmp_path / "pre"), zero_shot[0][-3]]
    assert len(records) == 2 + 2 * len(runs)
    assert calls[-1] == ["tools/learning_curve.py", str(tmp_path / "runs.json")]


def test_a_column_s_rows_and_a_row_s_own_overrides(tmp_path):
    calls = _study(tmp_path, STUDY_COLUMNS="scratch_k3", STUDY_RUNS="early_fusion_inflate va_context_no_grad threedce")
    trainings = _trainings(calls)
    # scratch needs no pretraining; the rows not in the column are skipped
    assert [_opts(c)["OUTPUT_DIR"].split("/")[-1] for c in trainings] == ["threedce_s0"]
    assert trainings[0][2] == f"{C}_3dce_bag3.yaml"
    calls = _study(tmp_path, STUDY_COLUMNS="pretrained_k3", STUDY_RUNS="early_fusion_inflate va_paper")
    runs = {_opts(c)["OUTPUT_DIR"].split("/")[-1]: (c[2], _opts(c)) for c in _trainings(calls)}
    assert runs["early_fusion_inflate_s0"][0] == f"{C}_early_fusion.yaml"
    assert runs["early_fusion_inflate_s0"][1]["MODEL.EARLY_FUSION.STEM_INIT"] == "inflate"
    assert runs["va_paper_s0"][0] == f"{C}_va_bag3.yaml"


def test_another_fine_tuning_profile(tmp_path):
    calls = _study(tmp_path, STUDY_FINETUNE="zcontext_liver", STUDY_COLUMNS="scratch_k3", STUDY_RUNS="baseline")
    makes = [c for c in calls if c[0] == "tools/make_phantoms.py"]
    assert [(c[c.index("--profile") + 1], c[c.index("--seed") + 1]) for c in makes] == [("zcontext_liver", "0")]
    assert len(_trainings(calls)) == 1
