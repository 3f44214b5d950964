"""LiTS (and MSD Task03_Liver, and the phantoms, which use the LiTS layout): case discovery, the train/val split
and the per-case prepare step.

Accepted layouts under the source root (any depth; symbolic links to folders are followed):
    official LiTS:  volume-K.nii[.gz] + segmentation-K.nii[.gz] (labeled), test-volume-K.nii[.gz] (unlabeled)
    MSD Task03:     imagesTr/liver_K.nii.gz + labelsTr/liver_K.nii.gz (labeled), imagesTs/liver_K.nii.gz (unlabeled)
"""
import os
import re
from typing import Dict, List

import numpy as np

from .cache import make_settings, write_case
from .instances import volume_instances
from .prepare import PrepareJob, run_prepare
from .preprocessing import preprocess_volume
from .volume_io import VolumeError, read_volume

__all__ = ["discover_lits_cases", "assign_splits", "make_lits_jobs", "prepare_lits_case", "VAL_EVERY"]

_NII = r"\.nii(?:\.gz)?$"
# every VAL_EVERY-th labeled case in natural case-id order goes to val: an exact, deterministic 75/25 split
VAL_EVERY = 4


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _walk_following_links(root):
    """(folder, sorted file names) of every folder under ``root``, hidden ones left out, in a stable order.

    Symbolic links to folders are followed (data on shared storage is often linked into ``$VA_DATASETS``); a folder
    reached a second time (a link cycle, or two links to one folder) is not entered again.
    """
    seen = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield dirpath, sorted(filenames)


def discover_lits_cases(root) -> List[Dict]:
    """Find the cases under ``root``.

    Returns:
        sorted list of {"case_id", "image", "label" (path, or None when a labeled-layout volume lacks its
        segmentation: a bad case reported by prepare), "labeled" (bool)}.
    """
    root = os.fspath(root)
    images, labels = {}, {}
    for dirpath, filenames in _walk_following_links(root):
        parent = os.path.basename(dirpath)
        for name in filenames:
            if name.startswith(".") or not re.search(_NII, name):
                continue
            path = os.path.join(dirpath, name)
            stem = re.sub(_NII, "", name)
            m = re.fullmatch(r"(test-)?volume-(\d+)", stem)
            if m:
                case_id = f"{'test-' if m.group(1) else ''}volume-{int(m.group(2))}"
                images[case_id] = (path, not m.group(1))
                continue
            m = re.fullmatch(r"segmentation-(\d+)", stem)
            if m:
                labels[f"volume-{int(m.group(1))}"] = path
                continue
            m = re.fullmatch(r"liver_(\d+)", stem)
            if m and parent in ("imagesTr", "imagesTs", "labelsTr"):
                case_id = f"liver_{int(m.group(1))}"
                if parent == "labelsTr":
                    labels[case_id] = path
                else:
                    images[case_id] = (path, parent == "imagesTr")
    cases = []
    for case_id, (path, labeled) in images.items():
        cases.append({"case_id": case_id, "image": path, "label": labels.get(case_id) if labeled else None,
                      "labeled": labeled})
    return sorted(cases, key=lambda c: _natural_key(c["case_id"]))


def assign_splits(cases: List[Dict], train: str = "train", val: str = "val", test: str = "test") -> Dict[str, str]:
    """{case_id: split}: labeled cases in natural id order, every 4th to ``val`` (25 %), the rest ``train``;
    unlabeled cases ``test``."""
    labeled = sorted((c["case_id"] for c in cases if c["labeled"]), key=_natural_key)
    splits = {cid: (val if i % VAL_EVERY == VAL_EVERY - 1 else train) for i, cid in enumerate(labeled)}
    splits.update({c["case_id"]: test for c in cases if not c["labeled"]})
    return splits


def make_lits_jobs(source_root, cache_root, settings) -> List[PrepareJob]:
    cases = discover_lits_cases(source_root)
    splits = assign_splits(cases)
    return [PrepareJob(case_id=c["case_id"], split=splits[c["case_id"]], cache_root=os.fspath(cache_root),
                       settings=settings, source={"image": c["image"], "label": c["label"]},
                       extra={"labeled": c["labeled"]}) for c in cases]


def _check_labels(label: np.ndarray, path) -> np.ndarray:
    if np.isnan(label).any():
        raise VolumeError(path, "segmentation contains NaN voxels")
    values = np.unique(label)
    bad = values[~np.isin(values, (0, 1, 2))]
    if bad.size:
        raise VolumeError(path, f"labels outside {{0, 1, 2}}: {bad[:10].tolist()}")
    return label.astype(np.uint8)


def prepare_lits_case(job: PrepareJob):
    """Read, check, preprocess and cache one case (runs in a worker process). Raises ``VolumeError`` with a one-line
    message naming the offending file for every kind of bad input."""
    image_path, label_path = job.source["image"], job.source.get("label")
    labeled = job.extra.get("labeled", label_path is not None)
    if labeled and not label_path:
        raise VolumeError(image_path, "missing segmentation (expected a matching segmentation/label file)")
    hu, geometry = read_volume(image_path)
    if np.isnan(hu).any():
        raise VolumeError(image_path, "volume contains NaN voxels")
    label = None
    if labeled:
        label_raw, label_geometry = read_volume(label_path)
        mismatch = geometry.same_grid(label_geometry)
        if mismatch:
            raise VolumeError(label_path, f"segmentation grid differs from {os.path.basename(image_path)}: "
                                          + "; ".join(mismatch))
        label = _check_labels(label_raw, label_path)

    settings = job.settings
    image, resampler = preprocess_volume(hu, geometry.spacing_zyx, settings["hu_window"], settings["slice_spacing"])
    del hu
    arrays = {"image": image.astype(np.float16)}
    annotations = None
    spacing = (resampler.target_spacing_z,) + geometry.spacing_zyx[1:]
    if label is not None:
        label_cache = resampler.to_cache(label, order=0)
        arrays["label"] = label_cache
        arrays["label_original"] = label
        annotations = {str(z): anns for z, anns in volume_instances(label_cache).items()}
    meta = {
        "source": {"image": os.path.abspath(image_path), "label": os.path.abspath(label_path) if label_path else None},
        "settings": settings,
        "split": job.split,
        "labeled": label is not None,
        "geometry": geometry.to_dict(),
        "resampler": resampler.to_dict(),
        "spacing": list(spacing),
        "original_spacing": list(geometry.spacing_zyx),
        "num_slices": int(image.shape[0]),
        "num_slices_original": int(resampler.num_slices),
        "height": int(image.shape[1]),
        "width": int(image.shape[2]),
        "classes": ["liver", "lesion"],
    }
    write_case(job.cache_root, job.case_id, arrays, meta, annotations)


def prepare_lits(source, cache, hu_window, slice_spacing, workers=1, stream=None):
    """Prepare every LiTS/MSD (or phantom) case under ``source`` into ``cache``; returns the ``PrepareResult``.

    Raises:
        FileNotFoundError: ``source`` is missing or holds no volumes.
    """
    if not os.path.isdir(source):
        raise FileNotFoundError(f"{source}: source folder not found")
    settings = make_settings(hu_window, slice_spacing)
    jobs = make_lits_jobs(source, cache, settings)
    if not jobs:
        raise FileNotFoundError(f"{source}: no volume-K.nii[.gz] / imagesTr/liver_K.nii.gz files found")
    return run_prepare(jobs, prepare_lits_case, cache, settings, workers=workers, desc="prepare LiTS",
                       index_extra={"dataset": "lits", "source": os.path.abspath(source)}, stream=stream)
