"""The on-disk cache the loader reads: one folder per case, written atomically, plus ``index.json``.

Layout of ``<cache_root>/<case_id>/``:
    image.npy            float16 (Z, H, W), windowed to [0, 1], canonical orientation, cache z grid
    label.npy            uint8 (Z, H, W), same grid (labeled cases only; 0 background, 1 liver, 2 lesion)
    label_original.npy   uint8 (Z0, H, W), original z grid, canonical orientation (labeled cases only)
    annotations.json     {"<slice_index>": [annotation, ...]} on the cache grid (labeled cases only)
    meta.json            case_id, sources, settings, geometry, resampler, spacing, num_slices, split, ...

DeepLesion cases have no ``image.npy``: their ``meta.json`` holds ``slice_store`` (series, interpolation indices and
weights) and the image is interpolated on read from ``<cache_root>/series/<series>/`` (:mod:`.slice_store`).

A case is written into ``<cache_root>/.tmp-<case_id>-<random>/`` and renamed into place when complete, so a reader
never sees a half-written case; ``meta.json`` is written last inside it. ``index.json`` is replaced atomically after
all cases, and lists the cases, their splits and the settings.
"""
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from ..utils.atomic_io import atomic_open
from .preprocessing import SliceResampler
from .slice_store import InterpolatedStack, series_dir
from .volume_io import Geometry

__all__ = ["CacheError", "CachedCase", "load_case", "write_case", "write_json_atomic", "read_json", "make_settings",
           "settings_mismatch", "describe_mismatch", "loader_settings", "read_index", "write_index", "case_is_complete",
           "remove_stale_temp_dirs",
           "INDEX_FILE", "META_FILE", "CACHE_FORMAT_VERSION"]

INDEX_FILE = "index.json"
META_FILE = "meta.json"
TMP_PREFIX = ".tmp-"
# bump when the cache's content changes meaning, so old caches are rebuilt rather than misread
CACHE_FORMAT_VERSION = 1


class CacheError(RuntimeError):
    """Missing, incomplete or incompatible cache entry. One-line message naming the path and what to run."""


def make_settings(hu_window, slice_spacing, **extra) -> dict:
    """The preprocessing settings stored with every case and in the index; a cache is reused only if they match."""
    settings = {"hu_window": [float(hu_window[0]), float(hu_window[1])], "slice_spacing": float(slice_spacing),
                "format_version": CACHE_FORMAT_VERSION}
    settings.update(extra)
    return settings


def settings_mismatch(cached: dict, expected: dict) -> Dict[str, tuple]:
    """Keys of ``expected`` whose value differs in ``cached``, as {key: (cached, expected)}."""
    diff = {}
    for key, want in expected.items():
        have = cached.get(key) if cached else None
        if isinstance(want, (list, tuple)) and isinstance(have, (list, tuple)):
            same = len(want) == len(have) and np.allclose(np.asarray(want, float), np.asarray(have, float))
        elif isinstance(want, float) and isinstance(have, (int, float)):
            same = abs(float(have) - want) < 1e-6
        else:
            same = have == want
        if not same:
            diff[key] = (have, want)
    return diff


def loader_settings(hu_window, slice_spacing) -> dict:
    """The settings the data loader needs a cached case to have been prepared with (INPUT.CT.HU_WINDOW,
    INPUT.CT.SLICE_SPACING), in the form :func:`settings_mismatch` compares."""
    return {"hu_window": [float(hu_window[0]), float(hu_window[1])], "slice_spacing": float(slice_spacing)}


def describe_mismatch(diff: Dict[str, tuple]) -> str:
    """``settings_mismatch``'s result as text: "slice_spacing cached 1.5 vs config 2.0, ..."."""
    return ", ".join(f"{k} cached {have} vs config {want}" for k, (have, want) in diff.items())


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_json_atomic(path, obj):
    """Write ``obj`` as JSON to ``path`` atomically."""
    with atomic_open(path, "w") as (f, _):
        json.dump(obj, f)


def case_is_complete(case_dir) -> bool:
    return os.path.isfile(os.path.join(case_dir, META_FILE))


def write_case(cache_root, case_id: str, arrays: Dict[str, np.ndarray], meta: dict,
               annotations: Optional[dict] = None) -> str:
    """Write one case atomically: arrays as ``<name>.npy``, ``annotations.json``, then ``meta.json``, all in a temp
    folder that is renamed to ``<cache_root>/<case_id>`` (replacing an older entry). Returns the case folder."""
    os.makedirs(cache_root, exist_ok=True)
    final = os.path.join(cache_root, case_id)
    tmp = os.path.join(cache_root, f"{TMP_PREFIX}{case_id}-{uuid.uuid4().hex[:8]}")
    os.makedirs(tmp)
    try:
        for name, array in arrays.items():
            np.save(os.path.join(tmp, name + ".npy"), np.ascontiguousarray(array))
        if annotations is not None:
            with open(os.path.join(tmp, "annotations.json"), "w") as f:
                json.dump(annotations, f)
        meta = dict(meta, case_id=case_id, complete=True)
        with open(os.path.join(tmp, META_FILE), "w") as f:
            json.dump(meta, f)
        old = None
        if os.path.exists(final):
            # a directory can only be renamed onto an absent path: move the old entry aside first
            old = os.path.join(cache_root, f"{TMP_PREFIX}old-{case_id}-{uuid.uuid4().hex[:8]}")
            os.rename(final, old)
        os.rename(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def remove_stale_temp_dirs(cache_root):
    """Delete temp entries left by an interrupted prepare run (call only when no other prepare writes here)."""
    if not os.path.isdir(cache_root):
        return
    for name in os.listdir(cache_root):
        if name.startswith(TMP_PREFIX):
            path = os.path.join(cache_root, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)


def read_index(cache_root, prepare_hint: str = "") -> dict:
    """Read ``<cache_root>/index.json``; a missing index raises :class:`CacheError` telling what to run."""
    path = os.path.join(cache_root, INDEX_FILE)
    if not os.path.isfile(path):
        hint = f"; run: {prepare_hint}" if prepare_hint else "; run the matching tools/prepare_*.py"
        raise CacheError(f"{path}: cache index not found{hint}")
    return read_json(path)


def write_index(cache_root, cases: list, settings: dict, **extra):
    """Atomically write ``index.json``: {"settings", "cases": [{"case_id", "split", ...}], ...}."""
    write_json_atomic(os.path.join(cache_root, INDEX_FILE), dict(settings=settings, cases=cases, **extra))


@dataclass
class CachedCase:
    """One cached case. ``image``: float16 (Z, H, W) memmap in [0, 1] (DeepLesion: a float32
    :class:`InterpolatedStack`, indexed like the memmap); ``label``: uint8 (Z, H, W) memmap or None;
    ``label_original``: uint8 (Z0, H, W) memmap or None; ``spacing``: cache spacing (z, y, x) in mm."""

    case_dir: str
    meta: dict
    image: np.ndarray
    label: Optional[np.ndarray]
    label_original: Optional[np.ndarray]
    geometry: Optional[Geometry]
    resampler: Optional[SliceResampler]
    spacing: tuple

    @property
    def case_id(self) -> str:
        return self.meta["case_id"]

    @property
    def settings(self) -> dict:
        return self.meta.get("settings", {})

    def annotations(self) -> dict:
        """{slice_index (int): [annotation dicts]} on the cache grid; {} for unlabeled cases."""
        path = os.path.join(self.case_dir, "annotations.json")
        if not os.path.isfile(path):
            return {}
        return {int(k): v for k, v in read_json(path).items()}


def _load_optional(case_dir, name):
    path = os.path.join(case_dir, name + ".npy")
    return np.load(path, mmap_mode="r") if os.path.isfile(path) else None


def _image_of(case_dir: str, meta: dict):
    """The case's (Z, H, W) image in [0, 1]: ``image.npy`` memmapped, or for DeepLesion the stack interpolated from
    the series' slice store."""
    store = meta.get("slice_store")
    if store is not None:
        cache_root = os.path.dirname(os.path.abspath(case_dir))
        return InterpolatedStack(series_dir(cache_root, store["series"]), store["lo"], store["hi"], store["w"],
                                 meta["settings"]["hu_window"], store["offset"], meta["height"], meta["width"])
    if "series_dir" in meta.get("source", {}):
        raise CacheError(f"{case_dir}: DeepLesion cache entry in an older format (interpolated float16 image.npy); "
                         "re-run tools/prepare_deeplesion.py to rebuild the cache")
    return np.load(os.path.join(case_dir, "image.npy"), mmap_mode="r")


def load_case(case_dir) -> CachedCase:
    """Open a cached case with memory-mapped arrays. Raises :class:`CacheError` for a missing, incomplete or
    outdated entry."""
    case_dir = os.fspath(case_dir)
    meta_path = os.path.join(case_dir, META_FILE)
    if os.path.basename(os.path.normpath(case_dir)).startswith(TMP_PREFIX):
        raise CacheError(f"{case_dir}: temporary (half-written) cache entry; re-run the prepare tool")
    if not os.path.isfile(meta_path):
        raise CacheError(f"{case_dir}: missing or incomplete cache entry (no {META_FILE}); re-run the prepare tool")
    try:
        meta = read_json(meta_path)
        image = _image_of(case_dir, meta)
    except (OSError, ValueError, KeyError) as e:
        raise CacheError(f"{case_dir}: unreadable cache entry ({type(e).__name__}: {e}); re-run the prepare tool")
    if not meta.get("complete"):
        raise CacheError(f"{meta_path}: cache entry not marked complete; re-run the prepare tool")
    geometry = Geometry.from_dict(meta["geometry"]) if meta.get("geometry") else None
    resampler = SliceResampler.from_dict(meta["resampler"]) if meta.get("resampler") else None
    return CachedCase(case_dir=case_dir, meta=meta, image=image, label=_load_optional(case_dir, "label"),
                      label_original=_load_optional(case_dir, "label_original"), geometry=geometry,
                      resampler=resampler, spacing=tuple(meta.get("spacing", (1.0, 1.0, 1.0))))
