"""CT intensity windowing and slice-spacing resampling: the one way volumes are preprocessed, for the cache (prepare
tools) and for volume inference alike."""
from typing import Sequence, Tuple

import numpy as np

__all__ = ["window", "SliceResampler", "preprocess_volume"]


def window(hu: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clamp HU to ``[low, high]`` and map linearly to ``[0, 1]``; any shape in, float32 of the same shape out."""
    if not high > low:
        raise ValueError(f"HU window [{low}, {high}] is empty")
    out = np.asarray(hu, dtype=np.float32) - np.float32(low)
    out *= np.float32(1.0 / (high - low))
    return np.clip(out, 0.0, 1.0, out=out)


def _round_half_up(x: np.ndarray) -> np.ndarray:
    # np.round rounds half to even, which would make the two directions of SliceResampler disagree at ties
    return np.floor(x + 0.5).astype(np.int64)


class SliceResampler:
    """Maps a volume between its original z grid (``num_slices`` slices, ``spacing_z`` mm apart) and the cache grid
    (slices ``target_spacing_z`` mm apart, starting at the first original slice).

    ``target_spacing_z <= 0`` keeps the native grid. Labels go both ways with nearest neighbour; when the cache grid is
    at least as fine as the original one, ``to_original(to_cache(labels, order=0))`` returns ``labels`` exactly.
    """

    def __init__(self, num_slices: int, spacing_z: float, target_spacing_z: float):
        self.num_slices = int(num_slices)
        self.spacing_z = float(spacing_z)
        self.target_spacing_z = float(target_spacing_z) if target_spacing_z and target_spacing_z > 0 else self.spacing_z
        if self.num_slices < 1 or self.spacing_z <= 0:
            raise ValueError(f"bad z grid: {num_slices} slices, spacing {spacing_z}")
        extent = (self.num_slices - 1) * self.spacing_z
        # small tolerance so e.g. 10 slices at 1.5 mm -> 3 mm gives exactly 5 cache slices
        self.num_cache_slices = int(np.floor(extent / self.target_spacing_z + 1e-6)) + 1

    @property
    def identity(self) -> bool:
        return abs(self.target_spacing_z - self.spacing_z) < 1e-9

    def cache_coordinates(self) -> np.ndarray:
        """(Zc,) float64 position of each cache slice in original slice-index units."""
        return np.arange(self.num_cache_slices) * (self.target_spacing_z / self.spacing_z)

    def original_to_cache_index(self, z) -> np.ndarray:
        """Nearest cache slice of original slice index ``z`` (int or array)."""
        c = np.asarray(z, dtype=np.float64) * (self.spacing_z / self.target_spacing_z)
        return np.clip(_round_half_up(c), 0, self.num_cache_slices - 1)

    def to_cache(self, volume_zyx: np.ndarray, order: int = 1) -> np.ndarray:
        """(Z0, H, W) -> (Zc, H, W). ``order=1``: linear interpolation between the two nearest slices (images, result
        float32); ``order=0``: nearest slice (labels, dtype kept)."""
        if volume_zyx.shape[0] != self.num_slices:
            raise ValueError(f"volume has {volume_zyx.shape[0]} slices, resampler expects {self.num_slices}")
        if self.identity:
            return np.asarray(volume_zyx) if order == 0 else np.asarray(volume_zyx, dtype=np.float32)
        coords = self.cache_coordinates()
        if order == 0:
            return np.asarray(volume_zyx)[np.clip(_round_half_up(coords), 0, self.num_slices - 1)]
        if order != 1:
            raise ValueError(f"order must be 0 or 1, got {order}")
        lo = np.clip(np.floor(coords).astype(np.int64), 0, self.num_slices - 1)
        hi = np.clip(lo + 1, 0, self.num_slices - 1)
        w = (coords - lo).astype(np.float32)
        out = np.empty((self.num_cache_slices,) + tuple(volume_zyx.shape[1:]), dtype=np.float32)
        # one slice at a time keeps the peak memory at one output volume for 512x512x900 scans
        for k in range(self.num_cache_slices):
            a = np.asarray(volume_zyx[lo[k]], dtype=np.float32)
            if w[k] > 0:
                b = np.asarray(volume_zyx[hi[k]], dtype=np.float32)
                np.multiply(a, 1.0 - w[k], out=out[k])
                out[k] += w[k] * b
            else:
                out[k] = a
        return out

    def to_original(self, labels_zyx: np.ndarray) -> np.ndarray:
        """(Zc, H, W) -> (Z0, H, W) by nearest cache slice; dtype kept; exactly ``num_slices`` slices."""
        if labels_zyx.shape[0] != self.num_cache_slices:
            raise ValueError(f"array has {labels_zyx.shape[0]} slices, cache grid has {self.num_cache_slices}")
        if self.identity:
            return np.asarray(labels_zyx)
        return np.asarray(labels_zyx)[self.original_to_cache_index(np.arange(self.num_slices))]

    def to_dict(self) -> dict:
        return {"num_slices": self.num_slices, "spacing_z": self.spacing_z, "target_spacing_z": self.target_spacing_z}

    @classmethod
    def from_dict(cls, d: dict) -> "SliceResampler":
        return cls(d["num_slices"], d["spacing_z"], d["target_spacing_z"])


def preprocess_volume(hu_zyx: np.ndarray, spacing_zyx: Sequence[float], hu_window: Sequence[float],
                      slice_spacing: float) -> Tuple[np.ndarray, SliceResampler]:
    """Resample a canonical (Z0, H, W) HU volume to ``slice_spacing`` mm along z (linear; 0 keeps it) and window it.

    Returns:
        image: (Zc, H, W) float32 in [0, 1].
        resampler: the :class:`SliceResampler` that maps predictions on the cache grid back to the Z0 input slices.
    """
    if np.isnan(hu_zyx).any():
        raise ValueError("volume contains NaN voxels")
    resampler = SliceResampler(hu_zyx.shape[0], float(spacing_zyx[0]), float(slice_spacing))
    low, high = float(hu_window[0]), float(hu_window[1])
    return window(resampler.to_cache(hu_zyx, order=1), low, high), resampler
