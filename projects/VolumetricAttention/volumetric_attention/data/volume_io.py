"""Reading CT volumes (NIfTI, NRRD/MHA, DICOM series) into one canonical axial orientation, and writing label maps back
onto the exact input grid.

Canonical orientation: SimpleITK's ``DICOMOrient(image, "LPS")``. The array returned by ``GetArrayFromImage`` is then
indexed ``[z, y, x]`` with z running inferior->superior, y anterior->posterior, x right->left, whatever the order and
sign of the axes on disk. :class:`Geometry` keeps what is needed to undo this exactly.
"""
import contextlib
import dataclasses
import locale
import os
from typing import List, Tuple

import numpy as np
import SimpleITK as sitk

from ..utils.atomic_io import atomic_open

__all__ = ["VolumeError", "Geometry", "CANONICAL_ORIENTATION", "read_volume", "read_image", "write_label_volume",
           "write_volume"]

CANONICAL_ORIENTATION = "LPS"
# a "volume" needs at least this many slices to form a 2.5D image (3 adjacent slices)
MIN_SLICES = 3


# file types read as volumes (anything else given as a folder is read as a DICOM series)
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def case_name(path) -> str:
    """A volume's case name: its file name without the volume suffix (``a/case.1.nii.gz`` -> ``case.1``), or the
    folder name of a DICOM series."""
    name = os.path.basename(os.path.normpath(os.fspath(path)))
    for suffix in sorted(VOLUME_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


class VolumeError(ValueError):
    """Bad or unreadable volume. The message is one line naming the file and the reason."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self):
        # worker processes send it back pickled; the default would call __init__ with the message alone
        return (type(self), (self.path, self.reason))


@dataclasses.dataclass
class Geometry:
    """Grid of a volume as stored on disk, plus the canonical grid it was re-oriented to.

    ``size``/``spacing``/``origin`` are in SimpleITK (x, y, z) order; ``direction`` is the row-major 3x3 cosine matrix.
    ``orientation`` is the 3-letter DICOM orientation code of the input; writing back re-orients from
    ``canonical_orientation`` to it, then stamps the original spacing/origin/direction on the result.
    """

    size: Tuple[int, int, int]
    spacing: Tuple[float, float, float]
    origin: Tuple[float, float, float]
    direction: Tuple[float, ...]
    orientation: str
    canonical_size: Tuple[int, int, int]
    canonical_spacing: Tuple[float, float, float]
    canonical_origin: Tuple[float, float, float]
    canonical_direction: Tuple[float, ...]
    canonical_orientation: str = CANONICAL_ORIENTATION

    @property
    def spacing_zyx(self) -> Tuple[float, float, float]:
        """Voxel spacing in mm of the canonical array, (z, y, x) to match its indexing."""
        return tuple(float(s) for s in self.canonical_spacing[::-1])

    @property
    def shape_zyx(self) -> Tuple[int, int, int]:
        """Shape (Z, H, W) of the canonical array."""
        return tuple(int(s) for s in self.canonical_size[::-1])

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Geometry":
        kw = {}
        for f in dataclasses.fields(cls):
            v = d[f.name] if f.name in d else f.default
            kw[f.name] = tuple(v) if isinstance(v, (list, tuple)) else v
        return cls(**kw)

    def same_grid(self, other: "Geometry", atol: float = 1e-3) -> List[str]:
        """Names of the grid properties (size, spacing, origin, direction) that differ from ``other``."""
        bad = []
        if tuple(self.size) != tuple(other.size):
            bad.append(f"size {list(self.size)} vs {list(other.size)}")
        for name in ("spacing", "origin", "direction"):
            a, b = np.asarray(getattr(self, name)), np.asarray(getattr(other, name))
            if not np.allclose(a, b, rtol=1e-4, atol=atol):
                bad.append(f"{name} {np.round(a, 4).tolist()} vs {np.round(b, 4).tolist()}")
        return bad


@contextlib.contextmanager
def _locale_kept():
    """GDCM (SimpleITK's DICOM I/O) resets the process locale to "C", which silently turns Python's default text
    encoding into ASCII for the rest of the process; put the caller's locale back."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _orientation_of(image: sitk.Image) -> str:
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())


def read_image(path) -> sitk.Image:
    """Read a 3D ``sitk.Image`` from a file (NIfTI, NRRD, MHA, ...) or a DICOM series folder, as on disk.

    Raises :class:`VolumeError` for unreadable files, folders with zero or several DICOM series, 2D images and
    volumes with fewer than 3 slices.
    """
    path = str(path)
    if not os.path.exists(path):
        raise VolumeError(path, "file not found")
    try:
        if os.path.isdir(path):
            with _locale_kept():
                series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(path)
            if len(series) == 0:
                raise VolumeError(path, "no DICOM series in folder")
            if len(series) > 1:
                raise VolumeError(path, f"folder holds {len(series)} DICOM series ({', '.join(series)}); "
                                        "put each series in its own folder")
            reader = sitk.ImageSeriesReader()
            with _locale_kept():
                reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(path, series[0]))
                image = reader.Execute()
        else:
            with _locale_kept():
                image = sitk.ReadImage(path)
    except VolumeError:
        raise
    except RuntimeError as e:
        # ITK's messages span many lines; the last non-empty line is the cause
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise VolumeError(path, "unreadable or truncated: " + (lines[-1] if lines else type(e).__name__)) from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise VolumeError(path, f"{image.GetNumberOfComponentsPerPixel()} components per voxel; expected a scalar CT")
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() != 3:
        raise VolumeError(path, f"{image.GetDimension()}D image of size {list(image.GetSize())}; expected a 3D volume")
    if min(image.GetSize()) < 1 or image.GetSize()[2] == 1:
        raise VolumeError(path, f"2D image of size {list(image.GetSize())} (one slice); expected a 3D volume")
    return image


def _check_nifti_payload(path):
    """Check a NIfTI file's voxel data directly, because ITK's NIfTI reader is lenient in two harmful ways: it
    zero-fills a truncated file (even a cut .nii.gz) without an error, and it turns NaN into 0.

    Header fields from the NIfTI-1 standard: dim at byte 40, datatype at 70, bitpix at 72, vox_offset at 108.
    Raises :class:`VolumeError` for a payload shorter than the header announces, a corrupt gzip stream, or NaN voxels.
    """
    import gzip
    import struct
    import zlib

    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            header = f.read(348)
            endian = "<" if struct.unpack("<i", header[:4])[0] == 348 else ">"
            dim = struct.unpack(endian + "8h", header[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", header[70:74])
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
            f.read(max(offset - 348, 0))
            data = f.read()
    except (EOFError, OSError, zlib.error, struct.error) as e:
        raise VolumeError(path, f"truncated or corrupt file ({e})") from None
    expected = int(np.prod([max(int(d), 1) for d in dim[1 : dim[0] + 1]])) * bitpix // 8
    if len(data) < expected:
        raise VolumeError(path, f"truncated: {len(data)} of {expected} bytes of voxel data")
    dtype = {16: "f4", 64: "f8"}.get(datatype)
    if dtype is not None:
        nans = int(np.isnan(np.frombuffer(data[:expected], dtype=endian + dtype)).sum())
        if nans:
            raise VolumeError(path, f"{nans} NaN voxels")


def read_volume(path, dtype=np.float32) -> Tuple[np.ndarray, Geometry]:
    """Read a CT volume and bring it to the canonical axial orientation.

    Returns:
        array: (Z, H, W) ``dtype`` array (HU for CT), slices along the first axis, canonical orientation.
        geometry: :class:`Geometry` of the input, to write results back onto the same grid.
    Raises:
        VolumeError: one-line message naming ``path`` and the reason.
    """
    image = read_image(path)
    if str(path).endswith((".nii", ".nii.gz")):
        _check_nifti_payload(str(path))
    canonical = sitk.DICOMOrient(image, CANONICAL_ORIENTATION)
    if canonical.GetSize()[2] < MIN_SLICES:
        raise VolumeError(path, f"{canonical.GetSize()[2]} axial slices; at least {MIN_SLICES} are needed")
    geometry = Geometry(
        size=tuple(int(s) for s in image.GetSize()),
        spacing=tuple(float(s) for s in image.GetSpacing()),
        origin=tuple(float(s) for s in image.GetOrigin()),
        direction=tuple(float(s) for s in image.GetDirection()),
        orientation=_orientation_of(image),
        canonical_size=tuple(int(s) for s in canonical.GetSize()),
        canonical_spacing=tuple(float(s) for s in canonical.GetSpacing()),
        canonical_origin=tuple(float(s) for s in canonical.GetOrigin()),
        canonical_direction=tuple(float(s) for s in canonical.GetDirection()),
    )
    array = sitk.GetArrayFromImage(canonical).astype(dtype, copy=False)
    return array, geometry


def _write_image_atomic(image: sitk.Image, path, compress=True):
    # the temporary name ends with the real one, so SimpleITK picks the same writer
    with atomic_open(path, None, suffix="-" + os.path.basename(os.fspath(path))) as (_, tmp):
        sitk.WriteImage(image, tmp, useCompression=compress)


def _to_input_grid(array_zyx: np.ndarray, geometry: Geometry) -> sitk.Image:
    expected = geometry.shape_zyx
    if tuple(array_zyx.shape) != tuple(expected):
        raise ValueError(f"array of shape {tuple(array_zyx.shape)} does not match the canonical grid {expected}")
    canonical = sitk.GetImageFromArray(np.ascontiguousarray(array_zyx))
    canonical.SetSpacing(geometry.canonical_spacing)
    canonical.SetOrigin(geometry.canonical_origin)
    canonical.SetDirection(geometry.canonical_direction)
    original = sitk.DICOMOrient(canonical, geometry.orientation)
    if tuple(original.GetSize()) != tuple(geometry.size):
        raise ValueError(f"re-oriented size {list(original.GetSize())} != input size {list(geometry.size)}")
    # re-orienting recomputes origin/direction in floating point; the input's own values are stamped on to be exact
    original.SetSpacing(geometry.spacing)
    original.SetOrigin(geometry.origin)
    original.SetDirection(geometry.direction)
    return original


def write_label_volume(labels_zyx: np.ndarray, geometry: Geometry, path):
    """Write a (Z, H, W) canonical label map onto the exact grid of the input volume ``geometry`` came from.

    The canonicalisation is undone (axes permuted/flipped back), size/spacing/origin/direction are copied from the
    input, values are stored as uint8. The file appears atomically (temp file in the same folder + ``os.replace``).
    """
    _write_image_atomic(_to_input_grid(np.asarray(labels_zyx).astype(np.uint8), geometry), path)


def write_volume(array_zyx: np.ndarray, geometry: Geometry, path):
    """Like :func:`write_label_volume` for any dtype (e.g. a float probability map), written atomically."""
    _write_image_atomic(_to_input_grid(np.asarray(array_zyx), geometry), path)
