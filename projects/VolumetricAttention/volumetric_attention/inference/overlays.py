"""Slice overlays drawn with detectron2's ``Visualizer``: liver red, lesion green, as in the paper's figures.

Predictions are filled, the ground truth is outlined (dark red liver, dark green lesion), so both fit on one slice.
Outlines are drawn from the mask's contours, holes included (a vessel inside the liver, a ring-shaped lesion).
Detection boxes (DeepLesion): the ground truth green, predictions red with their scores.
"""
import os

import cv2
import numpy as np

from detectron2.utils.visualizer import Visualizer

from ..data.preprocessing import window
from .slice_labels import LESION, LIVER

LIVER_COLOR, LESION_COLOR = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)
GT_LIVER_EDGE, GT_LESION_EDGE = (0.55, 0.0, 0.0), (0.0, 0.45, 0.0)
GT_BOX_COLOR, PRED_BOX_COLOR = (0.0, 1.0, 0.0), (1.0, 0.15, 0.15)


def grayscale_rgb(hu_slice, hu_window=(-200.0, 300.0)):
    """(H, W) HU slice -> (H, W, 3) uint8 gray image in the display window."""
    gray = (window(np.asarray(hu_slice, np.float32), *hu_window) * 255.0).round().astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def mask_outlines(mask):
    """Every boundary of a binary mask, outer ones and those of its holes, as closed polygons.

    Args:
        mask: (H, W) bool.
    Returns:
        list of (K, 2) float arrays of (x, y) in detectron2's image coordinates (pixel (i, j) covers
        [j, j + 1] x [i, i + 1]): each runs through the centres of one boundary's pixels. A boundary of one or two
        pixels, too short for a polygon, becomes the square around them.
    """
    # detectron2's own draw_binary_mask(alpha=0, edge_color=...) draws no edge at all for a mask with holes, and
    # GenericMask's polygons drop boundaries under 3 points; both would lose ground-truth outlines.
    contours, _ = cv2.findContours(np.ascontiguousarray(mask, dtype=np.uint8), cv2.RETR_CCOMP,
                                   cv2.CHAIN_APPROX_NONE)
    outlines = []
    for contour in contours:
        points = contour.reshape(-1, 2).astype(np.float64) + 0.5
        if len(points) < 3:
            (x0, y0), (x1, y1) = points.min(axis=0) - 0.5, points.max(axis=0) + 0.5
            points = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        outlines.append(points)
    return outlines


def draw_slice_overlay(hu_slice, prediction=None, ground_truth=None, hu_window=(-200.0, 300.0), scale=2.0):
    """Overlay of one axial slice.

    Args:
        hu_slice: (H, W) HU values.
        prediction, ground_truth: (H, W) label slices (0 background, 1 liver, 2 lesion) or None.
        scale: output pixels per input pixel.
    Returns:
        (H·scale, W·scale, 3) uint8 RGB image.
    """
    vis = Visualizer(grayscale_rgb(hu_slice, hu_window), metadata=None, scale=scale)
    if prediction is not None:
        prediction = np.asarray(prediction)
        if (prediction >= LIVER).any():
            vis.draw_binary_mask(prediction >= LIVER, color=LIVER_COLOR, alpha=0.3, area_threshold=0)
        if (prediction == LESION).any():
            vis.draw_binary_mask(prediction == LESION, color=LESION_COLOR, alpha=0.6, area_threshold=0)
    if ground_truth is not None:
        ground_truth = np.asarray(ground_truth)
        for mask, edge in ((ground_truth >= LIVER, GT_LIVER_EDGE), (ground_truth == LESION, GT_LESION_EDGE)):
            for outline in mask_outlines(mask):
                vis.draw_polygon(outline, color=edge, edge_color=edge, alpha=0.0)
    return vis.output.get_image()


def draw_detection_overlay(image, pred_boxes=(), scores=(), gt_boxes=(), scale=2.0):
    """Boxes on one slice: the ground truth in green, predictions in red with their scores at the top left corner.

    Args:
        image: (H, W) gray or (H, W, 3) RGB uint8.
        pred_boxes: (K, 4) predicted boxes, XYXY_ABS in ``image``'s pixels; scores: (K,) their scores.
        gt_boxes: (M, 4) ground-truth boxes, XYXY_ABS.
        scale: output pixels per input pixel.
    Returns:
        (H·scale, W·scale, 3) uint8 RGB image.
    """
    image = np.asarray(image, np.uint8)
    vis = Visualizer(np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image, metadata=None,
                     scale=scale)
    for box in np.asarray(gt_boxes, np.float64).reshape(-1, 4):
        vis.draw_box(box, alpha=1.0, edge_color=GT_BOX_COLOR)
    for box, score in zip(np.asarray(pred_boxes, np.float64).reshape(-1, 4), np.asarray(scores).reshape(-1)):
        vis.draw_box(box, alpha=1.0, edge_color=PRED_BOX_COLOR)
        vis.draw_text(f"{float(score):.2f}", (box[0], box[1]), color=PRED_BOX_COLOR, horizontal_alignment="left")
    return vis.output.get_image()


def write_png(path, image):
    """Write an (H, W, 3) uint8 RGB image as a PNG, atomically; returns ``path``."""
    from ..utils.atomic_io import atomic_open

    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image[:, :, ::-1]))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_open(path, "wb") as (f, _):
        f.write(encoded.tobytes())
    return path


def write_montage(path, images, titles, suptitle):
    """Images (RGB) on a grid of up to 3 columns with a title each, written as one PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..utils.atomic_io import atomic_open

    cols = min(3, len(images))
    rows = (len(images) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, title, image in zip(axes.ravel(), titles, images):
        ax.imshow(image)
        ax.set_title(title)
    fig.suptitle(suptitle)
    fig.tight_layout()
    with atomic_open(path, "wb") as (f, _):
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return path


def slices_that_matter(prediction=None, ground_truth=None, count=6):
    """The ``count`` axial slices most worth looking at, in z order, spread over the case.

    The slices with lesion (predicted or true) are cut, in z order, into ``count`` runs of about equal length, and
    each run gives its slice where prediction and ground truth disagree most on lesion (with both given; ties: the
    one with the most lesion), so the picks cover the lesions' whole z extent instead of the few largest slices.
    When fewer slices have lesion than ``count``, the rest are spread the same way over the liver's z extent (the
    middle slice of each run), then over the whole volume. Arrays are (Z, H, W) label volumes.
    """
    volumes = [v for v in (prediction, ground_truth) if v is not None]
    if not volumes:
        raise ValueError("need a prediction or a ground truth to choose slices")
    depth = volumes[0].shape[0]
    lesion = sum((v == LESION).sum(axis=(1, 2)) for v in volumes)
    disagreement = np.zeros(depth, np.int64)
    if prediction is not None and ground_truth is not None:
        disagreement = ((prediction == LESION) != (ground_truth == LESION)).sum(axis=(1, 2))
    liver = sum((v >= LIVER).sum(axis=(1, 2)) for v in volumes)

    chosen = []
    for z_run in _runs(np.flatnonzero((lesion > 0) | (disagreement > 0)), count):
        chosen.append(int(max(z_run, key=lambda z: (disagreement[z], lesion[z], -z))))
    for candidates in (np.flatnonzero(liver > 0), np.arange(depth)):
        free = np.setdiff1d(candidates, chosen)
        chosen += [int(z_run[len(z_run) // 2]) for z_run in _runs(free, count - len(chosen))]
    return sorted(chosen)


def _runs(z_sorted, parts):
    """``z_sorted`` cut into ``min(parts, len)`` consecutive runs of about equal length (non-empty)."""
    parts = min(max(parts, 0), len(z_sorted))
    return np.array_split(np.asarray(z_sorted), parts) if parts else []


def read_label_volume(path, shape_zyx):
    """A label map on a CT's grid as a canonical uint8 (Z, H, W) array; errors name the file."""
    from ..data.volume_io import VolumeError, read_volume

    labels, _ = read_volume(path, dtype=np.float32)
    if labels.shape != tuple(shape_zyx):
        raise VolumeError(path, f"label map of shape {labels.shape} does not match the CT's {tuple(shape_zyx)}")
    values = np.unique(labels)
    if not np.isin(values, (0, 1, 2)).all():
        raise VolumeError(path, f"labels {values[~np.isin(values, (0, 1, 2))][:5].tolist()} outside {{0, 1, 2}}")
    return labels.astype(np.uint8)


def render_case(volume, output_dir, prediction=None, ground_truth=None, slices=None, count=6,
                hu_window=(-200.0, 300.0), scale=2.0):
    """Write one PNG per slice and a montage PNG for a case. Returns the written paths."""
    from ..data.volume_io import case_name, read_volume

    hu, _ = read_volume(volume)
    pred = read_label_volume(prediction, hu.shape) if prediction else None
    gt = read_label_volume(ground_truth, hu.shape) if ground_truth else None
    if slices:
        bad = [z for z in slices if not 0 <= z < hu.shape[0]]
        if bad:
            raise ValueError(f"{volume}: slices {bad} outside 0..{hu.shape[0] - 1}")
    else:
        slices = slices_that_matter(pred, gt, count)
    name = case_name(volume)
    written, images = [], []
    for z in slices:
        image = draw_slice_overlay(hu[z], None if pred is None else pred[z], None if gt is None else gt[z],
                                   hu_window, scale)
        images.append(image)
        path = os.path.join(output_dir, f"{name}_z{z:03d}.png")
        write_png(path, image)
        written.append(path)
    legend = "filled: prediction" if pred is not None else ""
    legend += (" | " if legend else "") + ("outline: ground truth" if gt is not None else "")
    montage = write_montage(os.path.join(output_dir, f"{name}_montage.png"), images, [f"z = {z}" for z in slices],
                            f"{name}   liver red, lesion green   ({legend})")
    return written + [montage]
