"""DeepLesion's slice store: the 16-bit source slices a series' key slices need, each kept once, and the interpolated
stack of one key slice computed from them when the loader reads it.

Why not cache interpolated slices: a key slice's 2·CONTEXT_SLICES+1 float16 slices of 512 x 512 take 7.9 MB, and
the key slices of a series overlap in z, so a full-size cache would exceed the dataset's own PNGs. The source slices
are integers (HU + 32768), so they are stored losslessly and shared by every key slice that reaches them; the
interpolation and the HU window are applied on read (``datasets/README.md`` has the measurements).

File ``<cache_root>/series/<series>/<index:03d>.slice`` (one per source slice): a 16-byte header (magic, height,
width, length of the compressed part), then the high bytes of the 16-bit values zlib-compressed, then the low bytes
raw. CT's high bytes take a few values over large regions and compress about 25x; the low bytes are mostly noise,
which no lossless coder shrinks much, and kept raw they cost no decoding time.
"""
import os
import struct
import zlib
from typing import Dict, Sequence

import numpy as np

from ..utils.atomic_io import atomic_open

__all__ = ["SERIES_FOLDER", "SLICE_FORMAT", "series_dir", "slice_path", "encode_slice", "decode_slice",
           "write_slice", "read_slice", "InterpolatedStack"]

# folder of the slice store under the cache root (case ids are <patient>_<study>_<series>_<slice>: no clash)
SERIES_FOLDER = "series"
# version of the on-disk layout; stored in the cache settings so that older caches are rebuilt, not misread
SLICE_FORMAT = 1
_MAGIC = b"VAS1"
_HEADER = struct.Struct("<4sIII")  # magic, height, width, bytes of the compressed high-byte plane


def series_dir(cache_root, series: str) -> str:
    return os.path.join(os.fspath(cache_root), SERIES_FOLDER, series)


def slice_path(cache_root, series: str, index: int) -> str:
    return os.path.join(series_dir(cache_root, series), f"{int(index):03d}.slice")


def encode_slice(values: np.ndarray) -> bytes:
    """(H, W) uint16 -> bytes of the ``.slice`` format (lossless)."""
    if values.dtype != np.uint16 or values.ndim != 2:
        raise ValueError(f"expected a (H, W) uint16 slice, got {values.dtype} of shape {values.shape}")
    planes = np.ascontiguousarray(values).view(np.uint8).reshape(-1, 2)
    # little-endian view: column 1 holds the high bytes
    high = zlib.compress(np.ascontiguousarray(planes[:, 1 if np.little_endian else 0]).tobytes(), 1)
    low = np.ascontiguousarray(planes[:, 0 if np.little_endian else 1]).tobytes()
    return _HEADER.pack(_MAGIC, values.shape[0], values.shape[1], len(high)) + high + low


def decode_slice(data: bytes, path="<bytes>") -> np.ndarray:
    """Bytes of the ``.slice`` format -> (H, W) uint16. ``ValueError`` naming ``path`` when they are not one."""
    if len(data) < _HEADER.size:
        raise ValueError(f"{path}: truncated slice file; re-run tools/prepare_deeplesion.py")
    magic, height, width, n_high = _HEADER.unpack_from(data)
    if magic != _MAGIC or len(data) != _HEADER.size + n_high + height * width:
        raise ValueError(f"{path}: not a complete slice-store file; re-run tools/prepare_deeplesion.py")
    try:
        high = np.frombuffer(zlib.decompress(data[_HEADER.size:_HEADER.size + n_high]), np.uint8)
    except zlib.error as e:
        raise ValueError(f"{path}: corrupt slice-store file ({e}); re-run tools/prepare_deeplesion.py") from None
    low = np.frombuffer(data, np.uint8, count=height * width, offset=_HEADER.size + n_high)
    if high.size != low.size:
        raise ValueError(f"{path}: corrupt slice-store file; re-run tools/prepare_deeplesion.py")
    out = np.empty(low.size, np.uint16)
    np.left_shift(high, 8, out=out, dtype=np.uint16)
    out |= low
    return out.reshape(height, width)


def write_slice(path, values: np.ndarray):
    """Write one source slice atomically (concurrent writers of the same slice write the same bytes)."""
    with atomic_open(path, "wb") as (f, _):
        f.write(encode_slice(values))


def read_slice(path) -> np.ndarray:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ValueError(f"{path}: slice-store file missing; re-run tools/prepare_deeplesion.py") from None
    return decode_slice(data, path)


class InterpolatedStack:
    """The (Z, H, W) float32 stack of one key slice, values in [0, 1], computed on indexing.

    Slice k is ``window((1 - w[k]) * H[lo[k]] + w[k] * H[hi[k]])`` (:func:`.preprocessing.window`), H = stored source
    slice - ``offset`` (HU): the interpolation 3DCE applies to the PNGs, then the HU window. Indexing takes what a
    numpy array takes along z (an int, a slice, an int array) and returns an ndarray; only the source slices those
    rows need are read.
    """

    def __init__(self, series_dir: str, lo: Sequence[int], hi: Sequence[int], w: Sequence[float],
                 hu_window: Sequence[float], offset: float, height: int, width: int):
        self.series_dir = series_dir
        self.lo = np.asarray(lo, np.int64)
        self.hi = np.asarray(hi, np.int64)
        self.w = np.asarray(w, np.float32)
        self.hu_window = (float(hu_window[0]), float(hu_window[1]))
        self.offset = float(offset)
        self.shape = (len(self.lo), int(height), int(width))
        self.dtype = np.dtype(np.float32)
        self.ndim = 3

    def __len__(self) -> int:
        return self.shape[0]

    def read_source(self, index: int) -> np.ndarray:
        """(H, W) uint16 source slice ``index`` of the series (1-based file number, as in ``Images_png``)."""
        return read_slice(os.path.join(self.series_dir, f"{int(index):03d}.slice"))

    def __getitem__(self, key):
        rows = np.arange(self.shape[0])[key]
        scalar = np.ndim(rows) == 0
        rows = np.atleast_1d(rows)
        # The window is affine up to its clip, and so is the interpolation: the sources are mapped to window units
        # first (HU - low) / (high - low), interpolated, then clipped to [0, 1]: window(interpolated HU), with
        # fewer passes over the pixels.
        low, high = self.hu_window
        scale = np.float32(1.0 / (high - low))
        shift = np.float32(self.offset + low)
        sources: Dict[int, np.ndarray] = {}
        for i in np.unique(np.concatenate([self.lo[rows], self.hi[rows]])):
            scaled = np.subtract(self.read_source(i), shift, dtype=np.float32)
            scaled *= scale
            sources[int(i)] = scaled
        out = np.empty((len(rows),) + self.shape[1:], np.float32)
        for j, r in enumerate(rows):
            a, w = sources[int(self.lo[r])], self.w[r]
            if w > 0:  # a + w (b - a)
                np.subtract(sources[int(self.hi[r])], a, out=out[j])
                out[j] *= w
                out[j] += a
            else:
                out[j] = a
        np.clip(out, 0.0, 1.0, out=out)
        return out[0] if scalar else out

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)
