"""What every command-line process of the project does first (``tools/*.py``, ``train_net.py``): colour only on a
terminal, the known third-party noise hidden, a console log, CPU threads, and the config of ``--config-file`` and
the ``KEY VALUE`` overrides, whose errors end the process with one line.

A one-line error ends the process as ``SystemExit("error: ...")``: Python prints the line to stderr and exits with
status 1, and :func:`~volumetric_attention.engine.launch` hands a worker's line to the parent process.
"""
import os
from typing import Optional, Sequence

from .atomic_io import write_text_atomic
from .colour import disable_colour_unless_terminal
from .logger import setup_console_logging, setup_project_logger
from .overrides import config_overrides
from .third_party_noise import quiet_third_party_warnings
from .threads import set_threads

__all__ = ["setup_cli", "one_line", "overrides_from_args", "load_config", "config_from_args", "default_setup"]


def one_line(error: BaseException) -> str:
    """An exception's message on one line (a KeyError's message without the quotes ``str`` adds)."""
    return " ".join(str(error.args[0] if isinstance(error, KeyError) and error.args else error).split())


def setup_cli(threads: Optional[int] = None, log_threads=True, log=True) -> int:
    """Colour, third-party noise, the console log (``log``; ``train_net.py`` sets up its loggers in
    :func:`default_setup`) and CPU threads for a command-line process; returns the number of torch threads."""
    disable_colour_unless_terminal()
    quiet_third_party_warnings()
    if log:
        setup_console_logging()
    try:
        return set_threads(threads, log=log_threads)
    except ValueError as e:  # --threads 0, a bad $OMP_NUM_THREADS
        raise SystemExit(f"error: {one_line(e)}") from None


def overrides_from_args(args):
    """The ``KEY VALUE`` overrides of ``args`` (see :func:`~.overrides.add_override_arguments`); a stray option or
    an odd number of items ends the process with one line."""
    try:
        return config_overrides(args)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None


def load_config(config_file: Optional[str], opts: Sequence = ()):
    """``get_va_cfg(config_file, opts)``. An unknown key, a value of the wrong type or a missing file ends the
    process with one line: ``error: <config file> + command-line options: <reason>``."""
    from ..config import get_va_cfg

    opts = list(opts)
    try:
        return get_va_cfg(config_file or None, opts)
    except (AssertionError, KeyError, ValueError, OSError) as e:  # yacs: unknown key, wrong type; a missing file
        where = (config_file or "the default config") + (" + command-line options" if opts else "")
        raise SystemExit(f"error: {where}: {one_line(e)}") from None


def config_from_args(args):
    """The config of ``args.config_file`` and the overrides of ``args``, with one-line errors."""
    return load_config(args.config_file, overrides_from_args(args))


def default_setup(cfg, args):
    """detectron2's ``default_setup``, step by step with its public pieces, plus the project's logger: detectron2's
    and fvcore's loggers with ``log.txt``, the rank, environment, command line, config file and full config in the
    log, ``OUTPUT_DIR/config.yaml`` (written atomically), the seed and ``CUDNN_BENCHMARK``.

    Not detectron2's function itself: it colours both configs with pygments' terminal escape codes whatever the
    handler writes to, and the same record goes to ``log.txt``; here they are logged as plain text.
    """
    import torch

    from detectron2.utils import comm
    from detectron2.utils.collect_env import collect_env_info
    from detectron2.utils.env import seed_all_rng
    from detectron2.utils.file_io import PathManager
    from detectron2.utils.logger import setup_logger

    output_dir, rank = cfg.OUTPUT_DIR, comm.get_rank()
    if comm.is_main_process() and output_dir:
        PathManager.mkdirs(output_dir)
    setup_logger(output_dir, distributed_rank=rank, name="fvcore")
    logger = setup_logger(output_dir, distributed_rank=rank)
    logger.info(f"Rank of current process: {rank}. World size: {comm.get_world_size()}")
    logger.info("Environment info:\n" + collect_env_info())
    logger.info(f"Command line arguments: {args}")
    config_file = getattr(args, "config_file", "")
    if config_file:
        with PathManager.open(config_file, "r") as f:
            logger.info(f"Contents of args.config_file={config_file}:\n{f.read()}")
    if comm.is_main_process() and output_dir:
        path, dump = os.path.join(output_dir, "config.yaml"), cfg.dump()
        logger.info(f"Running with full config:\n{dump}")
        write_text_atomic(path, dump)
        logger.info(f"Full config saved to {path}")
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + rank)  # a different, deterministic seed per process
    if not getattr(args, "eval_only", False):
        torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK
    return setup_project_logger(output_dir, rank)
