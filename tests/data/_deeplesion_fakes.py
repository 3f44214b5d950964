"""A generated folder in DeepLesion's layout: ``DL_info.csv`` plus ``Images_png/<series>/<slice:03d>.png`` (16-bit,
HU + 32768)."""
import csv
from pathlib import Path

import cv2
import numpy as np

COLUMNS = ["File_name", "Patient_index", "Study_index", "Series_ID", "Key_slice_index", "Measurement_coordinates",
           "Bounding_boxes", "Lesion_diameters_Pixel_", "Normalized_lesion_location", "Coarse_lesion_type",
           "Possibly_noisy", "Slice_range", "Spacing_mm_px_", "Image_size", "DICOM_windows", "Patient_gender",
           "Patient_age", "Train_Val_Test"]


def row(file_name, key, box, diam=10.0, ltype=4, noisy=0, rng=(1, 6), spacing=0.8, split=1, slice_mm=5.0,
        size=(32, 32)):
    """One DL_info.csv row; ``box`` is written as given (a list of numbers, or a string for malformed values)."""
    p, s, se = file_name.split("_")[:3]
    box_text = box if isinstance(box, str) else ", ".join(map(str, box))
    return [file_name, int(p), int(s), int(se), key, "1, 2, 3, 4", box_text, f"{diam}, {diam / 2}",
            "0.5, 0.5, 0.5", ltype, noisy, f"{rng[0]}, {rng[1]}", f"{spacing}, {spacing}, {slice_mm}",
            f"{size[0]}, {size[1]}", "-175, 275", "F", 50, split]


def write_csv(root, rows):
    with open(Path(root) / "DL_info.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(rows)


def write_series(root, series, values):
    """Write (Z, H, W) uint16 ``values`` as slices 1..Z of ``Images_png/<series>``; returns the folder."""
    folder = Path(root) / "Images_png" / series
    folder.mkdir(parents=True, exist_ok=True)
    for k, image in enumerate(values, start=1):
        assert cv2.imwrite(str(folder / f"{k:03d}.png"), np.ascontiguousarray(image, np.uint16))
    return folder


def noisy_series(seed, num_slices, size=32):
    """(Z, H, W) uint16 CT-like values: HU -1100..1500 with noise, so interpolation and window are exercised."""
    rng = np.random.default_rng(seed)
    hu = rng.normal(40.0, 400.0, size=(num_slices, size, size)).clip(-1100, 1500)
    return np.round(hu + 32768).astype(np.uint16)


def lesion_dataset(root, size=64, num_train=6, num_val=2, num_test=2, slices=9, seed=0):
    """A trainable folder: per key slice a series of ``slices`` slices (2 mm) with one bright disc (the lesion,
    ~ 250 HU on ~ 40 HU tissue) through the middle slices; the box is the disc's. Returns the rows written."""
    rng = np.random.default_rng(seed)
    rows, n = [], 0
    for split, count in ((1, num_train), (2, num_val), (3, num_test)):
        for _ in range(count):
            n += 1
            series = f"{n:06d}_01_01"
            yy, xx = np.mgrid[:size, :size]
            hu = rng.normal(40.0, 15.0, size=(slices, size, size))
            hu[:, (yy - size / 2) ** 2 + (xx - size / 2) ** 2 > (0.45 * size) ** 2] = -1000.0  # air around a body
            r = int(rng.integers(size // 10, size // 5))
            cy, cx = (int(v) for v in rng.integers(size // 4 + r // 2, 3 * size // 4 - r // 2, size=2))
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            for z in range(slices // 2 - 2, slices // 2 + 3):
                hu[z][disc] = 250.0 + rng.normal(0.0, 15.0, int(disc.sum()))
            write_series(root, series, np.round(hu + 32768).astype(np.uint16))
            key = slices // 2 + 1
            rows.append(row(f"{series}_{key:03d}.png", key, [cx - r, cy - r, cx + r, cy + r], diam=2.0 * r,
                            rng=(1, slices), spacing=0.8, split=split, slice_mm=2.0, size=(size, size)))
    write_csv(root, rows)
    return rows
