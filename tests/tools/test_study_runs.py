"""The run loop of the study scripts (tools/_study_runs.sh, used by tools/zcontext_study.sh and
tools/deeplesion_study.sh), run with a stand-in python that records its command lines and leaves what a finished
training or evaluation leaves: which runs train (--resume), which get the collapse check, where the overrides go and
what the tables are asked for."""
import os
import shlex
import subprocess
from pathlib import Path

import pytest
from _study_scripts import FAKE_PYTHON

ROOT = Path(__file__).resolve().parents[2]

CONFIGS = "projects/VolumetricAttention/configs"
ZCONTEXT = f"{CONFIGS}/Phantom/zcontext_liver_semantic_R_18_FPN_GN"
DEEPLESION = f"{CONFIGS}/DeepLesion/faster_rcnn_R_18_FPN_GN"
# per script: its cache index, (test set, training set, summary), the runs' rows and configs, the second run's own
# overrides, the script's overrides for every run ({datasets}: STUDY_DATASETS), the tables' kind arguments, the test
# table's own arguments ({out}: STUDY_OUT), what the collapse check's line says it evaluates
STUDIES = {
    "zcontext_study.sh": dict(
        index="cache/phantom/index.json", sets=("phantom_val", "phantom_train", "lits_summary.json"),
        runs={"baseline": ("baseline (2.5D, 3 slices)", f"{ZCONTEXT}_baseline.yaml"),
              "va_dot": ("VA, dot product (paper)", f"{ZCONTEXT}_va_bag3.yaml")},
        opts=["MODEL.VA.SIMILARITY", "dot"], every=[], kind=[], table=[], items="training cases"),
    "deeplesion_study.sh": dict(
        index="cache/deeplesion/index.json", sets=("deeplesion_test", "deeplesion_train", "deeplesion_summary.json"),
        runs={"baseline": ("baseline (2.5D, 3 slices)", f"{DEEPLESION}_baseline.yaml"),
              "va": ("VA, cosine similarity", f"{DEEPLESION}_va_bag3.yaml")},
        opts=[], every=["TEST.CT.LOOKALIKES", "{datasets}/DeepLesion/lookalikes.json"], kind=["--kind", "deeplesion"],
        table=["--froc-plot", "{out}/froc.png"], items="training key slices"),
}


def _checkout(tmp_path, script, study):
    """A checkout holding the script, the shared loop, the configs and the stand-in python; its environment."""
    root = tmp_path / "checkout"
    (root / "tools").mkdir(parents=True)
    for name in (script, "_study_runs.sh"):
        (root / "tools" / name).write_text((ROOT / "tools" / name).read_text())
    (root / "projects").symlink_to(ROOT / "projects")
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "python").write_text(FAKE_PYTHON)
    (root / ".venv" / "bin" / "python").chmod(0o755)
    test_set, _, summary = study["sets"]
    env = dict(os.environ, STUDY_DATASETS=str(tmp_path / "datasets"), STUDY_OUT=str(tmp_path / "out"),
               STUDY_SEEDS="0 1", STUDY_RUNS=" ".join(study["runs"]), CALLS=str(tmp_path / "calls"),
               TEST_SET=test_set, SUMMARY=summary)
    return root, env


def _run(root, script, env, *overrides):
    """(exit status, stdout, stderr, the recorded calls as argument lists); the calls are cleared."""
    done = subprocess.run(["bash", str(root / "tools" / script), *overrides], env=env, capture_output=True,
                          text=True, timeout=60)
    calls_file = Path(env["CALLS"])
    calls = [shlex.split(line) for line in calls_file.read_text().splitlines()] if calls_file.exists() else []
    calls_file.unlink(missing_ok=True)
    return done.returncode, done.stdout, done.stderr, calls


def _finish(folder, datasets, summary, checkpoint=True):
    """What a run leaves: the summaries of its evaluations on ``datasets`` and, with ``checkpoint``, its last
    checkpoint (without it: an interrupted run)."""
    for dataset in datasets:
        (folder / "inference" / dataset).mkdir(parents=True, exist_ok=True)
        (folder / "inference" / dataset / summary).write_text("{}")
    if checkpoint:
        (folder / "model_final.pth").write_bytes(b"")


@pytest.mark.parametrize("script", sorted(STUDIES))
def test_unfinished_runs_train_and_get_the_collapse_check_then_both_tables(tmp_path, script):
    study = STUDIES[script]
    root, env = _checkout(tmp_path, script, study)
    test_set, train_set, summary = study["sets"]
    out = tmp_path / "out"
    (first, (first_label, first_config)), (second, (second_label, second_config)) = study["runs"].items()
    _finish(out / f"{first}_s0", [test_set, train_set], summary)  # done
    _finish(out / f"{second}_s1", [test_set], summary)  # trained, the collapse check missing
    _finish(out / f"{first}_s1", [test_set], summary, checkpoint=False)  # interrupted
    user_overrides = ["SOLVER.MAX_ITER", "5", "MODEL.NAME", "a b"]
    status, stdout, stderr, calls = _run(root, script, env, *user_overrides)
    # the script's own overrides for every run come before the user's
    overrides = [a.format(datasets=env["STUDY_DATASETS"]) for a in study["every"]] + user_overrides
    table = [a.format(out=out) for a in study["table"]]
    assert status == 0, stderr
    # no cache yet: the data are made first, with the VA config (the second run's)
    assert calls[0][0] == "tools/make_phantoms.py" and second_config in calls[0]
    train_net = "projects/VolumetricAttention/train_net.py"

    def train(name, config, seed, opts=()):
        return [train_net, "--config-file", config, "--resume", "OUTPUT_DIR", str(out / f"{name}_s{seed}"),
                "SEED", str(seed), *opts, *overrides]

    def collapse_check(name, config, seed, opts=()):
        folder = out / f"{name}_s{seed}"
        return [train_net, "--config-file", config, "--eval-only", "OUTPUT_DIR", str(folder), "SEED", str(seed),
                *opts, *overrides, "MODEL.WEIGHTS", str(folder / "model_final.pth"), "DATASETS.TEST",
                f'("{train_set}",)']

    opts = study["opts"]
    assert calls[1:-2] == [train(second, second_config, 0, opts), collapse_check(second, second_config, 0, opts),
                           train(first, first_config, 1), collapse_check(first, first_config, 1),
                           collapse_check(second, second_config, 1, opts)]
    specs = [f"{first_label}={out / f'{first}_s0'},{out / f'{first}_s1'}",
             f"{second_label}={out / f'{second}_s0'},{out / f'{second}_s1'}"]
    assert calls[-2:] == [["tools/study_table.py", *specs, *study["kind"], *table, "--json", str(out / "study.json")],
                          ["tools/study_table.py", *specs, *study["kind"], "--dataset", train_set, "--json",
                           str(out / "study_train.json")]]
    # what each step announces (a run's own overrides with it); an evaluation's own output is not shown
    check = f"the collapse check on its own {study['items']}"
    assert [line.rstrip() for line in stdout.splitlines() if line.startswith("==")] == [
        f"== {second}, SEED 0" + (f" ({' '.join(opts)})" if opts else ""), f"== {second}, SEED 0: {check}",
        f"== {first}, SEED 1", f"== {first}, SEED 1: {check}", f"== {second}, SEED 1: {check}"]
    assert stdout.count("training output") == 2

    # everything done: only the tables
    Path(env["STUDY_DATASETS"], study["index"]).parent.mkdir(parents=True)
    Path(env["STUDY_DATASETS"], study["index"]).write_text("{}")
    status, stdout, _, calls = _run(root, script, env, *user_overrides)
    assert status == 0 and "==" not in stdout
    assert [c[0] for c in calls] == ["tools/study_table.py"] * 2


@pytest.mark.parametrize("profile", ["zcontext_liver", "zcontext_small"])
def test_equal_time_row_trains_its_own_longer_schedule(tmp_path, profile):
    from volumetric_attention import get_va_cfg

    study = STUDIES["zcontext_study.sh"]
    root, env = _checkout(tmp_path, "zcontext_study.sh", study)
    env.update(STUDY_SEEDS="0", STUDY_RUNS="early_fusion_equal_time", STUDY_PROFILE=profile)
    Path(env["STUDY_DATASETS"], study["index"]).parent.mkdir(parents=True)
    Path(env["STUDY_DATASETS"], study["index"]).write_text("{}")
    status, _, stderr, calls = _run(root, "zcontext_study.sh", env)
    trained = [c for c in calls if "--resume" in c]
    config = f"{CONFIGS}/Phantom/zcontext_liver_semantic_R_18_FPN_GN_early_fusion.yaml"  # both profiles' models
    assert status == 0, stderr
    assert len(trained) == 1 and trained[0][2] == config
    # the run: early fusion, longer, with the LR steps at the same fractions of the schedule
    opts = trained[0][trained[0].index("--resume") + 1:]
    equal, base = get_va_cfg(str(ROOT / config), opts), get_va_cfg(str(ROOT / config))
    assert equal.MODEL.BACKBONE.NAME == base.MODEL.BACKBONE.NAME == "build_early_fusion_resnet_fpn_backbone"
    assert equal.SOLVER.MAX_ITER > base.SOLVER.MAX_ITER
    assert [s / equal.SOLVER.MAX_ITER for s in equal.SOLVER.STEPS] == pytest.approx(
        [s / base.SOLVER.MAX_ITER for s in base.SOLVER.STEPS], abs=0.01)
