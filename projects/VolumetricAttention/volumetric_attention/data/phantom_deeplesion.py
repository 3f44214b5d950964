"""A synthetic DeepLesion: phantoms of :mod:`.phantoms` written in DeepLesion's layout, for lesion detection (FROC).

Layout, as :mod:`.deeplesion` and ``tools/prepare_deeplesion.py`` read it: one folder per series,
``<out>/Images_png/<series>/<slice:03d>.png`` with ``<series>`` = ``<patient>_<study>_<series id>`` (16-bit PNGs,
HU + 32768, slices numbered from 1), and ``<out>/DL_info.csv`` with the official 18 columns, one row per lesion of a
key slice. ``<out>/phantoms.json`` records how each series was made, so that its label volume can be made again with
:func:`.phantoms.make_phantom`. ``<out>/lookalikes.json`` (not part of DeepLesion's layout; the preparation ignores
it) lists, per key slice File_name, the boxes of the vessel cross-sections in it: ``TEST.CT.LOOKALIKES`` gives it to
the FROC evaluator, which then tells the false positives on a vessel from the others.

What poses the z-context question for boxes is the profile (default ``zcontext_liver``): vessels of the small
lesions' size and HU run along z through the liver, so in one slice (and in one 3-slice image) a vessel's
cross-section looks like a lesion; only the neighbouring slices tell them apart. Vessels carry no box.

* Series: one phantom each; every 4th patient has a follow-up study (a second series). The slice interval is drawn
  per series from :data:`SLICE_INTERVALS_MM`, the number of slices from the series' length (100-160 mm), so a
  series holds many more slices than a key slice's context reaches.
* Key slices: for each 3D lesion component, the slice of its largest cross-section (one key slice where several
  coincide). A key slice lists every lesion cross-section in it (4-connected 2D components of the lesion label)
  whose long axis is at least :data:`MIN_DIAMETER_MM`, so it may hold a few lesions.
* Boxes: the cross-section's bounding box in detectron2's XYXY_ABS convention, ``[x0, y0, x1 + 1, y1 + 1]`` for
  pixels ``x0..x1``, ``y0..y1`` (as :mod:`.instances` boxes a label). Lesion_diameters_Pixel_ and
  Measurement_coordinates: RECIST-like long axis (the longest chord between boundary pixel centres) and short axis
  (the longest chord within 8 degrees of perpendicular to it).
* Splits by patient (as DeepLesion's): about 70 / 15 / 15 % train / val / test (1 / 2 / 3), at least one patient
  in val and test once there are three. Coarse_lesion_type is 4 (liver) in val and test, -1 (unknown) in train,
  as the official file leaves train untyped.
* Possibly_noisy: round(``noisy_share`` x n) of each split's n key slices, evenly spaced in file order, are flagged,
  and their boxes are really off: each edge moved by a random amount of up to 20 % of the box's size, rounded to
  pixels. The test split leaves them out when prepared, as the official evaluation does.

Cost: about 2 s per series of 128 x 128 slices on one core (the phantom is made at 256 x 256); ``workers`` runs
series in parallel processes.
"""
import contextlib
import csv
import io
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
from scipy import ndimage
from scipy.spatial.distance import pdist, squareform

from ..utils.atomic_io import atomic_open, write_text_atomic
from ..utils.progress import progress_bar
from .cache import INDEX_FILE, read_json
from .deeplesion import HU_OFFSET
from .phantoms import PROFILES, make_phantom

__all__ = ["DL_INFO_COLUMNS", "SLICE_INTERVALS_MM", "MIN_DIAMETER_MM", "LOOKALIKES_FILE", "plan_series", "recist_axes",
           "key_slice_lesions", "section_boxes", "check_targets", "write_deeplesion_phantoms"]

# the official DL_info.csv header, in order
DL_INFO_COLUMNS = ["File_name", "Patient_index", "Study_index", "Series_ID", "Key_slice_index",
                   "Measurement_coordinates", "Bounding_boxes", "Lesion_diameters_Pixel_",
                   "Normalized_lesion_location", "Coarse_lesion_type", "Possibly_noisy", "Slice_range",
                   "Spacing_mm_px_", "Image_size", "DICOM_windows", "Patient_gender", "Patient_age",
                   "Train_Val_Test"]
# reconstruction intervals of clinical abdominal CT, one drawn per series
SLICE_INTERVALS_MM = (1.0, 1.25, 2.0, 2.5, 3.0, 5.0)
SERIES_LENGTH_MM = (100.0, 160.0)
# a cross-section whose long axis is shorter is not annotated (a lesion's tip in another lesion's key slice)
MIN_DIAMETER_MM = 3.0
DEFAULT_PROFILE = "zcontext_liver"
MARKER_FILE = "phantoms.json"
LOOKALIKES_FILE = "lookalikes.json"
LIVER_TYPE, UNKNOWN_TYPE = 4, -1
LIVER_WINDOW = "-175, 275"  # DICOM_windows: the liver window DeepLesion lists for abdominal key slices
_SHORT_AXIS_COS = math.sin(math.radians(8.0))  # |cos| of the angle to the long axis a short-axis chord may have


def plan_series(num_series: int, seed: int = 0, profile: str = DEFAULT_PROFILE, size: Optional[int] = None,
                slice_interval: Optional[float] = None, slices: Optional[int] = None,
                length_mm: Sequence[float] = SERIES_LENGTH_MM) -> List[dict]:
    """How each series is made: names, patient fields, split and the phantom's seed, shape and spacing.

    Args:
        size: in-plane size the anatomy is made at (default the profile's ``size_px``; the in-plane spacing scales
            with it, so the field of view stays the profile's).
        slice_interval: one z spacing in mm for every series (default: drawn from :data:`SLICE_INTERVALS_MM`).
        slices: slices per series (default: the series' length, drawn from ``length_mm``, over its interval).
    Returns:
        [{"series": "<patient>_<study>_<series>", "patient", "study", "series_id", "split": 1|2|3, "gender",
        "age", "phantom_seed", "profile", "shape": [Z, H, W], "spacing_zyx": [z, y, x]}], in series order.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown phantom profile {profile!r}; choose from {sorted(PROFILES)}")
    prof = PROFILES[profile]
    native = int(prof.get("size_px", 128))
    size = int(size or native)
    rng = np.random.default_rng(seed)
    plans, patients = [], []
    while len(plans) < num_series:
        patient = len(patients) + 1
        patients.append({"gender": str(rng.choice(["F", "M"])), "age": int(rng.integers(20, 90))})
        for study in range(1, (2 if patient % 4 == 0 else 1) + 1):
            if len(plans) == num_series:
                break
            k = len(plans)
            z = float(slice_interval) if slice_interval else float(rng.choice(SLICE_INTERVALS_MM))
            inplane = float(rng.uniform(*prof["inplane_mm"])) * native / size
            num_slices = int(slices) if slices else max(int(round(rng.uniform(*length_mm) / z)), 3)
            plans.append({"series": f"{patient:06d}_{study:02d}_01", "patient": patient, "study": study,
                          "series_id": 1, "phantom_seed": seed * 100003 + k, "profile": profile,
                          "shape": [num_slices, size, size], "spacing_zyx": [z, inplane, inplane],
                          **patients[-1]})
    split_of = _patient_splits(len(patients), rng)
    for plan in plans:
        plan["split"] = split_of[plan["patient"]]
    return plans


def _patient_splits(num_patients: int, rng) -> Dict[int, int]:
    """{patient: 1 (train) | 2 (val) | 3 (test)}: 15 % each for val and test (at least one from 3 patients on)."""
    order = rng.permutation(np.arange(1, num_patients + 1))
    held = max(1, int(round(0.15 * num_patients))) if num_patients >= 3 else 0
    split = {int(p): 1 for p in order}
    for p in order[:held]:
        split[int(p)] = 3
    for p in order[held:2 * held]:
        split[int(p)] = 2
    return split


def recist_axes(mask_hw: np.ndarray):
    """RECIST-like axes of one 2D lesion cross-section, between boundary pixel centres.

    Returns:
        (long, short): two (2, 2) float arrays of endpoints ``[[x, y], [x, y]]``; the long axis is the longest
        chord, the short axis the longest chord within 8 degrees of perpendicular to it (zero length if none).
    """
    contours, _ = cv2.findContours(mask_hw.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    points = np.unique(np.concatenate([c.reshape(-1, 2) for c in contours]), axis=0).astype(np.float64)
    if len(points) < 2:
        return np.repeat(points[:1], 2, axis=0), np.repeat(points[:1], 2, axis=0)
    dist = squareform(pdist(points))
    i, j = np.unravel_index(int(np.argmax(dist)), dist.shape)
    axis = (points[j] - points[i]) / dist[i, j]
    chords = points[None, :, :] - points[:, None, :]
    cos = np.abs(chords @ axis) / np.maximum(dist, 1e-9)
    candidates = np.where(cos <= _SHORT_AXIS_COS, dist, -1.0)
    a, b = np.unravel_index(int(np.argmax(candidates)), dist.shape)
    short = points[[a, b]] if candidates[a, b] > 0 else np.repeat(points[i:i + 1], 2, axis=0)
    return points[[i, j]], short


def key_slice_lesions(labels: np.ndarray, spacing_zyx) -> Dict[int, List[dict]]:
    """Key slices of one phantom and their lesion cross-sections.

    Args:
        labels: (Z, H, W) uint8, 2 = lesion (:func:`.phantoms.make_phantom`'s).
        spacing_zyx: (z, y, x) mm.
    Returns:
        {z (0-based): [{"bbox": [x0, y0, x1, y1] (XYXY_ABS), "long": (2, 2), "short": (2, 2) endpoints (x, y),
        "centre": (x, y)}]} for every key slice with at least one lesion of :data:`MIN_DIAMETER_MM` or more.
    """
    lesion = labels == 2
    components, _ = ndimage.label(lesion, structure=np.ones((3, 3, 3), dtype=bool))
    key_slices = set()
    for i, box in enumerate(ndimage.find_objects(components), start=1):
        areas = (components[box] == i).sum(axis=(1, 2))
        key_slices.add(int(box[0].start + np.argmax(areas)))
    out = {}
    min_px = MIN_DIAMETER_MM / float(spacing_zyx[2])
    for z in sorted(key_slices):
        cross, _ = ndimage.label(lesion[z])
        found = []
        for i, (ys, xs) in enumerate(ndimage.find_objects(cross), start=1):
            mask = cross == i
            long_axis, short_axis = recist_axes(mask)
            if np.linalg.norm(long_axis[1] - long_axis[0]) < min_px:
                continue
            cy, cx = ndimage.center_of_mass(mask)
            found.append({"bbox": _xyxy(ys, xs),
                          "long": long_axis, "short": short_axis, "centre": (float(cx), float(cy))})
        if found:
            out[z] = found
    return out


def section_boxes(mask_hw: np.ndarray) -> List[List[float]]:
    """XYXY_ABS boxes ``[x0, y0, x1 + 1, y1 + 1]`` of the 4-connected components of a 2D mask, in label order."""
    components, _ = ndimage.label(mask_hw)
    return [_xyxy(ys, xs) for ys, xs in ndimage.find_objects(components)]


def _xyxy(ys: slice, xs: slice) -> List[float]:
    """The XYXY_ABS box ``[x0, y0, x1 + 1, y1 + 1]`` of a component's ``find_objects`` slices."""
    return [float(xs.start), float(ys.start), float(xs.stop), float(ys.stop)]


def _numbers(values) -> str:
    return ", ".join(f"{float(v):.6g}" for v in values)


def _write_png(path, hu_slice: np.ndarray):
    values = np.clip(np.round(hu_slice) + HU_OFFSET, 0, 65535).astype(np.uint16)
    ok, data = cv2.imencode(".png", values)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_open(path, "wb") as (f, _):
        f.write(data.tobytes())


def _write_series(plan: dict, out_dir: str):
    """Make one series' phantom and write its slices.

    Returns:
        (rows, lookalikes): its key slices' rows (Possibly_noisy still 0); {File_name: vessel cross-section boxes}
        of its key slices.
    """
    hu, labels, spacing, vessels = make_phantom(plan["phantom_seed"], shape=plan["shape"],
                                                spacing=plan["spacing_zyx"], profile=plan["profile"], with_vessels=True)
    folder = os.path.join(out_dir, "Images_png", plan["series"])
    for z in range(hu.shape[0]):
        _write_png(os.path.join(folder, f"{z + 1:03d}.png"), hu[z])
    num_slices, height, width = labels.shape
    lesion_type = UNKNOWN_TYPE if plan["split"] == 1 else LIVER_TYPE
    rows, lookalikes = [], {}
    for z, lesions in key_slice_lesions(labels, spacing).items():
        lookalikes[f"{plan['series']}_{z + 1:03d}.png"] = section_boxes(vessels[z])
        for lesion in lesions:
            long_px = float(np.linalg.norm(lesion["long"][1] - lesion["long"][0]))
            short_px = float(np.linalg.norm(lesion["short"][1] - lesion["short"][0]))
            cx, cy = lesion["centre"]
            rows.append({
                "File_name": f"{plan['series']}_{z + 1:03d}.png", "Patient_index": plan["patient"],
                "Study_index": plan["study"], "Series_ID": plan["series_id"], "Key_slice_index": z + 1,
                "Measurement_coordinates": _numbers(np.concatenate([lesion["long"].ravel(), lesion["short"].ravel()])),
                "Bounding_boxes": _numbers(lesion["bbox"]), "Lesion_diameters_Pixel_": _numbers([long_px, short_px]),
                "Normalized_lesion_location": _numbers([cx / width, cy / height, z / max(num_slices - 1, 1)]),
                "Coarse_lesion_type": lesion_type, "Possibly_noisy": 0, "Slice_range": f"1, {num_slices}",
                "Spacing_mm_px_": _numbers([spacing[2], spacing[1], spacing[0]]),
                "Image_size": f"{height}, {width}", "DICOM_windows": LIVER_WINDOW,
                "Patient_gender": plan["gender"], "Patient_age": plan["age"], "Train_Val_Test": plan["split"],
            })
    return rows, lookalikes


def _flag_noisy(rows: List[dict], noisy_share: float, seed: int):
    """Flag round(share x n) of each split's n key slices (evenly spaced in file order) and move their boxes' edges."""
    rng = np.random.default_rng([seed, 1])
    for split in (1, 2, 3):
        keys = sorted({r["File_name"] for r in rows if r["Train_Val_Test"] == split})
        noisy = {k for i, k in enumerate(keys)
                 if math.floor((i + 1) * noisy_share + 0.5) > math.floor(i * noisy_share + 0.5)}
        for r in rows:
            if r["File_name"] not in noisy:
                continue
            height, width = (int(v) for v in r["Image_size"].split(","))
            x0, y0, x1, y1 = (float(v) for v in r["Bounding_boxes"].split(","))
            w, h = x1 - x0, y1 - y0
            dx0, dx1 = np.round(rng.uniform(-0.2, 0.2, 2) * w)
            dy0, dy1 = np.round(rng.uniform(-0.2, 0.2, 2) * h)
            nx0, ny0 = min(max(x0 + dx0, 0.0), width - 1.0), min(max(y0 + dy0, 0.0), height - 1.0)
            box = [nx0, ny0, min(max(x1 + dx1, nx0 + 1.0), float(width)), min(max(y1 + dy1, ny0 + 1.0), float(height))]
            r["Bounding_boxes"], r["Possibly_noisy"] = _numbers(box), 1


def check_targets(out_dir, cache_dir=None):
    """Refuse folders that hold data this module did not write: a ``DL_info.csv`` without ``phantoms.json`` beside
    it (a real DeepLesion), or a cache whose index was prepared from another source (case ids would collide).

    Raises:
        FileExistsError: one line naming the folder.
    """
    out_dir = os.path.abspath(out_dir)
    if os.path.isfile(os.path.join(out_dir, "DL_info.csv")) and not os.path.isfile(os.path.join(out_dir, MARKER_FILE)):
        raise FileExistsError(f"{out_dir} holds a DL_info.csv that is not a synthetic DeepLesion (no {MARKER_FILE});"
                              " choose another --out")
    index = os.path.join(os.fspath(cache_dir), INDEX_FILE) if cache_dir else None
    if index and os.path.isfile(index):
        try:
            source = read_json(index).get("source")
        except (OSError, ValueError):
            source = None
        if source and os.path.abspath(source) != out_dir:
            raise FileExistsError(f"{cache_dir} is a cache of {source}, not of {out_dir}; choose another --cache")


def write_deeplesion_phantoms(out_dir, num_series: int = 30, seed: int = 0, profile: str = DEFAULT_PROFILE,
                              size: Optional[int] = None, slice_interval: Optional[float] = None,
                              slices: Optional[int] = None, length_mm: Sequence[float] = SERIES_LENGTH_MM,
                              noisy_share: float = 0.1, workers: int = 1, progress: bool = False) -> List[dict]:
    """Write ``num_series`` phantom series, ``DL_info.csv`` (last), ``phantoms.json`` and ``lookalikes.json`` into
    ``out_dir``.

    Deterministic in the arguments (``workers`` aside). See :func:`plan_series` for ``size``, ``slice_interval``,
    ``slices`` and ``length_mm``. Returns the CSV rows ({column: value}, one per lesion).

    Raises:
        FileExistsError: ``out_dir`` holds a DL_info.csv this module did not write (:func:`check_targets`).
    """
    check_targets(out_dir)
    if not 0.0 <= noisy_share <= 1.0:
        raise ValueError(f"noisy_share must be in [0, 1], got {noisy_share}")
    out_dir = os.fspath(out_dir)
    plans = plan_series(num_series, seed, profile, size, slice_interval, slices, length_mm)
    os.makedirs(out_dir, exist_ok=True)
    marker = {"layout": "deeplesion", "num_series": num_series, "seed": seed, "profile": profile,
              "noisy_share": noisy_share, "series": {p["series"]: p for p in plans}}
    write_text_atomic(os.path.join(out_dir, MARKER_FILE), json.dumps(marker, indent=1))
    rows, lookalikes = [], {}
    parallel = workers > 1 and len(plans) > 1
    with progress_bar(total=len(plans), desc="DeepLesion phantoms", unit="series", disable=not progress) as bar, \
            (ProcessPoolExecutor(max_workers=workers) if parallel else contextlib.nullcontext()) as pool:
        run = pool.map if parallel else map
        for series_rows, series_lookalikes in run(_write_series, plans, [out_dir] * len(plans)):
            rows.extend(series_rows)
            lookalikes.update(series_lookalikes)
            bar.update(1)
    _flag_noisy(rows, noisy_share, seed)
    write_text_atomic(os.path.join(out_dir, LOOKALIKES_FILE), json.dumps(lookalikes, indent=1))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=DL_INFO_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(os.path.join(out_dir, "DL_info.csv"), text.getvalue())
    return rows
