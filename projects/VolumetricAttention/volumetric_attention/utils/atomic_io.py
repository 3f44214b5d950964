"""Atomic file writes: a crash never leaves a half-written output behind."""
import contextlib
import os
import stat
import tempfile


@contextlib.contextmanager
def atomic_open(path, mode="w", suffix=""):
    """Open a temporary file next to ``path`` and rename it onto ``path`` when the block succeeds.

    The temporary file lives in the same folder (same filesystem, so ``os.replace`` is atomic), is fsync'ed before
    the rename, and is removed if the block raises. ``suffix`` keeps an extension on the temporary name for writers
    that choose a format from it. Yields ``(file, tmp_path)``; a ``mode`` of None yields no open file (the caller
    writes ``tmp_path`` itself, e.g. with SimpleITK or numpy).

    The file gets the permissions ``open(path, "w")`` would give it: an existing file's own, else 0666 minus the
    process umask (``mkstemp`` alone would make every output owner-only).
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
        # after the writer: a caller writing tmp_path itself may have replaced the file
        os.chmod(tmp, _open_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def current_umask() -> int:
    """The process umask, read without changing it where Linux reports it (another thread may create files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _open_mode(path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def write_text_atomic(path, text):
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as (f, _):
        f.write(text)
