"""Progress bars that suit where the output goes: tqdm's live bar on a terminal; in a log file or a pipe, a few plain
lines (one per tenth of the total, and the last), without the carriage returns that make a log one long line."""
import math
import sys

from tqdm import tqdm

__all__ = ["progress_bar"]

# the plain line: no bar characters, which a log file shows as noise
PLAIN_FORMAT = "{desc}: {n_fmt}/{total_fmt} ({percentage:.0f}%) [{elapsed}<{remaining}, {rate_fmt}]"
PLAIN_FORMAT_NO_TOTAL = "{desc}: {n_fmt} [{elapsed}, {rate_fmt}]"


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class PlainLineProgress(tqdm):
    """tqdm that writes whole lines: at the start, each time another tenth of ``total`` is done, and at the end.
    Without a total it writes a line at most every ``mininterval`` seconds (default 30). Give ``total`` by name."""

    def __init__(self, *args, steps: int = 10, **kwargs):
        self._steps = steps
        self._written = None  # the count of the last line written
        self._closing = False
        if kwargs.get("total"):  # look at every update; display() writes only at the steps
            kwargs.update(mininterval=0.0, miniters=1, bar_format=PLAIN_FORMAT)
        else:
            kwargs.setdefault("mininterval", 30.0)
            kwargs["bar_format"] = PLAIN_FORMAT_NO_TOTAL
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):
        if msg is not None:  # tqdm clearing its line: there is nothing to clear
            return False
        if self.n == self._written:
            return True
        if self.total and not self._closing:
            step = max(1, math.ceil(self.total / self._steps))
            if self._written is not None and self.n < self.total and self.n < self._written + step:
                return True
        self.fp.write(self.__str__() + "\n")
        self.fp.flush()
        self._written = self.n
        return True

    def close(self):
        if not self.disable and self._written != self.n:
            self._closing = True
            self.display()
        self.leave = False  # tqdm's own last display would end in a blank line
        super().close()


def progress_bar(iterable=None, *, total=None, desc=None, unit="it", file=None, disable=False, leave=True, **kwargs):
    """A tqdm progress bar over ``iterable`` (or updated by hand up to ``total``) written to ``file`` (stderr).

    On a terminal it is tqdm's live bar; anywhere else (a file, a pipe) a :class:`PlainLineProgress`: about ten
    plain lines however long the job, and no ``\\r``.
    """
    file = sys.stderr if file is None else file
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    cls = tqdm if _is_terminal(file) else PlainLineProgress
    return cls(iterable, total=total, desc=desc, unit=unit, file=file, disable=disable, leave=leave, **kwargs)
