"""Synthetic abdomen-like CT phantoms with liver, lesion and vessel labels, written in the LiTS layout.

They let the whole pipeline (prepare, train, evaluate, predict) run without any data. What makes them a test of
volumetric context: tubular vessels run along z through the liver with the intensity of lesions and are labelled
liver. A vessel's cross-section in one slice looks like a small lesion; only neighbouring slices tell them apart (a
vessel continues over many slices, a small lesion over few).
"""
import os
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..utils.progress import progress_bar

__all__ = ["PROFILES", "make_phantom", "write_phantom", "write_phantom_dataset"]

AIR, FAT, SOFT_TISSUE, LIVER, SPLEEN, KIDNEY, BONE, MARROW = -1000.0, -100.0, 40.0, 60.0, 50.0, 150.0, 700.0, 250.0
HYPO, HYPER = 15.0, 130.0  # lesion (and vessel) intensities, enough contrast to the liver's 60 HU


# What varies between phantom profiles. Ranges are drawn uniformly per case (counts: integers, inclusive).
PROFILES = {
    # A ~350 mm field of view; thin vessels and small lesions are only 1.5-3 pixels wide at 128 px.
    "abdomen": {
        "inplane_mm": (2.6, 3.0),  # in-plane pixel spacing at 128 px
        "fov_mm": 350.0,  # field of view used when a caller fixes the slice size
        "vessels": (2, 4),  # vessels per case
        "vessel_diameter_mm": (4.0, 7.0),
        "small_lesions": (1, 3), "small_lesion_diameter_mm": (3.0, 8.0),
        "large_lesions": (1, 3), "large_lesion_diameter_mm": (8.0, 40.0),
    },
    # The z-context study's phantoms: a ~200 mm field of view (liver region), vessels exactly as wide as the small
    # lesions, and more of both, so that in one slice (and in one 3-slice image) they look alike, 6-10 pixels wide
    # at 128 px. A vessel runs through the whole liver along z; a small lesion is 7-12 mm long.
    "zcontext": {
        "inplane_mm": (1.5, 1.7),
        "fov_mm": 205.0,
        "vessels": (4, 7),
        "vessel_diameter_mm": (7.0, 12.0),
        "small_lesions": (2, 4), "small_lesion_diameter_mm": (7.0, 12.0),
        "large_lesions": (1, 2), "large_lesion_diameter_mm": (15.0, 30.0),
    },
    # The z-context question posed at native resolution: the zcontext anatomy at 0.65-0.75 mm in-plane, made on
    # 256 x 256 slices and cropped to the 128 x 128 around the liver (as liver pipelines crop to the liver's region).
    # Small lesions and vessels are 9-14 mm, i.e. 12-21 pixels across: large enough for a 2.5D model to segment,
    # yet only their length along z tells them apart.
    "zcontext_liver": {
        "inplane_mm": (0.65, 0.75),
        "fov_mm": 179.0,
        "size_px": 256,  # in-plane size the anatomy is made at
        "crop_px": 128,  # in-plane size of the crop centred on the liver that is written
        "vessels": (4, 7),
        "vessel_diameter_mm": (9.0, 14.0),
        "small_lesions": (2, 4), "small_lesion_diameter_mm": (9.0, 14.0),
        "large_lesions": (1, 2), "large_lesion_diameter_mm": (16.0, 30.0),
    },
    # The small-lesion regime (the paper's small-lesion Dice): lesions of 15 mm or less only, together at most 1% of the
    # liver's voxels, among curved vessels of the lesions' size and intensity that outnumber them. A slice holds a
    # lesion far less often than in zcontext_liver, so a recipe that needs a lesion in every batch fails here.
    "zcontext_small": {
        "inplane_mm": (0.75, 0.9),
        "fov_mm": 210.0,
        "size_px": 256,
        "crop_px": 128,
        "vessels": (4, 7),
        "vessel_diameter_mm": (6.0, 12.0),
        "vessel_curve_mm": (3.0, 8.0),  # amplitude of a vessel's sinusoidal in-plane bend along z
        "small_lesions": (2, 5), "small_lesion_diameter_mm": (7.0, 12.5),  # x 0.8-1.2 per axis: 5.6-15 mm
        "large_lesions": (0, 0), "large_lesion_diameter_mm": (16.0, 30.0),
        "max_lesion_share": 0.01,  # lesion voxels / liver voxels; a lesion that would pass it is left out
        "separate_lesions": True,  # a lesion touching an earlier one is left out: every lesion stays <= 15 mm
    },
}


def _ellipsoid(zz, yy, xx, centre, radii):
    return (((zz - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2
            + ((xx - centre[2]) / radii[2]) ** 2) <= 1.0


def _bounds(flags):
    """The slice from the first to the last True of a 1-D boolean array (empty without one)."""
    inside = np.flatnonzero(flags)
    return slice(int(inside[0]), int(inside[-1]) + 1) if len(inside) else slice(0, 0)


def _span(coord, centre, radius):
    """The index range along one axis where ``((coord - centre) / radius) ** 2 <= 1``: no voxel outside it can
    pass :func:`_ellipsoid`'s test, whose sum of three such non-negative terms is at least each of them."""
    return _bounds((((coord - centre) / radius) ** 2 <= 1.0).ravel())


def _ellipsoid_in_box(zz, yy, xx, centre, radii):
    """:func:`_ellipsoid` computed only inside its bounding box: (box, the mask on the box's voxels)."""
    box = tuple(_span(c, m, r) for c, m, r in zip((zz, yy, xx), centre, radii))
    return box, _ellipsoid(zz[box[0]], yy[:, box[1]], xx[:, :, box[2]], centre, radii)


def _depths(mask, sampling):
    """The voxels of ``mask`` (flat indices in row-major order) and their distances to the nearest voxel outside
    it, in mm: ``ndimage.distance_transform_edt(mask, sampling)`` at those voxels, computed by its arithmetic from
    its feature transform, but for them alone."""
    nearest = ndimage.distance_transform_edt(mask, sampling=sampling, return_distances=False, return_indices=True)
    voxels = np.flatnonzero(mask)
    squares = []
    for axis, (position, step) in enumerate(zip(np.unravel_index(voxels, mask.shape), sampling)):
        offset = (nearest[axis].ravel()[voxels] - position).astype(np.float64) * np.float64(step)
        squares.append(offset * offset)
    return voxels, np.sqrt(squares[0] + squares[1] + squares[2])


def _grown(box, shape, margin=1):
    """``box`` grown by ``margin`` voxels on every side, within a volume of ``shape``."""
    return tuple(slice(max(b.start - margin, 0), min(b.stop + margin, n)) for b, n in zip(box, shape))


def _union(a, b):
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def _inner(outer, box):
    """``box`` (full-volume slices inside ``outer``) as slices of the sub-volume ``outer``."""
    return tuple(slice(b.start - o.start, b.stop - o.start) for o, b in zip(outer, box))


def make_phantom(seed: int, shape: Optional[Sequence[int]] = None, spacing: Optional[Sequence[float]] = None,
                 noise_hu: Optional[float] = None, profile: str = "abdomen", with_vessels: bool = False) -> tuple:
    """One phantom. Deterministic in ``seed`` and ``profile`` (``with_vessels`` changes no voxel of it).

    Args:
        shape: (Z, H, W) the anatomy is made at; default Z in [40, 80] and the profile's ``size_px`` (128). A
            profile with ``crop_px`` returns the ``crop_px`` x ``crop_px`` crop centred on the liver.
        spacing: (z, y, x) mm; default z in [1, 3] mm, in-plane from the profile.
        noise_hu: std of the Gaussian noise; default in [10, 20] HU.
        profile: a key of :data:`PROFILES` (sizes and counts of vessels and lesions, field of view).
        with_vessels: also return where the vessels are.
    Returns:
        hu: (Z, H, W) float32 HU; labels: (Z, H, W) uint8 (0 background, 1 liver incl. vessels, 2 lesion);
        spacing (z, y, x) mm; with ``with_vessels``, last, vessels: (Z, H, W) bool, the vessel voxels a lesion did
        not replace (labelled liver in ``labels``).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown phantom profile {profile!r}; choose from {sorted(PROFILES)}")
    prof = PROFILES[profile]
    rng = np.random.default_rng(seed)
    if shape is None:
        size = prof.get("size_px", 128)
        shape = (int(rng.integers(40, 81)), size, size)
    if spacing is None:
        inplane = float(rng.uniform(*prof["inplane_mm"]))
        spacing = (float(np.round(rng.uniform(1.0, 3.0), 2)), inplane, inplane)
    z_n, h, w = (int(s) for s in shape)
    sz, sy, sx = (float(s) for s in spacing)
    noise_hu = float(rng.uniform(10.0, 20.0)) if noise_hu is None else float(noise_hu)

    # millimetre coordinates centred in the slice; z from 0 at the first slice
    zz = (np.arange(z_n, dtype=np.float32) * sz)[:, None, None]
    yy = ((np.arange(h, dtype=np.float32) - h / 2) * sy)[None, :, None]
    xx = ((np.arange(w, dtype=np.float32) - w / 2) * sx)[None, None, :]
    fov_y, fov_x, length = h * sy, w * sx, z_n * sz
    # Each structure is computed only where it can be: the body and the spine in one slice (they are the same in
    # every slice), an organ or a lesion inside its bounding box, a vessel inside the liver's. Every voxel is
    # computed by the same arithmetic as over the whole volume, so a phantom is the same to the bit, only faster.

    # one slice of what is the same in every slice, then the volume
    section = np.full((h, w), AIR, dtype=np.float32)
    # body: elliptic cylinder with a subcutaneous fat rim
    body_ax, body_ay = 0.44 * fov_x * rng.uniform(0.9, 1.0), 0.36 * fov_y * rng.uniform(0.9, 1.0)
    body_r = ((xx / body_ax) ** 2 + (yy / body_ay) ** 2)[0]
    section[body_r <= 1.0] = FAT
    section[body_r <= 0.85 ** 2] = SOFT_TISSUE

    # spine (posterior midline) with cortex and marrow
    spine_y, spine_r = 0.22 * fov_y, 0.06 * fov_x
    spine_d = np.sqrt(xx ** 2 + (yy - spine_y) ** 2)[0]
    section[spine_d <= spine_r] = BONE
    section[spine_d <= 0.7 * spine_r] = MARROW
    hu = np.empty((z_n, h, w), dtype=np.float32)
    hu[:] = section

    # kidneys either side of the spine, spleen on the patient's left (image right)
    for side in (-1, 1):
        c = (length * rng.uniform(0.45, 0.6), spine_y - 0.02 * fov_y, side * 0.17 * fov_x)
        box, mask = _ellipsoid_in_box(zz, yy, xx, c, (max(length * 0.3, 2 * sz), 0.06 * fov_y, 0.045 * fov_x))
        hu[box][mask] = KIDNEY
    spleen_c = (length * rng.uniform(0.5, 0.7), 0.05 * fov_y, 0.27 * fov_x)
    box, mask = _ellipsoid_in_box(zz, yy, xx, spleen_c, (max(length * 0.3, 2 * sz), 0.1 * fov_y, 0.06 * fov_x))
    hu[box][mask] = SPLEEN

    # liver: two overlapping ellipsoids on the patient's right (image left), covering most slices
    liver = np.zeros((z_n, h, w), dtype=bool)
    box_a, mask_a = _ellipsoid_in_box(zz, yy, xx, (length * 0.5, -0.03 * fov_y, -0.16 * fov_x),
                                      (length * rng.uniform(0.42, 0.5), 0.2 * fov_y, 0.16 * fov_x))
    box_b, mask_b = _ellipsoid_in_box(zz, yy, xx, (length * rng.uniform(0.55, 0.65), -0.1 * fov_y, 0.0),
                                      (length * 0.3, 0.1 * fov_y, 0.12 * fov_x))
    liver[box_a] = mask_a
    liver[box_b] |= mask_b
    liver &= body_r <= 0.8 ** 2
    # standard normal draws: rng.normal(0, scale) draws the same numbers and returns 0 + scale x; one buffer serves
    # the texture and the noise
    draws = rng.standard_normal(size=liver.shape)
    texture = ndimage.gaussian_filter(draws.astype(np.float32), sigma=(1, 2, 2))
    texture *= 8.0 / max(float(texture.std()), 1e-6)
    # the liver's bounding box (of its two ellipsoids), and every view of the volumes on it
    lbox = _union(box_a, box_b)
    liver_b, hu_b, labels = liver[lbox], hu[lbox], liver.astype(np.uint8)
    vessels = np.zeros(liver.shape, dtype=bool) if with_vessels else None
    texture_b = texture[lbox]
    hu_b[liver_b] = LIVER + texture_b[liver_b]

    # vessels: thin tubes along z with a slow in-plane drift, lesion-like intensity, labelled liver
    liver_idx = np.argwhere(liver_b) + [b.start for b in lbox]
    yy_b, xx_b = yy[:, lbox[1]], xx[:, :, lbox[2]]
    lo, hi = prof["vessels"]
    for _ in range(int(rng.integers(lo, hi + 1))):
        y0, x0 = liver_idx[rng.integers(len(liver_idx))][1:]
        radius = rng.uniform(*prof["vessel_diameter_mm"]) / 2
        dy, dx = rng.uniform(-0.15, 0.15, size=2)  # mm of drift per mm along z: "mostly along z"
        cy = (y0 - h / 2) * sy + dy * (zz - length / 2)
        cx = (x0 - w / 2) * sx + dx * (zz - length / 2)
        if "vessel_curve_mm" in prof:
            # a bend of 40-90 mm period: the cross-section moves in-plane from slice to slice, as real vessels do
            amplitude = rng.uniform(*prof["vessel_curve_mm"], size=2)
            period, phase = rng.uniform(40.0, 90.0), rng.uniform(0.0, 2 * np.pi)
            cy = cy + amplitude[0] * np.sin(2 * np.pi * zz / period + phase)
            cx = cx + amplitude[1] * np.cos(2 * np.pi * zz / period + phase)
        cy, cx = cy[lbox[0]], cx[lbox[0]]
        # the rows and columns the tube passes through in some slice (each of the two terms is at most the sum)
        rows = ((yy_b - cy) ** 2 <= radius ** 2).any(axis=0).ravel()
        cols = ((xx_b - cx) ** 2 <= radius ** 2).any(axis=0).ravel()
        tbox = (slice(None), _bounds(rows), _bounds(cols))
        tube = ((yy_b[:, tbox[1]] - cy) ** 2 + (xx_b[:, :, tbox[2]] - cx) ** 2 <= radius ** 2) & liver_b[tbox]
        hu_b[tbox][tube] = (HYPER if rng.random() < 0.5 else HYPO) + texture_b[tbox][tube] * 0.5
        if vessels is not None:
            vessels[lbox][tbox] |= tube

    # lesions: ellipsoids, small and larger, hypo- or hyper-dense, kept inside the liver. The depth (distance to
    # the nearest voxel outside the liver) on the liver's box grown by one voxel of background is the whole
    # volume's: a nearest outside voxel beyond that border would have one on the border nearer.
    dbox = _grown(lbox, liver.shape)
    dshape = tuple(b.stop - b.start for b in dbox)
    liver_voxels, liver_depths = _depths(liver[dbox], (sz, sy, sx))
    depth_max = liver_depths.max()
    (s_lo, s_hi), (l_lo, l_hi) = prof["small_lesions"], prof["large_lesions"]
    diameters = np.concatenate([rng.uniform(*prof["small_lesion_diameter_mm"], size=int(rng.integers(s_lo, s_hi + 1))),
                                rng.uniform(*prof["large_lesion_diameter_mm"], size=int(rng.integers(l_lo, l_hi + 1)))])
    lesion_budget = prof.get("max_lesion_share", np.inf) * liver.sum()
    for d in diameters:
        r = d / 2
        inside = liver_voxels[liver_depths >= min(r, depth_max * 0.8)]
        # numpy integers, as np.argwhere gives them: the centre's arithmetic below stays float64
        cz, cy, cx = (i + b.start for i, b in zip(np.unravel_index(inside[rng.integers(len(inside))], dshape), dbox))
        radii = r * rng.uniform(0.8, 1.2, size=3)
        box, les = _ellipsoid_in_box(zz, yy, xx, (cz * sz, (cy - h / 2) * sy, (cx - w / 2) * sx), radii)
        les &= liver[box]
        if not les.any():
            # a lesion thinner than a slice still shows in its centre voxel
            box = (slice(cz, cz + 1), slice(cy, cy + 1), slice(cx, cx + 1))
            les = np.ones((1, 1, 1), dtype=bool)
        if np.isfinite(lesion_budget) and np.count_nonzero(labels == 2) + les.sum() > lesion_budget:
            continue
        if prof.get("separate_lesions"):
            # touching lesions would merge into one component larger than either
            grown = _grown(box, liver.shape)
            around = np.zeros([g.stop - g.start for g in grown], dtype=bool)
            around[_inner(grown, box)] = les
            if (ndimage.binary_dilation(around) & (labels[grown] == 2)).any():
                continue
        hu[box][les] = (HYPER if rng.random() < 0.5 else HYPO) + texture[box][les] * 0.5
        labels[box][les] = 2

    # the noise is drawn for the whole volume (the same random numbers) and added where the phantom is kept
    noise = rng.standard_normal(out=draws)
    noise *= noise_hu
    crop = prof.get("crop_px")
    if crop and (h > crop or w > crop):
        window = _crop_window(liver.any(axis=0), min(crop, h), min(crop, w))
        hu, labels, noise = np.ascontiguousarray(hu[window]), np.ascontiguousarray(labels[window]), noise[window]
        vessels = None if vessels is None else np.ascontiguousarray(vessels[window])
    hu += noise.astype(np.float32)
    if vessels is None:
        return hu, labels, (sz, sy, sx)
    return hu, labels, (sz, sy, sx), vessels & (labels != 2)


def _crop_window(mask_yx, crop_h, crop_w):
    """The (crop_h, crop_w) in-plane window centred on the bounding box of ``mask_yx``, shifted inside the slice."""
    ys, xs = np.nonzero(mask_yx)
    h, w = mask_yx.shape
    y0 = int(np.clip((ys.min() + ys.max() + 1) // 2 - crop_h // 2, 0, h - crop_h))
    x0 = int(np.clip((xs.min() + xs.max() + 1) // 2 - crop_w // 2, 0, w - crop_w))
    return slice(None), slice(y0, y0 + crop_h), slice(x0, x0 + crop_w)


def write_phantom(hu: np.ndarray, labels: np.ndarray, spacing_zyx, volume_path, segmentation_path):
    """Write one phantom as NIfTI (int16 HU volume + uint8 segmentation), identity direction, atomically."""
    from .volume_io import _write_image_atomic

    for array, path in ((np.round(hu).astype(np.int16), volume_path), (labels.astype(np.uint8), segmentation_path)):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
        image.SetOrigin((-0.5 * array.shape[2] * spacing_zyx[2], -0.5 * array.shape[1] * spacing_zyx[1], 0.0))
        _write_image_atomic(image, path)


def write_phantom_dataset(out_dir, num_cases: int = 8, seed: int = 0, shape=None, spacing=None, progress=False,
                          profile: str = "abdomen"):
    """Write ``volume-K.nii.gz`` + ``segmentation-K.nii.gz`` for K = 0..num_cases-1 into ``out_dir`` (LiTS layout).

    Case K uses seed ``seed * 100003 + K``, so cases are independent of ``num_cases``. Returns the written paths.
    """
    os.makedirs(out_dir, exist_ok=True)
    cases = progress_bar(range(num_cases), desc="phantoms", unit="case", disable=not progress)
    paths = []
    for k in cases:
        hu, labels, spacing_k = make_phantom(seed * 100003 + k, shape=shape, spacing=spacing, profile=profile)
        vol = os.path.join(out_dir, f"volume-{k}.nii.gz")
        seg = os.path.join(out_dir, f"segmentation-{k}.nii.gz")
        write_phantom(hu, labels, spacing_k, vol, seg)
        paths.append((vol, seg))
    return paths
