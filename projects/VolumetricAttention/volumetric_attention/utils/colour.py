"""Colour in the console only on a terminal: detectron2's and fvcore's coloured log prefixes off elsewhere."""
import os
import sys

__all__ = ["colour_enabled", "disable_colour_unless_terminal"]


def colour_enabled(stream=None) -> bool:
    """Colour only on a terminal, and not with ``$NO_COLOR`` or ``TERM=dumb``."""
    stream = stream if stream is not None else sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def disable_colour_unless_terminal(stream=None) -> bool:
    """Turn off termcolor's escape codes (detectron2's and fvcore's coloured log prefixes) unless ``stream`` (stdout)
    is a terminal, for this process and the ones it starts. Overrides ``$FORCE_COLOR``. Returns whether colour is on.
    """
    if colour_enabled(stream):
        return True
    os.environ["ANSI_COLORS_DISABLED"] = "1"
    try:  # termcolor >= 2.1 caches its decision
        import termcolor.termcolor as tc

        for name in ("can_colorize", "_can_do_colour"):
            cache_clear = getattr(getattr(tc, name, None), "cache_clear", None)
            if cache_clear is not None:
                cache_clear()
    except ImportError:
        pass
    return False
