"""The bag of N 2.5D images around a target slice (paper section 2.1): the one way bags are built, by the mapper,
by volume inference and by users calling ``DefaultPredictor``."""
import numpy as np

__all__ = ["bag_slice_indices", "make_bag_array", "PIXEL_SCALE"]

# the cache stores [0, 1]; models see 0..255 so detectron2's PIXEL_MEAN/PIXEL_STD conventions apply
PIXEL_SCALE = 255.0


def bag_slice_indices(z: int, num_slices: int, bag_size: int) -> np.ndarray:
    """Slice indices of the bag around target slice ``z`` of a volume with ``num_slices`` slices.

    The N = ``bag_size`` (odd) 2.5D images are contiguous and do not overlap: image k (k = -(N//2)..N//2) is centred
    on slice z + 3k and made of slices c-1, c, c+1, so N=3 covers z-4..z+4 and the target's image is the middle group.
    Indices are clamped to [0, num_slices - 1] at the volume's ends.

    Returns:
        (3N,) int64 array, image by image, slice by slice.
    """
    if bag_size < 1 or bag_size % 2 == 0:
        raise ValueError(f"bag_size must be a positive odd number, got {bag_size}")
    half = bag_size // 2
    centres = int(z) + 3 * np.arange(-half, half + 1, dtype=np.int64)
    idx = (centres[:, None] + np.arange(-1, 2, dtype=np.int64)[None, :]).reshape(-1)
    return np.clip(idx, 0, int(num_slices) - 1)


def make_bag_array(volume_zyx: np.ndarray, z: int, bag_size: int) -> np.ndarray:
    """The bag around slice ``z`` of a windowed (Z, H, W) volume with values in [0, 1] (cache memmap or array).

    Returns:
        (H, W, 3N) float32 array on the 0..255 scale, channels in :func:`bag_slice_indices` order (HWC, as
        detectron2 transforms and ``DefaultPredictor`` take images).
    """
    idx = bag_slice_indices(z, volume_zyx.shape[0], bag_size)
    # only the distinct slices are read from a memmap (or a slice store)
    unique, inverse = np.unique(idx, return_inverse=True)
    slices = np.asarray(volume_zyx[unique])
    if len(unique) < len(idx):
        # a bag clamped at a volume end repeats slices; elsewhere the (sorted) indices are the distinct ones
        slices = slices[inverse]
    out = np.empty(slices.shape[1:] + (len(idx),), dtype=np.float32)
    # one pass: HWC layout, float32 conversion and scaling together
    np.multiply(slices.transpose(1, 2, 0), np.float32(PIXEL_SCALE), out=out)
    return out
