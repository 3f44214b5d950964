"""No colour codes off a terminal (detectron2's and fvcore's coloured log prefixes)."""
import os

from volumetric_attention.utils import colour


def test_no_colour_codes_off_a_terminal(tmp_path, monkeypatch):
    """FORCE_COLOR stands for a colouring library that ignores the terminal test (termcolor < 2.1 did)."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("ANSI_COLORS_DISABLED", raising=False)
    import termcolor

    with open(tmp_path / "out.txt", "w") as stream:
        assert colour.disable_colour_unless_terminal(stream) is False
    try:
        assert termcolor.colored("WARNING", "red") == "WARNING"
    finally:
        os.environ.pop("ANSI_COLORS_DISABLED", None)
        cache_clear = getattr(getattr(termcolor.termcolor, "can_colorize", None), "cache_clear", None)
        if cache_clear:
            cache_clear()
