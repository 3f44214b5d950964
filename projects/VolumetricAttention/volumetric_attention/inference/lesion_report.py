"""The lesion list of a predicted volume: one row per 3D lesion, as JSON and CSV."""
import csv
import io
import json

import numpy as np
from scipy import ndimage

from ..utils.atomic_io import write_text_atomic
from .lesion_components import find_lesions, label_components

FIELDS = [
    "lesion_id", "volume_ml", "longest_axial_diameter_mm", "equivalent_diameter_mm", "size",
    "centroid_x_mm", "centroid_y_mm", "centroid_z_mm", "centroid_voxel_zyx", "max_score",
]


def lesion_report(lesion_mask, lesion_score, geometry, connectivity=26):
    """Describe every 3D lesion of a predicted mask.

    Args:
        lesion_mask: bool (Z0, H, W) canonical array on the input grid (``labels == 2``).
        lesion_score: float (Z0, H, W) per-voxel lesion confidence.
        geometry: the input's :class:`~volumetric_attention.data.volume_io.Geometry`.
        connectivity: 26 or 6, how voxels group into lesions (``TEST.CT.LESION_CONNECTIVITY``, as in the metrics).
    Returns:
        list of dicts with the keys of ``FIELDS``, largest lesion first. Centroids are physical (x, y, z) in mm in
        the scanner's LPS frame (the frame of the input's origin/direction), and canonical voxel indices.
    """
    components = label_components(lesion_mask, connectivity)
    lesions = find_lesions(lesion_mask, geometry.spacing_zyx, connectivity, components=components)
    if not lesions:
        return []
    max_scores = ndimage.maximum(lesion_score, components[0], [lesion.label for lesion in lesions])
    origin = np.asarray(geometry.canonical_origin)
    direction = np.asarray(geometry.canonical_direction).reshape(3, 3)
    spacing_xyz = np.asarray(geometry.canonical_spacing)
    rows = []
    for i, (lesion, score) in enumerate(zip(lesions, np.atleast_1d(max_scores)), start=1):
        index_xyz = np.asarray(lesion.centroid_zyx[::-1])
        x, y, z = origin + direction @ (index_xyz * spacing_xyz)
        rows.append({
            "lesion_id": i,
            "volume_ml": round(lesion.volume_ml, 4),
            "longest_axial_diameter_mm": round(lesion.longest_axial_diameter_mm, 2),
            "equivalent_diameter_mm": round(lesion.diameter_mm, 2),
            "size": lesion.size,
            "centroid_x_mm": round(float(x), 2),
            "centroid_y_mm": round(float(y), 2),
            "centroid_z_mm": round(float(z), 2),
            "centroid_voxel_zyx": [round(c, 2) for c in lesion.centroid_zyx],
            "max_score": round(float(score), 4),
        })
    return rows


def write_lesion_report(rows, base_path):
    """Write ``rows`` to ``base_path + ".json"`` and ``".csv"``, each atomically."""
    write_text_atomic(base_path + ".json", json.dumps({"lesions": rows}, indent=2))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS)
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "centroid_voxel_zyx": " ".join(str(c) for c in row["centroid_voxel_zyx"])})
    write_text_atomic(base_path + ".csv", buffer.getvalue())

