"""DeepLesion FROC evaluator: sensitivity at 0.5-16 FPs per image, average sensitivity, AP50, breakdowns.

A detectron2 :class:`DatasetEvaluator`. Each processed image contributes its predicted boxes and scores (all classes;
DeepLesion has one) and its GT boxes with ``lesion_type`` and ``diameter_mm``. GT comes from the input's
``annotations`` or, when the test mapper dropped them, from the registered dataset dicts (by ``image_id``).
Metric definitions, and the two conventions (``TEST.CT.FROC_CONVENTION``: "official", the published DeepLesion code's,
or "continuous"): :mod:`.froc`. Images are pooled in the dataset's order (the test list's), as the published code
does, whatever order the processes saw them in; the official tie order depends on it.

Breakdowns: by coarse lesion type (DeepLesion ``Coarse_lesion_type`` 1..8: bone, abdomen, mediastinum, liver, lung,
kidney, soft tissue, pelvis; -1 unknown) and by lesion size (``diameter_mm``, the long RECIST diameter:
< 10 mm, 10-30 mm, > 30 mm; 10 and 30 fall in "10to30mm"), each at the cut-offs of the whole set. No metric name has a
``-``: detectron2's ``copypaste`` line drops such keys.

False positives on look-alikes: given boxes of structures that look like lesions but are not, per image
(``lookalikes``, ``TEST.CT.LOOKALIKES``: a JSON file ``{File_name: [[x0, y0, x1, y1], ...]}`` keyed like
DL_info.csv; the synthetic DeepLesion's ``lookalikes.json`` lists its vessel cross-sections),
``lookalike_fp@f`` is the share of the FPs allowed at f FPs/image (f in 0.5, 1, 2, 4) whose box centre lies in one
(:func:`.froc.fp_share_in_regions`), so a model that learns to tell them apart shows a smaller share. An image the
file does not list has none.

Sensitivities and AP are in percent everywhere: in the returned metrics, the log, the JSON (curve included) and the
CSV.

Files written to ``output_dir``: ``deeplesion_summary.json`` (the result file ``tools/plot_results.py`` reads),
``deeplesion_froc.csv`` (the curve: each ranked detection with its image, box and score) and ``deeplesion_froc.png``.
"""
import json
import logging
import os
from collections import OrderedDict

import numpy as np

from detectron2.config import configurable
from detectron2.data import DatasetCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils import comm

from .froc import AVG_FPS, DEFAULT_FPS, average_precision, check_convention, fp_share_in_regions, froc, sensitivity_at
from .results_io import write_csv, write_json

__all__ = ["DeepLesionFROCEvaluator", "LESION_TYPES", "SIZE_RANGES", "RESULTS_KEY", "load_lookalikes"]

logger = logging.getLogger(__name__)

RESULTS_KEY = "deeplesion"
LESION_TYPES = {1: "bone", 2: "abdomen", 3: "mediastinum", 4: "liver", 5: "lung", 6: "kidney", 7: "soft_tissue",
                8: "pelvis", -1: "unknown"}
# (name, low, high) in mm: low <= d <= high, except "<10mm" (d < 10) and ">30mm" (d > 30)
SIZE_RANGES = (("<10mm", -np.inf, 10.0), ("10to30mm", 10.0, 30.0), (">30mm", 30.0, np.inf))


def load_lookalikes(path):
    """Read a look-alikes file: ``{File_name: [[x0, y0, x1, y1], ...]}`` -> ``{case id (File_name without its
    extension, as the prepared dataset names key slices): float64 [R, 4]}``.

    Raises:
        ValueError: one line naming the file and what is wrong with it.
    """
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the look-alikes file ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected {{File_name: [[x0, y0, x1, y1], ...]}}, got a {type(data).__name__}")
    out = {}
    for name, boxes in data.items():
        try:
            out[os.path.splitext(name)[0]] = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: {name}: expected a list of [x0, y0, x1, y1] boxes") from None
    return out


def _fp_key(f):
    return f"sens@{f:g}"


def _size_name(d):
    if d is None or not np.isfinite(d):
        return "unknown_size"
    return "<10mm" if d < 10.0 else ("10to30mm" if d <= 30.0 else ">30mm")


class DeepLesionFROCEvaluator(DatasetEvaluator):
    """Sensitivity at FPs per image on DeepLesion-style data (one box per lesion).

    Returns ``{"deeplesion": {"sens@0.5": ..., ..., "sens@16": ..., "sens_avg": ..., "AP50": ...,
    "sens_avg/<type or size>": ...}}`` in percent on the main process, ``{}`` elsewhere.

    Built from explicit arguments or as ``DeepLesionFROCEvaluator(cfg, dataset_name, output_dir)``
    (``TEST.CT.FROC_CONVENTION``; see :meth:`from_config`).
    """

    @configurable
    def __init__(self, dataset_name, output_dir=None, distributed=True, iou_thresh=0.5, fps=DEFAULT_FPS,
                 convention="official", lookalikes=None):
        """
        Args:
            dataset_name: a registered dataset; its dicts give the image order and GT the inputs lack.
            output_dir: where the JSON/CSV/PNG files go; None writes nothing.
            distributed: gather the images of all processes on the main process before scoring.
            iou_thresh: IoU at which a detection hits a GT box.
            fps: the FP rates per image reported as ``sens@f``.
            convention: "official" or "continuous" (:mod:`.froc`).
            lookalikes: {case id: [R, 4] XYXY boxes} of structures that look like lesions (:func:`load_lookalikes`),
                or None: no ``lookalike_fp@f``.
        """
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._iou_thresh = float(iou_thresh)
        self._fps = tuple(float(f) for f in fps)
        self._convention = check_convention(convention)
        self._lookalikes = lookalikes
        self._gt_index = None
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name, output_dir=None):
        """Keyword arguments from the config's ``TEST.CT.*`` keys; a bad convention or look-alikes file names its
        key."""
        convention = cfg.TEST.CT.FROC_CONVENTION
        try:
            check_convention(convention)
        except ValueError as e:
            raise ValueError(f"TEST.CT.FROC_CONVENTION: {e}") from None
        try:
            lookalikes = load_lookalikes(cfg.TEST.CT.LOOKALIKES) if cfg.TEST.CT.LOOKALIKES else None
        except ValueError as e:
            raise ValueError(f"TEST.CT.LOOKALIKES: {e}") from None
        return {"dataset_name": dataset_name, "output_dir": output_dir, "convention": convention,
                "lookalikes": lookalikes}

    @property
    def convention(self):
        """The FROC convention in use: "official" or "continuous"."""
        return self._convention

    def reset(self):
        # image_id -> dict(pred_boxes [N,4], scores [N], gt_boxes [M,4], gt_types [M], gt_diameters [M])
        self._images = {}

    def _dataset_index(self):
        """image_id -> (position in the dataset, dataset dict); empty when the dataset is not registered."""
        if self._gt_index is None:
            dicts = DatasetCatalog.get(self._dataset_name) if self._dataset_name in DatasetCatalog.list() else []
            self._gt_index = {d["image_id"]: (k, d) for k, d in enumerate(dicts)}
        return self._gt_index

    def _dataset_dict(self, image_id):
        """The dataset's dict of an image, or None."""
        entry = self._dataset_index().get(image_id)
        return None if entry is None else entry[1]

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            image_id = inp["image_id"]
            # what the input lacks (a test mapper drops annotations) comes from the dataset's dict
            stored = self._dataset_dict(image_id) or {}
            if "annotations" not in inp and not stored:
                raise KeyError(f"DeepLesionFROCEvaluator: image_id {image_id!r} has no annotations and is not in "
                               f"dataset {self._dataset_name!r}")
            anns = inp["annotations"] if "annotations" in inp else stored.get("annotations", [])
            case_id = inp["case_id"] if "case_id" in inp else stored.get("case_id")
            gt = np.array([BoxMode.convert(list(a["bbox"]), a.get("bbox_mode", BoxMode.XYXY_ABS), BoxMode.XYXY_ABS)
                           for a in anns], dtype=np.float64).reshape(-1, 4)
            instances = out["instances"].to("cpu")
            self._images[image_id] = {
                "pred_boxes": instances.pred_boxes.tensor.numpy().astype(np.float64),
                "scores": instances.scores.numpy().astype(np.float64),
                "gt_boxes": gt,
                "gt_types": np.array([int(a.get("lesion_type", -1)) for a in anns], dtype=np.int64),
                "gt_diameters": np.array([float(a.get("diameter_mm", np.nan)) for a in anns], dtype=np.float64),
                "case_id": case_id,
            }

    def _gathered(self):
        if not self._distributed or comm.get_world_size() == 1:
            return self._images
        comm.synchronize()
        parts = comm.gather(self._images, dst=0)
        if not comm.is_main_process():
            return None
        images = {}
        for part in parts:
            for k, v in part.items():
                images.setdefault(k, v)
        return images

    def evaluate(self):
        images = self._gathered()
        if images is None:
            return {}
        if not images:
            logger.warning(f"DeepLesionFROCEvaluator on {self._dataset_name}: no images were processed")
            return {}
        # the dataset's image order (ids it lacks after, sorted) makes ties, and so the results, independent of how
        # images were split across processes
        index = self._dataset_index()
        ids = sorted(images, key=lambda i: (index[i][0] if i in index else len(index), str(type(i)), i))
        recs = [images[i] for i in ids]
        boxes, scores, gts = ([r[k] for r in recs] for k in ("pred_boxes", "scores", "gt_boxes"))
        curve = froc(boxes, scores, gts, iou_thresh=self._iou_thresh, convention=self._convention)
        ap50, _, _ = average_precision(boxes, scores, gts, iou_thresh=self._iou_thresh, convention=self._convention)
        avg_fps = tuple(sorted(set(self._fps) | set(AVG_FPS)))
        sens = dict(zip(avg_fps, sensitivity_at(curve, avg_fps)))

        metrics = OrderedDict((_fp_key(f), 100.0 * sens[f]) for f in self._fps)
        metrics["sens_avg"] = 100.0 * float(np.mean([sens[f] for f in AVG_FPS]))
        metrics["AP50"] = 100.0 * ap50
        groups = self._groups(recs)
        breakdown = {}
        for name, subset in groups.items():
            s = dict(zip(avg_fps, sensitivity_at(curve, avg_fps, gt_subset=subset)))
            breakdown[name] = {"num_gt": int(subset.sum()), **{_fp_key(f): 100.0 * s[f] for f in self._fps},
                               "sens_avg": 100.0 * float(np.mean([s[f] for f in AVG_FPS]))}
            metrics[f"sens_avg/{name}"] = breakdown[name]["sens_avg"]
        if self._lookalikes is not None:
            regions = [self._lookalikes.get(r["case_id"], np.zeros((0, 4))) for r in recs]
            unlisted = sum(r["case_id"] not in self._lookalikes for r in recs)
            if unlisted:
                logger.warning(f"DeepLesionFROCEvaluator on {self._dataset_name}: {unlisted} of {len(recs)} images "
                               "are not in the look-alikes file (counted as having none)")
            shares = fp_share_in_regions(curve, boxes, regions, AVG_FPS)
            for f, share in zip(AVG_FPS, shares):
                metrics[f"lookalike_fp@{f:g}"] = 100.0 * float(share)
        metrics["num_images"] = curve["num_images"]
        metrics["num_gt"] = curve["num_gt"]
        if curve["num_gt"] == 0:
            logger.warning(f"DeepLesionFROCEvaluator on {self._dataset_name}: no ground-truth lesion in "
                           f"{curve['num_images']} images; sensitivities and AP50 are undefined (NaN)")
        elif len(curve["is_fp"]) == 0:
            logger.warning(f"DeepLesionFROCEvaluator on {self._dataset_name}: no detections (all sensitivities 0); "
                           "check MODEL.ROI_HEADS.SCORE_THRESH_TEST or the training")
        logger.info(f"DeepLesion FROC ({self._convention} convention) on {self._dataset_name}: "
                    + ", ".join(f"{k}={v:.2f}" for k, v in metrics.items() if "/" not in k))
        if self._output_dir:
            self._write(curve, recs, ids, metrics, breakdown)
        return OrderedDict({RESULTS_KEY: metrics})

    @staticmethod
    def _groups(recs):
        types = np.concatenate([r["gt_types"] for r in recs])
        sizes = np.array([_size_name(d) for d in np.concatenate([r["gt_diameters"] for r in recs])])
        groups = OrderedDict()
        for t, name in LESION_TYPES.items():
            if (types == t).any():
                groups[name] = types == t
        for name, _, _ in SIZE_RANGES + (("unknown_size", 0, 0),):
            if (sizes == name).any():
                groups[name] = sizes == name
        return groups

    def _write(self, curve, recs, ids, metrics, breakdown):
        from .plots import plot_froc

        out = self._output_dir
        rows = []
        for k in range(len(curve["is_fp"])):
            i, d = curve["image_index"][k], curve["det_index"][k]
            x0, y0, x1, y1 = recs[i]["pred_boxes"][d]
            rows.append({"rank": k + 1, "fp_per_image": curve["fp_per_image"][k],
                         "sensitivity": 100.0 * curve["sensitivity"][k], "is_fp": int(curve["is_fp"][k]),
                         "image_id": ids[i], "case_id": recs[i]["case_id"], "score": recs[i]["scores"][d],
                         "x0": x0, "y0": y0, "x1": x1, "y1": y1})
        write_csv(os.path.join(out, "deeplesion_froc.csv"), rows,
                  ["rank", "fp_per_image", "sensitivity", "is_fp", "image_id", "case_id", "score", "x0", "y0", "x1",
                   "y1"])
        # the curve at its FP steps only (the top of each vertical step) keeps the JSON small; no detections, no curve
        is_fp = curve["is_fp"]
        last_before_fp = np.flatnonzero(np.append(is_fp[1:], True)) if len(is_fp) else np.zeros(0, np.int64)
        result = {
            "type": "deeplesion",
            "dataset": self._dataset_name,
            "unit": "percent",  # of every sensitivity and AP below; files written before it said nothing used fractions
            "settings": {"iou_thresh": self._iou_thresh, "fps": list(self._fps), "convention": self._convention},
            "metrics": dict(metrics),
            "breakdown": breakdown,
            "curve": {"fp_per_image": curve["fp_per_image"][last_before_fp],
                      "sensitivity": 100.0 * curve["sensitivity"][last_before_fp]},
        }
        write_json(os.path.join(out, "deeplesion_summary.json"), result)
        plot_froc([result], None, os.path.join(out, "deeplesion_froc.png"))
