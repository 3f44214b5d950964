"""Atomic writes of metric files (JSON summaries, CSV tables) and reading them back.

Every file is written to a temporary file in the same folder and moved into place with ``os.replace``, so a reader
(TensorBoard, a plotting script, a second process) never sees a half-written file.
"""
import csv
import io
import json
import math

import numpy as np

from ..utils.atomic_io import atomic_open

__all__ = ["atomic_write_bytes", "write_json", "write_csv", "load_results"]


def atomic_write_bytes(path, data: bytes):
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as (f, _):
        f.write(data)


def _plain(obj):
    """numpy scalars/arrays to Python; NaN/inf to None so the JSON is standard."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path, obj):
    """Atomically write ``obj`` as indented, standard JSON (NaN becomes null)."""
    atomic_write_bytes(path, json.dumps(_plain(obj), indent=2, allow_nan=False).encode("utf-8"))


def write_csv(path, rows, fieldnames):
    """Atomically write a list of dicts as CSV with the given column order."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fieldnames), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _format(v) for k, v in row.items()})
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def _format(v):
    v = _plain(v)
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else v


def load_results(path):
    """Read a summary JSON written by the LiTS or DeepLesion evaluator (``{"type": "lits"|"deeplesion", ...}``)."""
    with open(path, "r", encoding="utf-8") as f:
        results = json.load(f)
    if not isinstance(results, dict) or results.get("type") not in ("lits", "deeplesion"):
        raise ValueError(f"{path} is not a result file of this project (expected a JSON with type lits/deeplesion)")
    return results
