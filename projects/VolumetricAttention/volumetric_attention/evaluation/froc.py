"""FROC (sensitivity at average false positives per image) and AP50 for lesion detection (DeepLesion).

Inputs are per image: predicted boxes [N_i, 4] XYXY with scores [N_i], ground-truth boxes [M_i, 4] XYXY.

Two conventions (``convention=``; ``TEST.CT.FROC_CONVENTION`` in configs) differ in two details only:

* ``"official"`` (the default): the DeepLesion evaluation code released with 3DCE and MULAN (rsummers11/CADLab), which
  computed the published sensitivity tables.

  - Box coordinates are the first and last pixel of the box, so the IoU uses widths ``x2 - x1 + 1`` and heights
    ``y2 - y1 + 1``.
  - Among equal scores, the detection that comes later in the pooled list (images in order, each image's detections
    in order) is ranked first. That is the order the published ascending sort, reversed, gives with a stable sort;
    here it is fixed explicitly, not left to the sorting algorithm.
* ``"continuous"``: detectron2's continuous box coordinates (widths ``x2 - x1``, as in ``pairwise_iou``); among equal
  scores the earlier detection in the pooled list is ranked first.

FROC (the same in both conventions apart from the two details above):

* All detections of all images are pooled and ranked by decreasing score (ties as above).
* Walking down the ranking, a detection whose IoU with any GT box of its image is below 0.5 (or whose image has no GT)
  is a false positive (FP). Otherwise every GT box of the image it overlaps at IoU >= 0.5 that is not yet found becomes
  found (true positives); a detection that only overlaps already-found GTs is neither a TP nor an FP.
* Each GT lesion counts once. After k detections, sensitivity = found GTs / all GTs and FPs/image = FPs / images.
* Sensitivity at f FPs/image = the sensitivity after taking every detection ranked above the
  (floor(f · n_images) + 1)-th FP, i.e. the highest sensitivity reached with at most f · n_images FPs (all
  detections when there are fewer FPs). This is the published code's linear interpolation of the per-detection curve
  (scipy's ``interp1d``): the curve is flat between consecutive FPs, and at an integer FP count the value is read at
  the top of the vertical step. (Below the first FP of a ranking that starts with one, where the published code
  stops with a bounds error, the value is 0.)
* ``sens_avg``: the mean sensitivity at 0.5, 1, 2 and 4 FPs/image.
* A subset of GTs (a lesion type, a size range) is scored at the same cut-offs as the whole set: FPs are not split by
  subset, sensitivity = found GTs of the subset / GTs of the subset.
* No detections: sensitivity 0 at every rate. No GT: sensitivity is undefined (NaN).

AP50 (an independent computation, PASCAL VOC 2010+/COCO style, with the convention's IoU and ranking): each ranked
detection is matched to the unmatched GT of its image with the highest IoU, if that IoU >= 0.5 (TP), otherwise it is
an FP (so duplicates are FPs, unlike in the FROC). Precision/recall after each detection; AP = area under the
precision envelope (precision made non-increasing from the right), summed over the recall steps ("all-point
interpolation"). AP is 0 without detections and NaN without GT (as sensitivity is).
"""
import numpy as np

__all__ = ["box_iou", "rank_detections", "froc", "sensitivity_at", "fp_share_in_regions", "average_precision",
           "check_convention", "CONVENTIONS", "DEFAULT_FPS", "AVG_FPS"]

DEFAULT_FPS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
AVG_FPS = (0.5, 1.0, 2.0, 4.0)
# name -> (box widths and heights count both end pixels (+1), equal scores rank the later detection first)
_RULES = {"official": (True, True), "continuous": (False, False)}
CONVENTIONS = tuple(_RULES)


def check_convention(convention):
    """Return ``convention`` if it is one of :data:`CONVENTIONS`, else raise a one-line ValueError."""
    if convention not in _RULES:
        raise ValueError(f"unknown FROC convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")
    return convention


def box_iou(a, b, pixel_inclusive=False):
    """IoU matrix [N, M] between XYXY boxes a [N, 4] and b [M, 4].

    ``pixel_inclusive``: (x2, y2) is the box's last pixel, so widths and heights get +1 (the official convention).
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    one = 1.0 if pixel_inclusive else 0.0
    area_a = np.clip(a[:, 2] - a[:, 0] + one, 0, None) * np.clip(a[:, 3] - a[:, 1] + one, 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0] + one, 0, None) * np.clip(b[:, 3] - b[:, 1] + one, 0, None)
    wh = np.clip(np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]) + one, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def rank_detections(scores_per_image, later_first=False):
    """Global ranking of pooled detections.

    Args:
        scores_per_image: list over images of score arrays [N_i].
        later_first: among equal scores, rank the detection that comes later in the pooled list first (the official
            convention); otherwise the earlier one.
    Returns:
        (order, image_index, det_index): int arrays [D]; ``order`` sorts the pooled detections by decreasing score,
        ties broken by pooled position as above; the other two give each pooled detection's image and its index
        within the image.
    """
    counts = [len(s) for s in scores_per_image]
    image_index = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    det_index = np.concatenate([np.arange(c) for c in counts]).astype(np.int64) if counts else np.zeros(0, np.int64)
    scores = np.concatenate([np.asarray(s, dtype=np.float64) for s in scores_per_image]) if counts else np.zeros(0)
    position = np.arange(len(scores))
    # an explicit tie key: the order of equal scores must not depend on the sorting algorithm
    order = np.lexsort((-position if later_first else position, -scores))
    return order, image_index, det_index


def froc(pred_boxes, pred_scores, gt_boxes, iou_thresh=0.5, convention="official"):
    """The FROC curve and, for every GT box, the rank at which it is found.

    Args:
        pred_boxes: list over images of [N_i, 4] XYXY; pred_scores: list of [N_i]; gt_boxes: list of [M_i, 4].
        convention: "official" or "continuous" (module docstring).
    Returns:
        dict: ``sensitivity`` [D] (NaN without GT) and ``fp_per_image`` [D] after each ranked detection;
        ``is_fp`` [D] bool; ``image_index`` [D] and ``det_index`` [D], the image and its detection at each rank;
        ``found_rank`` [G] (rank of the detection that found each GT, images concatenated in order; -1 when never
        found); ``num_images``; ``num_gt``.
    """
    n_img = len(gt_boxes)
    if not (len(pred_boxes) == len(pred_scores) == n_img):
        raise ValueError("pred_boxes, pred_scores and gt_boxes must have one entry per image")
    pixel_inclusive, later_first = _RULES[check_convention(convention)]
    order, image_index, det_index = rank_detections(pred_scores, later_first)
    gt_offsets = np.concatenate([[0], np.cumsum([len(np.reshape(g, (-1, 4))) for g in gt_boxes])]).astype(np.int64)
    num_gt = int(gt_offsets[-1])
    ious = [box_iou(p, g, pixel_inclusive) for p, g in zip(pred_boxes, gt_boxes)]
    found = np.zeros(num_gt, dtype=bool)
    found_rank = np.full(num_gt, -1, dtype=np.int64)
    is_fp = np.zeros(len(order), dtype=bool)
    new_hits = np.zeros(len(order), dtype=np.int64)
    # One pass over the ranked detections (a few per image); each step touches one image's GTs only.
    for rank, d in enumerate(order):
        i, k = image_index[d], det_index[d]
        hit = ious[i][k] >= iou_thresh if ious[i].shape[1] else np.zeros(0, dtype=bool)
        if not hit.any():
            is_fp[rank] = True
            continue
        gt_ids = gt_offsets[i] + np.flatnonzero(hit)
        new = gt_ids[~found[gt_ids]]
        found[new] = True
        found_rank[new] = rank
        new_hits[rank] = len(new)
    sensitivity = np.cumsum(new_hits) / num_gt if num_gt else np.full(len(order), np.nan)
    fp_per_image = np.cumsum(is_fp) / max(n_img, 1)
    return {"sensitivity": sensitivity, "fp_per_image": fp_per_image, "is_fp": is_fp,
            "image_index": image_index[order], "det_index": det_index[order], "found_rank": found_rank,
            "num_images": n_img, "num_gt": num_gt}


def _allowed_fps(f, num_images):
    """How many FPs a rate of f FPs/image allows over ``num_images`` images: floor(f · n_images)."""
    return int(np.floor(f * num_images + 1e-9))


def sensitivity_at(curve, fps=DEFAULT_FPS, gt_subset=None):
    """Sensitivity at average FPs per image (definition in the module docstring).

    Args:
        curve: the dict returned by :func:`froc`.
        fps: FP rates per image.
        gt_subset: optional bool mask [G] selecting the GTs to score (a lesion type, a size range).
    Returns:
        float64 array [len(fps)]; NaN when the (sub)set has no GT.
    """
    found_rank = curve["found_rank"]
    if gt_subset is not None:
        found_rank = found_rank[np.asarray(gt_subset, dtype=bool)]
    if found_rank.size == 0:
        return np.full(len(fps), np.nan)
    fp_ranks = np.flatnonzero(curve["is_fp"])
    n_det = len(curve["is_fp"])
    out = []
    for f in fps:
        allowed = _allowed_fps(f, curve["num_images"])
        # detections strictly above the first FP that exceeds the allowance
        cut = fp_ranks[allowed] if allowed < len(fp_ranks) else n_det
        out.append(np.mean((found_rank >= 0) & (found_rank < cut)))
    return np.asarray(out, dtype=np.float64)


def fp_share_in_regions(curve, pred_boxes, region_boxes, fps=AVG_FPS):
    """The share of the false positives allowed at each FP rate whose box centre lies in a given region.

    The FPs allowed at f FPs/image are the first ``floor(f · n_images)`` FPs of the ranking (all of them when there are
    fewer): those :func:`sensitivity_at` reads the sensitivity above. A centre ``(cx, cy)`` lies in a region box
    ``[x0, y0, x1, y1]`` when ``x0 <= cx <= x1`` and ``y0 <= cy <= y1``.

    Args:
        curve: the dict returned by :func:`froc` for ``pred_boxes``.
        pred_boxes: list over images of [N_i, 4] XYXY, as given to :func:`froc`.
        region_boxes: list over images of [R_i, 4] XYXY (e.g. the structures that look like lesions but are not).
    Returns:
        float64 array [len(fps)], fractions in [0, 1]; NaN where no FP is allowed (or there is none).
    """
    fp_ranks = np.flatnonzero(curve["is_fp"])
    inside = np.zeros(len(fp_ranks), dtype=bool)
    for j, rank in enumerate(fp_ranks):
        i, k = curve["image_index"][rank], curve["det_index"][rank]
        regions = np.asarray(region_boxes[i], dtype=np.float64).reshape(-1, 4)
        x0, y0, x1, y1 = np.asarray(pred_boxes[i], dtype=np.float64).reshape(-1, 4)[k]
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        inside[j] = bool(((regions[:, 0] <= cx) & (cx <= regions[:, 2])
                          & (regions[:, 1] <= cy) & (cy <= regions[:, 3])).any())
    out = []
    for f in fps:
        allowed = min(_allowed_fps(f, curve["num_images"]), len(fp_ranks))
        out.append(inside[:allowed].mean() if allowed else np.nan)
    return np.asarray(out, dtype=np.float64)


def average_precision(pred_boxes, pred_scores, gt_boxes, iou_thresh=0.5, convention="official"):
    """AP at IoU >= ``iou_thresh`` with all-point interpolation (module docstring). Returns (ap, precision, recall)."""
    pixel_inclusive, later_first = _RULES[check_convention(convention)]
    order, image_index, det_index = rank_detections(pred_scores, later_first)
    num_gt = sum(len(np.reshape(g, (-1, 4))) for g in gt_boxes)
    ious = [box_iou(p, g, pixel_inclusive) for p, g in zip(pred_boxes, gt_boxes)]
    matched = [np.zeros(iou.shape[1], dtype=bool) for iou in ious]
    tp = np.zeros(len(order), dtype=bool)
    for rank, d in enumerate(order):
        i, k = image_index[d], det_index[d]
        if ious[i].shape[1] == 0:
            continue
        candidates = np.where(matched[i], -1.0, ious[i][k])
        j = int(np.argmax(candidates))
        if candidates[j] >= iou_thresh:
            matched[i][j] = True
            tp[rank] = True
    if num_gt == 0:  # no positives: recall, and so AP, is undefined
        return float("nan"), np.zeros(0), np.zeros(0)
    if len(order) == 0:
        return 0.0, np.zeros(0), np.zeros(0)
    ctp = np.cumsum(tp)
    recall = ctp / num_gt
    precision = ctp / np.arange(1, len(order) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * envelope)), precision, recall
