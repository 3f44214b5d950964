"""3D lesions of a label volume: connected components and their sizes.

Shared by the volume predictor's lesion list and the LiTS evaluator's lesion metrics (:mod:`volumetric_attention.
evaluation.lesions` matches predicted to ground-truth lesions with them), so both count and measure lesions the
same way.

Definitions:

* A lesion is a 3D connected component of a lesion mask, with 26-connectivity (voxels sharing a face, an edge or a
  corner are connected; ``scipy.ndimage.generate_binary_structure(3, 3)``). 26-connectivity keeps a lesion that
  narrows between thick slices in one piece. ``connectivity=6`` (faces only) is available.
* Volume: number of voxels × voxel volume (product of the (z, y, x) spacing in mm), reported in ml (1 ml = 1000 mm³).
* Diameter (``diameter_mm``, the one used for the size buckets): the equivalent-sphere diameter
  ``d = (6 V / π)^(1/3)`` of the volume V in mm³. It depends only on the voxel count and the spacing, so it is exact,
  fast and insensitive to the slice thickness of anisotropic scans.
* Size buckets (paper section 3.1): small ``d < 15 mm``, medium ``15 mm <= d <= 30 mm``, large ``d > 30 mm``.
* ``longest_axial_diameter_mm`` (lesion lists only): the largest distance between two points of the lesion within one
  axial slice (pixel corners, so a single pixel of 1 mm spacing measures sqrt(2) mm), the RECIST-like measure,
  maximised over slices.
"""
from dataclasses import asdict, dataclass
from typing import List, Optional, Tuple

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist

__all__ = [
    "Lesion",
    "SIZE_BUCKETS",
    "label_components",
    "equivalent_diameter_mm",
    "size_bucket",
    "find_lesions",
    "longest_axial_diameter_mm",
]

# (name, lower bound, upper bound) in mm; "small" excludes 15, "medium" includes both 15 and 30, "large" excludes 30.
SIZE_BUCKETS = (("small", 0.0, 15.0), ("medium", 15.0, 30.0), ("large", 30.0, float("inf")))


@dataclass
class Lesion:
    """One 3D lesion. Voxel coordinates are (z, y, x) indices of the array it was found in."""

    label: int  # its value in ``label_components(mask)[0]`` (1-based)
    n_voxels: int
    volume_ml: float
    diameter_mm: float  # equivalent-sphere diameter
    size: str  # "small" | "medium" | "large"
    centroid_zyx: Tuple[float, float, float]  # voxel coordinates (float)
    bbox_zyx: Tuple[int, int, int, int, int, int]  # z0, y0, x0, z1, y1, x1 (end exclusive)
    longest_axial_diameter_mm: Optional[float] = None

    def to_dict(self):
        return asdict(self)


def _structure(connectivity):
    if connectivity == 26:
        return ndimage.generate_binary_structure(3, 3)
    if connectivity == 6:
        return ndimage.generate_binary_structure(3, 1)
    raise ValueError(f"connectivity must be 6 or 26, got {connectivity}")


def label_components(mask_zyx, connectivity=26):
    """3D connected components.

    Args:
        mask_zyx: bool array (Z, Y, X).
        connectivity: 26 (default) or 6.
    Returns:
        (labels, n): int32 array (Z, Y, X) with 0 outside and 1..n inside components, and n.
    """
    mask_zyx = np.asarray(mask_zyx, dtype=bool)
    if mask_zyx.ndim != 3:
        raise ValueError(f"mask must be 3D (Z, Y, X), got shape {mask_zyx.shape}")
    labels, n = ndimage.label(mask_zyx, structure=_structure(connectivity))
    return labels.astype(np.int32, copy=False), int(n)


def equivalent_diameter_mm(n_voxels, spacing_zyx):
    """Equivalent-sphere diameter ``(6 V / π)^(1/3)`` in mm of ``n_voxels`` voxels of spacing (z, y, x) mm.

    Works elementwise on arrays of voxel counts.
    """
    volume = np.asarray(n_voxels, dtype=np.float64) * float(np.prod(spacing_zyx))
    d = np.cbrt(6.0 * volume / np.pi)
    return float(d) if d.ndim == 0 else d


def size_bucket(diameter_mm):
    """Size bucket name(s) of diameter(s) in mm: "small" (< 15), "medium" ([15, 30]), "large" (> 30).

    Returns a str for a number, an array of str for an array.
    """
    d = np.asarray(diameter_mm, dtype=np.float64)
    names = np.where(d < 15.0, "small", np.where(d <= 30.0, "medium", "large"))
    return str(names) if names.ndim == 0 else names


def longest_axial_diameter_mm(mask_zyx, spacing_zyx):
    """Longest in-slice distance (mm) between pixel corners of one lesion, maximised over axial slices.

    Args:
        mask_zyx: bool array (Z, Y, X), normally one lesion's bounding-box crop.
        spacing_zyx: (z, y, x) spacing in mm.
    """
    sy, sx = float(spacing_zyx[1]), float(spacing_zyx[2])
    corners = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
    best = 0.0
    for plane in np.asarray(mask_zyx, dtype=bool):
        if not plane.any():
            continue
        # The farthest pair lies on the convex hull, whose vertices are corners of boundary pixels.
        edge = plane & ~ndimage.binary_erosion(plane)
        yx = np.argwhere(edge).astype(np.float64)
        pts = (yx[:, None, :] + corners[None]).reshape(-1, 2) * (sy, sx)
        hull = pts[ConvexHull(pts).vertices]
        best = max(best, float(pdist(hull).max()))
    return best


def find_lesions(mask_zyx, spacing_zyx, connectivity=26, axial_diameter=True, components=None) -> List[Lesion]:
    """All lesions (3D connected components) of a mask, largest first.

    Args:
        mask_zyx: bool array (Z, Y, X), e.g. ``labels == 2``.
        spacing_zyx: (z, y, x) voxel spacing in mm of that array.
        connectivity: 26 (default) or 6.
        axial_diameter: also measure ``longest_axial_diameter_mm`` (a loop over each lesion's slices).
        components: ``label_components(mask_zyx, connectivity)`` when the caller already has it.
    Returns:
        list of :class:`Lesion`, sorted by decreasing volume; ``Lesion.label`` indexes ``label_components(mask)``.
    """
    labels, n = components if components is not None else label_components(mask_zyx, connectivity)
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    centroids = ndimage.center_of_mass(labels > 0, labels, index)
    boxes = ndimage.find_objects(labels)
    diameters = equivalent_diameter_mm(counts, spacing_zyx)
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    lesions = []
    for i in range(n):
        sl = boxes[i]
        lesion = Lesion(
            label=i + 1,
            n_voxels=int(counts[i]),
            volume_ml=float(counts[i] * voxel_ml),
            diameter_mm=float(diameters[i]),
            size=size_bucket(diameters[i]),
            centroid_zyx=tuple(float(c) for c in centroids[i]),
            bbox_zyx=tuple(int(s.start) for s in sl) + tuple(int(s.stop) for s in sl),
        )
        if axial_diameter:
            lesion.longest_axial_diameter_mm = longest_axial_diameter_mm(labels[sl] == i + 1, spacing_zyx)
        lesions.append(lesion)
    lesions.sort(key=lambda lesion: -lesion.n_voxels)
    return lesions
