"""DeepLesion: ``DL_info.csv`` parsing and the per-key-slice prepare step.

Source layout: ``<root>/DL_info.csv`` and ``<root>/Images_png/<patient>_<study>_<series>/<slice:03d>.png`` (16-bit
PNGs, HU = value - 32768). Each key slice (a ``File_name``; several CSV rows = several lesions) becomes one cached case:
``CONTEXT_SLICES`` slices on each side at ``SLICE_SPACING`` mm, linearly interpolated between adjacent slice files of
the series within its ``Slice_range`` (as 3DCE does), the key slice in the middle. One class, ``lesion``; boxes only.
"""
import csv
import os
from collections import OrderedDict
from typing import Dict, List

import cv2
import numpy as np
from detectron2.structures import BoxMode

from .cache import make_settings, write_case
from .preprocessing import window
from .prepare import PrepareJob, run_prepare
from .volume_io import VolumeError

__all__ = ["SPLITS", "HU_OFFSET", "parse_dl_info", "make_deeplesion_jobs", "prepare_deeplesion_case",
           "read_png_hu", "interpolated_slices"]

SPLITS = {1: "train", 2: "val", 3: "test"}
# DeepLesion stores HU + 32768 in unsigned 16-bit PNGs
HU_OFFSET = 32768
LESION_TYPES = {-1: "unknown", 1: "bone", 2: "abdomen", 3: "mediastinum", 4: "liver", 5: "lung", 6: "kidney",
                7: "soft tissue", 8: "pelvis"}


def _floats(text: str) -> List[float]:
    return [float(t) for t in str(text).replace(";", ",").split(",") if t.strip()]


def parse_dl_info(csv_path) -> "OrderedDict[str, dict]":
    """Group ``DL_info.csv`` rows by key slice.

    Returns:
        {case_id (File_name without .png): {"series": "<patient>_<study>_<series>", "key_slice": int,
        "slice_range": (lo, hi), "spacing_xyz": (x, y, z) mm, "image_size": (h, w), "split": "train"|"val"|"test",
        "noisy": bool, "lesions": [{"bbox": [x0, y0, x1, y1], "lesion_type": int, "diameter_mm": float}]}}
    """
    cases: "OrderedDict[str, dict]" = OrderedDict()
    with open(csv_path, newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                file_name = row["File_name"].strip()
                case_id = os.path.splitext(file_name)[0]
                series, key = case_id.rsplit("_", 1)
                spacing = _floats(row["Spacing_mm_px_"])
                diameters = _floats(row["Lesion_diameters_Pixel_"])
                lesion = {"bbox": _floats(row["Bounding_boxes"])[:4], "lesion_type": int(float(row["Coarse_lesion_type"])),
                          "diameter_mm": float(diameters[0]) * spacing[0] if diameters else float("nan")}
                case = cases.get(case_id)
                if case is None:
                    lo, hi = (int(v) for v in _floats(row["Slice_range"])[:2])
                    size = [int(v) for v in _floats(row["Image_size"])[:2]]
                    case = cases[case_id] = {
                        "series": series, "key_slice": int(key) if key.isdigit() else int(float(row["Key_slice_index"])),
                        "slice_range": (lo, hi), "spacing_xyz": tuple(spacing[:3]), "image_size": tuple(size),
                        "split": SPLITS[int(float(row["Train_Val_Test"]))],
                        "noisy": int(float(row.get("Possibly_noisy", 0) or 0)) == 1, "lesions": []}
                case["noisy"] = case["noisy"] or int(float(row.get("Possibly_noisy", 0) or 0)) == 1
                case["lesions"].append(lesion)
            except (KeyError, ValueError, IndexError) as e:
                raise ValueError(f"{csv_path}: line {line}: malformed row ({type(e).__name__}: {e})") from None
    return cases


def make_deeplesion_jobs(source_root, cache_root, settings) -> List[PrepareJob]:
    """One job per key slice; noisy key slices of the test split are left out (as is usual for DeepLesion)."""
    cases = parse_dl_info(os.path.join(source_root, "DL_info.csv"))
    jobs = []
    for case_id, case in cases.items():
        if case["split"] == "test" and case["noisy"]:
            continue
        jobs.append(PrepareJob(case_id=case_id, split=case["split"], cache_root=os.fspath(cache_root),
                               settings=settings,
                               source={"series_dir": os.path.join(source_root, "Images_png", case["series"])},
                               extra=case))
    return jobs


def read_png_hu(path) -> np.ndarray:
    """(H, W) float32 HU from a DeepLesion 16-bit PNG; :class:`VolumeError` naming the file when it is bad."""
    if not os.path.isfile(path):
        raise VolumeError(path, "slice file not found")
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise VolumeError(path, "unreadable or truncated PNG")
    if image.ndim != 2 or image.dtype != np.uint16:
        raise VolumeError(path, f"expected a 16-bit single-channel PNG, got {image.dtype} of shape {image.shape}")
    return image.astype(np.float32) - HU_OFFSET


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
    """Cache one key slice with its interpolated neighbours (runs in a worker process)."""
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
        files[i] = read_png_hu(os.path.join(series_dir, f"{i:03d}.png"))
    shapes = {a.shape for a in files.values()}
    if len(shapes) != 1:
        raise VolumeError(series_dir, f"slices of different sizes {sorted(shapes)}")
    hu = np.stack([(1.0 - w[k]) * files[lo[k]] + w[k] * files[hi[k]] for k in range(len(lo))]).astype(np.float32)
    image = window(hu, *settings["hu_window"]).astype(np.float16)
    height, width = image.shape[1:]
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
        "num_slices": int(image.shape[0]),
        "num_slices_original": int(case["slice_range"][1] - case["slice_range"][0] + 1),
        "height": int(height),
        "width": int(width),
        "target_slices": [context],
        "lesion_type_names": LESION_TYPES,
        "classes": ["lesion"],
    }
    write_case(job.cache_root, job.case_id, {"image": image}, meta, {str(context): annotations})


def prepare_deeplesion(source, cache, hu_window, slice_spacing, context_slices, workers=1, stream=None):
    """Prepare every DeepLesion key slice listed in ``source/DL_info.csv`` into ``cache``; returns the result.

    Raises:
        FileNotFoundError: ``DL_info.csv`` is missing.
    """
    csv_path = os.path.join(source, "DL_info.csv")
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"{csv_path}: not found")
    settings = make_settings(hu_window, slice_spacing, context_slices=int(context_slices))
    jobs = make_deeplesion_jobs(source, cache, settings)
    return run_prepare(jobs, prepare_deeplesion_case, cache, settings, workers=workers, desc="prepare DeepLesion",
                       index_extra={"dataset": "deeplesion", "source": os.path.abspath(source)}, stream=stream)
