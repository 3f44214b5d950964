import logging
import os
import sys

import pytest

# The helper module of these tests is imported by name.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _runs  # noqa: E402

# the loggers train_net.py's default_setup configures (handlers, level, no propagation to the root logger)
_SETUP_LOGGERS = ("detectron2", "fvcore", "volumetric_attention")


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory, load_tool):
    """$VA_DATASETS of a tiny prepared phantom dataset (4 cases of 12 x 48 x 48; 3 train, 1 val), in a folder whose
    name has a space and a non-ASCII letter."""
    root = tmp_path_factory.mktemp("va data ü")
    make_phantoms = load_tool("make_phantoms")
    code = make_phantoms.main([
        "--out", str(root / "phantom"), "--cache", str(root / "cache" / "phantom"), "--num-cases", "4",
        "--slices", "12", "--size", "48", "--slice-thickness", "2.0", "--slice-spacing", _runs.SLICE_SPACING,
    ])
    assert code == 0
    return root


@pytest.fixture
def train_net_in_process(load_tool, monkeypatch, keep_process_state):
    """``train_net_in_process(opts, flags=(), *, phantom_root, config=VA_CONFIG)``: what ``train_net.py`` does as
    a process (its ``__main__`` block: the parser, the overrides, ``launch(main)``), run in this process with the
    environment of :func:`_runs.env`. Returns the exit status the process would end with: 0, or the code of the
    ``SystemExit`` that stopped it (a one-line error is its message, which Python prints as the last line of stderr
    before exiting with status 1); any other exception propagates. The run's log is ``OUTPUT_DIR/log.txt``.

    For the checks whose subject is the process itself (exit status, stderr, kills, several processes), the tests
    keep at least one real train_net.py process (``_runs.run_train_net``). Afterwards the loggers default_setup
    configured, torch's thread count and the environment are as before (keep_process_state)."""
    from volumetric_attention.utils import cli

    from detectron2.utils.logger import setup_logger

    train_net = load_tool(_runs.TRAIN_NET)
    loggers = [logging.getLogger(name) for name in _SETUP_LOGGERS]
    saved = [(logger, list(logger.handlers), logger.propagate, logger.level) for logger in loggers]

    def run(opts, flags=(), *, phantom_root, config=_runs.VA_CONFIG):
        for key in ("VA_DATASETS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MPLBACKEND"):
            monkeypatch.setenv(key, _runs.env(phantom_root)[key])
        args = train_net.get_parser().parse_args(_runs.train_net_cmd(opts, flags, config=config)[2:])
        try:
            args.opts = cli.overrides_from_args(args)
            train_net.launch(train_net.main, args.num_gpus, num_machines=args.num_machines,
                             machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))
        except SystemExit as e:
            return 0 if e.code is None else e.code
        return 0

    yield run
    for logger, handlers, propagate, level in saved:
        for handler in [h for h in logger.handlers if h not in handlers]:
            logger.removeHandler(handler)
        logger.propagate, logger.level = propagate, level
    setup_logger.cache_clear()  # a later default_setup of the same OUTPUT_DIR adds its handlers again
