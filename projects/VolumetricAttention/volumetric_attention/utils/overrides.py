"""Config overrides on the command line: trailing ``KEY VALUE`` pairs and, equally, pairs after ``--opts``."""
import argparse
import re
from typing import List

__all__ = ["add_override_arguments", "config_overrides"]


def add_override_arguments(parser, positional=True):
    """Config overrides as trailing ``KEY VALUE`` pairs and, equally, after ``--opts``; both may be combined.

    ``positional=False`` adds only ``--opts`` (for a parser that already has a positional ``opts``).
    """
    if positional:
        parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                            help="config overrides, e.g. MODEL.DEVICE cpu (last on the command line)")
    parser.add_argument("--opts", dest="flag_opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                        help="the same overrides after --opts (last on the command line)")
    return parser


def config_overrides(args) -> List[str]:
    """The ``KEY VALUE`` list of :func:`add_override_arguments`, both forms merged in command-line order.

    Raises ValueError (one line) for an option caught among the pairs, or an odd number of items.
    """
    items = [str(t) for t in (list(getattr(args, "opts", None) or []) + list(getattr(args, "flag_opts", None) or []))]
    items = [t for t in items if t != "--opts"]  # "KEY VALUE --opts KEY VALUE" lands in the positional list
    stray = [t for t in items if t.startswith("--") and not re.fullmatch(r"--?[\d.eE+-]+", t)]
    if stray:
        raise ValueError(f"option {stray[0]} after the config overrides; put KEY VALUE pairs last")
    if len(items) % 2:
        raise ValueError(f"config overrides must be KEY VALUE pairs; got {len(items)} items: {' '.join(items)}")
    return items
