"""How many CPU threads torch uses in a command-line process, and the ``--threads`` option that sets it."""
import logging
import os
from typing import Optional

from .logger import PROJECT_LOGGER

__all__ = ["add_threads_argument", "set_threads"]


def add_threads_argument(parser):
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch CPU threads (default: $OMP_NUM_THREADS, else torch's default); on a shared "
                             "machine 1 per process is often fastest")
    return parser


def set_threads(threads: Optional[int] = None, log=True) -> int:
    """Set torch's intra-op CPU threads from ``threads``, else ``$OMP_NUM_THREADS``, else keep torch's default.

    The choice is also written to ``$OMP_NUM_THREADS`` so that processes this one starts (detectron2's ``launch``,
    the benchmark's workers) use the same number. Logs one line ``torch threads: N (source)``. Returns N.
    """
    import torch

    source = "--threads"
    if threads is None and os.environ.get("OMP_NUM_THREADS", "").strip():
        value = os.environ["OMP_NUM_THREADS"].strip()
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"OMP_NUM_THREADS={value!r} is not a positive whole number")
        threads, source = int(value), "OMP_NUM_THREADS"
    if threads is None:
        threads, source = torch.get_num_threads(), "torch default"
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if log:
        logging.getLogger(PROJECT_LOGGER).info(f"torch threads: {threads} ({source})")
    return threads
