"""train_net.py's start: its log (threads, the project's own lines, no colour, no known third-party noise), both
override forms, and one-line refusals of an empty split or a cache of other settings before the model is built."""
import _runs
import pytest

KNOWN_NOISE = ("torch.jit.script", "torch.meshgrid", "is_fx_tracing", "No CUDA runtime", "not writable")


@pytest.mark.slow
def test_log_has_threads_and_project_lines_without_colour_or_known_noise(phantom_root, tmp_path):
    out = tmp_path / "out"
    opts = _runs.TINY + ["SOLVER.MAX_ITER", "1", "OUTPUT_DIR", str(out)]
    # half the overrides positional, half after --opts
    cut = len(opts) // 2 // 2 * 2
    run = _runs.run_train_net(opts[:cut] + ["--opts"] + opts[cut:], flags=["--threads", "1"],
                              phantom_root=phantom_root)
    assert run.returncode == 0, run.stderr[-3000:]
    console = run.stdout + run.stderr
    log = (out / "log.txt").read_text()
    for text in (console, log):
        assert "\x1b[" not in text  # detectron2's pygments config dump and coloured prefixes
        assert "torch threads: 1 (--threads)" in text
        assert "LiTS 3D metrics on phantom_val (1 cases)" in text  # the project's evaluator
        assert "[VolumetricDatasetMapper] bag size 3" in text  # the project's mapper
    for noise in KNOWN_NOISE:
        assert noise not in console
    assert "  MAX_ITER: 1\n" in (out / "config.yaml").read_text()  # an override given after --opts


@pytest.fixture(scope="module")
def two_case_root(tmp_path_factory, load_tool):
    """A dataset root whose phantom cache has 2 cases: both train, none in val."""
    root = tmp_path_factory.mktemp("two cases")
    code = load_tool("make_phantoms").main([
        "--out", str(root / "phantom"), "--cache", str(root / "cache" / "phantom"), "--num-cases", "2",
        "--slices", "12", "--size", "48", "--slice-thickness", "2.0", "--slice-spacing", _runs.SLICE_SPACING])
    assert code == 0
    return root


def _refused_before_the_model(run):
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    assert "GeneralizedRCNN(" not in run.stdout  # detectron2 logs the model once it is built
    return _runs.last_line(run.stderr)


@pytest.mark.slow
def test_empty_split_stops_with_one_line(two_case_root, tmp_path):
    run = _runs.run_train_net(_runs.TINY + ["SOLVER.MAX_ITER", "1", "OUTPUT_DIR", str(tmp_path)],
                              phantom_root=two_case_root)
    line = _refused_before_the_model(run)
    index = two_case_root / "cache" / "phantom" / "index.json"
    assert line == (f"error: dataset phantom_val (DATASETS.TEST) is empty: no case of split 'val' in {index} (cases "
                    "per split: train 2); prepare more cases (every 4th labeled LiTS case goes to val) or set "
                    "DATASETS.TEST to other datasets, e.g. DATASETS.TEST \"('phantom_train',)\" or \"()\" to skip "
                    "evaluation")


def test_cache_of_other_slice_spacing_stops_with_one_line(phantom_root, tmp_path, train_net_in_process):
    # train_net.py's main in this process (the same refusal as a process: test_empty_split_stops_with_one_line)
    line = train_net_in_process(_runs.TINY + ["INPUT.CT.SLICE_SPACING", "1.5", "SOLVER.MAX_ITER", "1",
                                              "OUTPUT_DIR", str(tmp_path)], phantom_root=phantom_root)
    assert isinstance(line, str) and "\n" not in line, line  # a SystemExit with one line, not another exception
    assert "GeneralizedRCNN(" not in (tmp_path / "log.txt").read_text()  # detectron2 logs the model once it is built
    assert line.startswith("error: dataset phantom_train (DATASETS.TRAIN): ")
    assert "(slice_spacing cached 2.0 vs config 1.5); re-run python tools/make_phantoms.py" in line
    assert line.endswith("or use the cache's settings: INPUT.CT.SLICE_SPACING 2.0")


def test_prepare_tools_print_cases_per_split(two_case_root, tmp_path, capsys, load_tool):
    code = load_tool("make_phantoms").main([
        "--out", str(two_case_root / "phantom"), "--cache", str(two_case_root / "cache" / "phantom"),
        "--num-cases", "2", "--slices", "12", "--size", "48", "--slice-thickness", "2.0",
        "--opts", "INPUT.CT.SLICE_SPACING", _runs.SLICE_SPACING])  # the --opts form of the overrides
    assert code == 0
    err = capsys.readouterr().err
    assert "0 prepared, 2 already done" in err  # same settings through --opts: nothing rebuilt
    assert "cases per split: train 2, val 0\n" in err
    assert ("warning: split 'val' is empty: phantom_val cannot be used in DATASETS.TRAIN or DATASETS.TEST\n") in err


def test_every_tool_takes_both_override_forms(load_tool):
    from volumetric_attention.utils.cli import config_overrides

    train_net = load_tool(_runs.TRAIN_NET)
    predict = load_tool("predict")
    prepare = load_tool("prepare_lits")
    stats = load_tool("attention_stats")
    pairs = ["MODEL.DEVICE", "cpu", "SEED", "3"]
    parsers = {
        "train_net": (train_net.get_parser(), ["--config-file", "c.yaml"]),
        "predict": (predict.get_parser(), ["--config-file", "c.yaml", "--input", "a.nii", "--output", "o"]),
        "prepare_lits": (prepare.build_parser(), ["--config-file", "c.yaml"]),
        "attention_stats": (stats.get_parser(), ["--config-file", "c.yaml"]),
    }
    for name, (parser, base) in parsers.items():
        for argv in (base + pairs, base + ["--opts"] + pairs, base + pairs[:2] + ["--opts"] + pairs[2:]):
            assert config_overrides(parser.parse_args(argv)) == pairs, (name, argv)
