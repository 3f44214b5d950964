"""Per-slice instance annotations from a label volume: 2D connected components of each class as pycocotools RLE.

Classes (LiTS and phantoms): category 0 ``liver`` = every voxel with label >= 1 (liver and lesions together, so the
liver instance is the whole organ, as the paper's logical AND of liver and lesion masks needs); category 1 ``lesion``
= label == 2. Components are 4-connected in the slice plane (``scipy.ndimage.label``'s default structure).
"""
from typing import Dict, List

import numpy as np
import pycocotools.mask as mask_util
from scipy import ndimage

from detectron2.structures import BoxMode

__all__ = ["LITS_CLASSES", "slice_instances", "volume_instances"]

LITS_CLASSES = ["liver", "lesion"]


def _encode(mask_hw: np.ndarray) -> dict:
    rle = mask_util.encode(np.asfortranarray(mask_hw.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"]}


def _class_masks(label):
    return [(0, label >= 1), (1, label == 2)]


def volume_instances(label_zyx: np.ndarray) -> Dict[int, List[dict]]:
    """Annotations of every slice of a (Z, H, W) uint8 label volume.

    Returns:
        {z: [{"bbox": [x0, y0, x1, y1], "bbox_mode": BoxMode.XYXY_ABS, "category_id", "segmentation": RLE dict
        (counts as str), "iscrowd": 0, "area"}]} for slices with at least one instance.
    """
    label_zyx = np.asarray(label_zyx)
    z_count, h, w = label_zyx.shape
    # a 3D structure with no z-neighbours labels every slice's 2D components in a single call
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    out: Dict[int, List[dict]] = {}
    for category, mask in _class_masks(label_zyx):
        components, count = ndimage.label(mask, structure=structure)
        if count == 0:
            continue
        for i, box in enumerate(ndimage.find_objects(components), start=1):
            zs, ys, xs = box
            crop = components[zs, ys, xs][0] == i
            full = np.zeros((h, w), dtype=np.uint8)
            full[ys, xs] = crop
            out.setdefault(int(zs.start), []).append({
                "bbox": [float(xs.start), float(ys.start), float(xs.stop), float(ys.stop)],
                "bbox_mode": BoxMode.XYXY_ABS,
                "category_id": category,
                "segmentation": _encode(full),
                "iscrowd": 0,
                "area": float(crop.sum()),
            })
    # order within a slice: by category, then top-left, so results do not depend on labelling order
    for anns in out.values():
        anns.sort(key=lambda a: (a["category_id"], a["bbox"][1], a["bbox"][0]))
    return out


def slice_instances(label_hw: np.ndarray) -> List[dict]:
    """Annotations of one (H, W) label slice (see :func:`volume_instances`)."""
    return volume_instances(np.asarray(label_hw)[None]).get(0, [])
