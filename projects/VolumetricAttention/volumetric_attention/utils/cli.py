"""What every command-line process of the project does first (``tools/*.py``, ``train_net.py``): colour only on a
terminal, the known third-party noise hidden, a console log, CPU threads, and the config of ``--config-file`` and
the ``KEY VALUE`` overrides, whose errors end the process with one line.

A one-line error ends the process as ``SystemExit("error: ...")``: Python prints the line to stderr and exits with
status 1, and :func:`~volumetric_attention.engine.launch` hands a worker's line to the parent process.
"""
from typing import Optional, Sequence

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
    """detectron2's ``default_setup`` (its loggers, ``log.txt``, config dump, seed), plus the project's logger.

    The config is dumped without pygments' escape codes: the same record goes to ``log.txt``, never a terminal.
    """
    from unittest import mock

    from detectron2.engine import defaults
    from detectron2.utils import comm

    with mock.patch.object(defaults, "_highlight", lambda code, filename: code):
        defaults.default_setup(cfg, args)
    return setup_project_logger(cfg.OUTPUT_DIR, comm.get_rank())
