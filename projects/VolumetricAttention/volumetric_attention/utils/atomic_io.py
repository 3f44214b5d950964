"""Atomic file writes: a crash never leaves a half-written output behind."""
import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_open(path, mode="w", suffix=""):
    """Open a temporary file next to ``path`` and rename it onto ``path`` when the block succeeds.

    The temporary file lives in the same folder (same filesystem, so ``os.replace`` is atomic), is fsync'ed before
    the rename, and is removed if the block raises. ``suffix`` keeps an extension on the temporary name for writers
    that choose a format from it. Yields ``(file, tmp_path)``; a ``mode`` of None yields no open file (the caller
    writes ``tmp_path`` itself, e.g. with SimpleITK or numpy).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp" + suffix, dir=folder)
    try:
        if mode is None:
            os.close(fd)
            yield None, tmp
        else:
            with os.fdopen(fd, mode) as f:
                yield f, tmp
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_text_atomic(path, text):
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as (f, _):
        f.write(text)
