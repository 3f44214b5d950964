"""Where log records go: the project's own logger in a training run (as detectron2 sets up its own), the console
of a tool."""
import logging

__all__ = ["PROJECT_LOGGER", "setup_project_logger", "setup_console_logging"]

PROJECT_LOGGER = "volumetric_attention"


def setup_project_logger(output_dir=None, rank=0):
    """detectron2's ``setup_logger`` for the project's own ``volumetric_attention`` logger: console on the main
    process, ``<output_dir>/log.txt`` (``log.txt.rank<k>`` on the others), formatted as detectron2's own logger
    (its colours are off unless stdout is a terminal, see :func:`~.colour.disable_colour_unless_terminal`).
    Calling it again with the same arguments changes nothing."""
    from detectron2.utils.logger import setup_logger

    return setup_logger(output_dir or None, distributed_rank=rank, name=PROJECT_LOGGER, abbrev_name="va")


def setup_console_logging():
    """A command-line tool's log on stderr (stdout stays the tool's own output), in detectron2's log-file format:
    the project's records from INFO on, other libraries' from WARNING on. The console handler is not added where
    the root logger already has handlers (a caller's own set-up, pytest's log capture)."""
    logging.basicConfig(level=logging.WARNING, format="[%(asctime)s] %(name)s %(levelname)s: %(message)s",
                        datefmt="%m/%d %H:%M:%S")
    logging.getLogger(PROJECT_LOGGER).setLevel(logging.INFO)
