"""DeepLesion: ``DL_info.csv`` parsing and the per-key-slice prepare step.

Source layout: ``<root>/DL_info.csv`` and ``<root>/Images_png/<patient>_<study>_<series>/<slice:03d>.png`` (16-bit
PNGs, HU = value - 32768). Each key slice (a ``File_name``; several CSV rows = several lesions) becomes one cached case:
``CONTEXT_SLICES`` slices on each side at ``SLICE_SPACING`` mm, linearly interpolated between adjacent slice files of
the series within its ``Slice_range`` (as 3DCE does), the key slice in the middle. One class, ``lesion``; boxes only.
The case keeps the interpolation (which files, which weights); the source slices go to the series' slice store
(:mod:`.slice_store`) and are interpolated when the loader reads them.
"""
import csv
import os
import sys
from collections import OrderedDict
from typing import Dict, List, Tuple

import cv2
import numpy as np

from detectron2.structures import BoxMode

from .cache import make_settings, write_case
from .prepare import PrepareJob, run_prepare
from .slice_store import SLICE_FORMAT, slice_path, write_slice
from .volume_io import VolumeError

__all__ = ["SPLITS", "HU_OFFSET", "DEFAULT_HU_WINDOW", "DEFAULT_SLICE_SPACING", "RowError", "parse_dl_info",
           "make_deeplesion_jobs", "prepare_deeplesion_case", "prepare_deeplesion", "read_png", "read_png_hu",
           "interpolated_slices"]

SPLITS = {1: "train", 2: "val", 3: "test"}
# DeepLesion stores HU + 32768 in unsigned 16-bit PNGs
HU_OFFSET = 32768
# the preprocessing settings of a DeepLesion preparation without a config file (3DCE's): HU window, slice interval (mm)
DEFAULT_HU_WINDOW = (-1024.0, 3071.0)
DEFAULT_SLICE_SPACING = 2.0
LESION_TYPES = {-1: "unknown", 1: "bone", 2: "abdomen", 3: "mediastinum", 4: "liver", 5: "lung", 6: "kidney",
                7: "soft tissue", 8: "pelvis"}


# columns every row must have; a file without one of them is refused as a whole
REQUIRED_COLUMNS = ("File_name", "Bounding_boxes", "Lesion_diameters_Pixel_", "Coarse_lesion_type", "Slice_range",
                    "Spacing_mm_px_", "Image_size", "Train_Val_Test")


class RowError(ValueError):
    """One bad ``DL_info.csv`` value: which column and why (the caller adds the file and the line)."""

    def __init__(self, column: str, reason: str):
        self.column, self.reason = column, reason
        super().__init__(f"column {column}: {reason}")


def _numbers(row: dict, column: str, count: int = 0) -> List[float]:
    """The comma-separated numbers of ``row[column]``; with ``count``, exactly that many (finite)."""
    text = (row.get(column) or "").strip()
    try:
        values = [float(t) for t in text.replace(";", ",").split(",") if t.strip()]
    except ValueError:
        raise RowError(column, f"not a list of numbers: {text!r}") from None
    if count and len(values) != count:
        raise RowError(column, f"expected {count} numbers, got {len(values)}: {text!r}")
    if not all(np.isfinite(values)):
        raise RowError(column, f"non-finite number in {text!r}")
    return values


def _integer(row: dict, column: str) -> int:
    value = _numbers(row, column, 1)[0]
    if value != int(value):
        raise RowError(column, f"not an integer: {row.get(column)!r}")
    return int(value)


def _parse_row(row: dict) -> tuple:
    """(case_id, key-slice fields, lesion) of one row; :class:`RowError` for the first bad value."""
    file_name = (row.get("File_name") or "").strip()
    case_id = os.path.splitext(file_name)[0]
    series, _, key = case_id.rpartition("_")
    if not series or not key.isdigit():
        raise RowError("File_name", f"expected <patient>_<study>_<series>_<slice>.png, got {file_name!r}")
    x0, y0, x1, y1 = _numbers(row, "Bounding_boxes", 4)
    if not (x1 > x0 and y1 > y0):
        kind = "inverted" if (x1 < x0 or y1 < y0) else "empty"
        raise RowError("Bounding_boxes", f"{kind} box (x1, y1, x2, y2) = ({x0:g}, {y0:g}, {x1:g}, {y1:g}); "
                                         "x2 > x1 and y2 > y1 are required")
    spacing = _numbers(row, "Spacing_mm_px_", 3)
    if not all(v > 0 for v in spacing):
        raise RowError("Spacing_mm_px_", f"spacings must be positive, got {row['Spacing_mm_px_']!r}")
    diameters = _numbers(row, "Lesion_diameters_Pixel_")
    lo, hi = (int(v) for v in _numbers(row, "Slice_range", 2))
    if not lo <= int(key) <= hi:
        raise RowError("Slice_range", f"key slice {int(key)} outside [{lo}, {hi}]")
    size = [int(v) for v in _numbers(row, "Image_size", 2)]
    split = _integer(row, "Train_Val_Test")
    if split not in SPLITS:
        raise RowError("Train_Val_Test", f"expected 1 (train), 2 (val) or 3 (test), got {split}")
    noisy = _integer(row, "Possibly_noisy") == 1 if (row.get("Possibly_noisy") or "").strip() else False
    case = {"series": series, "key_slice": int(key), "slice_range": (lo, hi), "spacing_xyz": tuple(spacing),
            "image_size": tuple(size), "split": SPLITS[split], "noisy": noisy}
    lesion = {"bbox": [x0, y0, x1, y1], "lesion_type": _integer(row, "Coarse_lesion_type"),
              "diameter_mm": float(diameters[0]) * spacing[0] if diameters else float("nan")}
    return case_id, case, lesion


def parse_dl_info(csv_path) -> Tuple["OrderedDict[str, dict]", List[Tuple[int, str]]]:
    """Group ``DL_info.csv`` rows by key slice; a bad row is left out and reported, the others are kept.

    Returns:
        (cases, row_errors): cases = {case_id (File_name without .png): {"series": "<patient>_<study>_<series>",
        "key_slice": int, "slice_range": (lo, hi), "spacing_xyz": (x, y, z) mm, "image_size": (h, w),
        "split": "train"|"val"|"test", "noisy": bool, "lesions": [{"bbox": [x0, y0, x1, y1], "lesion_type": int,
        "diameter_mm": float}]}}; row_errors = [(line, "<csv>: line L, column C: reason")].
    Raises:
        ValueError: the file lacks a required column (nothing can be read from it).
    """
    cases: "OrderedDict[str, dict]" = OrderedDict()
    errors: List[Tuple[int, str]] = []
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {', '.join(missing)} in the header")
        for row in reader:
            line = reader.line_num  # the CSV line the row ends on (a quoted value may span lines)
            try:
                case_id, fields, lesion = _parse_row(row)
            except RowError as e:
                errors.append((line, f"{csv_path}: line {line}, {e}"))
                continue
            case = cases.get(case_id)
            if case is None:
                case = cases[case_id] = dict(fields, lesions=[])
            case["noisy"] = case["noisy"] or fields["noisy"]
            case["lesions"].append(lesion)
    return cases, errors


def make_deeplesion_jobs(source_root, cache_root, settings, cases=None) -> List[PrepareJob]:
    """One job per key slice; noisy key slices of the test split are left out (as is usual for DeepLesion).

    ``cases`` are :func:`parse_dl_info`'s; by default ``source_root/DL_info.csv`` is read (its bad rows left out).
    """
    if cases is None:
        cases, _ = parse_dl_info(os.path.join(source_root, "DL_info.csv"))
    jobs = []
    for case_id, case in cases.items():
        if case["split"] == "test" and case["noisy"]:
            continue
        jobs.append(PrepareJob(case_id=case_id, split=case["split"], cache_root=os.fspath(cache_root),
                               settings=settings,
                               source={"series_dir": os.path.join(source_root, "Images_png", case["series"])},
                               extra=case))
    return jobs


def read_png(path) -> np.ndarray:
    """(H, W) uint16 values of a DeepLesion 16-bit PNG; :class:`VolumeError` naming the file when it is bad."""
    if not os.path.isfile(path):
        raise VolumeError(path, "slice file not found")
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise VolumeError(path, "unreadable or truncated PNG")
    if image.ndim != 2 or image.dtype != np.uint16:
        raise VolumeError(path, f"expected a 16-bit single-channel PNG, got {image.dtype} of shape {image.shape}")
    return image


def read_png_hu(path) -> np.ndarray:
    """(H, W) float32 HU from a DeepLesion 16-bit PNG; :class:`VolumeError` naming the file when it is bad."""
    return read_png(path).astype(np.float32) - HU_OFFSET


def interpolated_slices(key_slice: int, slice_range, spacing_z: float, target_spacing: float, context: int):
    """Positions of the 2·context+1 resampled slices in slice-file units, clamped to ``slice_range``.

    Returns:
        (lo, hi, w): three (2·context+1,) arrays; slice k = (1 - w[k])·file[lo[k]] + w[k]·file[hi[k]].
    """
    step = (target_spacing / spacing_z) if target_spacing and target_spacing > 0 else 1.0
    pos = key_slice + np.arange(-context, context + 1) * step
    pos = np.clip(pos, slice_range[0], slice_range[1])
    lo = np.floor(pos + 1e-9).astype(np.int64)
    w = pos - lo
    hi = np.where(w > 1e-9, np.minimum(lo + 1, slice_range[1]), lo)
    return lo, hi, np.where(w > 1e-9, w, 0.0)


def prepare_deeplesion_case(job: PrepareJob):
    """Cache one key slice (runs in a worker process): the source slices its interpolated neighbours need go to the
    series' slice store (shared with the series' other key slices), the interpolation to its ``meta.json``."""
    case, settings = job.extra, job.settings
    series_dir = job.source["series_dir"]
    spacing_x, spacing_y, spacing_z = case["spacing_xyz"]
    if not spacing_z > 0:
        raise VolumeError(series_dir, f"slice interval {spacing_z} mm in Spacing_mm_px_ is not positive")
    context = int(settings.get("context_slices", 7))
    lo, hi, w = interpolated_slices(case["key_slice"], case["slice_range"], spacing_z, settings["slice_spacing"],
                                    context)
    files: Dict[int, np.ndarray] = {}
    for i in sorted(set(lo.tolist()) | set(hi.tolist())):
        files[i] = read_png(os.path.join(series_dir, f"{i:03d}.png"))
    shapes = {a.shape for a in files.values()}
    if len(shapes) != 1:
        raise VolumeError(series_dir, f"slices of different sizes {sorted(shapes)}")
    # rewritten on every prepare of a key slice, so the store always holds the current PNGs
    for i, values in files.items():
        write_slice(slice_path(job.cache_root, case["series"], i), values)
    height, width = next(iter(shapes))
    annotations = []
    for lesion in case["lesions"]:
        x0, y0, x1, y1 = lesion["bbox"]
        annotations.append({"bbox": [x0, y0, x1, y1], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "iscrowd": 0,
                            "lesion_type": lesion["lesion_type"], "diameter_mm": lesion["diameter_mm"]})
    meta = {
        "source": {"series_dir": os.path.abspath(series_dir), "key_slice": case["key_slice"],
                   "slice_range": list(case["slice_range"])},
        "settings": settings,
        "split": job.split,
        "labeled": True,
        "noisy": case["noisy"],
        "spacing": [float(settings["slice_spacing"] or spacing_z), float(spacing_y), float(spacing_x)],
        "original_spacing": [float(spacing_z), float(spacing_y), float(spacing_x)],
        "num_slices": int(len(lo)),
        "num_slices_original": int(case["slice_range"][1] - case["slice_range"][0] + 1),
        "height": int(height),
        "width": int(width),
        "target_slices": [context],
        "slice_store": {"series": case["series"], "lo": lo.tolist(), "hi": hi.tolist(), "w": w.tolist(),
                        "offset": HU_OFFSET},
        "lesion_type_names": LESION_TYPES,
        "classes": ["lesion"],
    }
    write_case(job.cache_root, job.case_id, {}, meta, {str(context): annotations})


def prepare_deeplesion(source, cache, hu_window, slice_spacing, context_slices, workers=1, stream=None):
    """Prepare every DeepLesion key slice listed in ``source/DL_info.csv`` into ``cache``; returns the result.

    A bad CSV row is left out and listed as a failure (``"DL_info.csv line L"``, one line naming the line, the
    column and the reason); the other rows, of the same key slice too, are prepared.

    Raises:
        FileNotFoundError: ``DL_info.csv`` is missing.
        ValueError: ``DL_info.csv`` lacks a required column.
    """
    stream = stream or sys.stderr
    csv_path = os.path.join(source, "DL_info.csv")
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"{csv_path}: not found")
    settings = make_settings(hu_window, slice_spacing, context_slices=int(context_slices), slice_store=SLICE_FORMAT)
    cases, row_errors = parse_dl_info(csv_path)
    jobs = make_deeplesion_jobs(source, cache, settings, cases)
    row_failures = [(f"DL_info.csv line {line}", reason) for line, reason in row_errors]
    result = run_prepare(jobs, prepare_deeplesion_case, cache, settings, workers=workers, desc="prepare DeepLesion",
                         index_extra={"dataset": "deeplesion", "source": os.path.abspath(source),
                                      "bad_rows": [{"row": c, "reason": r} for c, r in row_failures]},
                         stream=stream)
    for row, reason in row_failures:
        print(f"FAILED {row}: {reason}", file=stream)
    result.failed = row_failures + result.failed
    return result
