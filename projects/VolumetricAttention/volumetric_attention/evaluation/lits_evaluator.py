"""LiTS 3D evaluator: per-slice outputs -> 3D label volumes per case -> Dice per case, lesion metrics, files, plots.

A detectron2 :class:`DatasetEvaluator`. ``process`` turns each slice's output (Mask R-CNN instances or a semantic
segmentation) into a label slice (see :mod:`volumetric_attention.inference.slice_labels`), compressed with zlib;
``evaluate`` gathers them on the main process, stacks each case's slices on the cache z grid (a slice that was never
predicted counts as background, with one warning listing the cases), resamples the volume to the original z grid with
the case's ``SliceResampler.to_original`` (nearest slice) and scores it against ``label_original``. The lesion-in-liver
AND is applied per slice before stacking; as it is voxelwise, that equals applying it to the 3D masks.
Metric definitions: :mod:`.lits_metrics` and :mod:`.lesions`.

Files written to ``output_dir``: ``lits_per_case.csv``, ``lits_lesions.csv``, ``lits_summary.json`` (the result file
``tools/plot_results.py`` reads) and ``lits_dice_per_case.png``. Dice and recall are in percent everywhere: in the
returned metrics, the log, the JSON and both CSV files.
"""
import copy
import itertools
import logging
import os
import zlib
from collections import OrderedDict, namedtuple

import numpy as np

from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..inference.slice_labels import output_to_label_slice
from .lits_metrics import (
    CASE_FIELDS,
    CASE_PERCENT_FIELDS,
    LESION_FIELDS,
    LESION_PERCENT_FIELDS,
    PERCENT_KEYS,
    in_percent,
    score_case,
    summarize_cases,
)
from .results_io import write_csv, write_json

__all__ = ["LiTSEvaluator", "CaseReference", "load_case_reference", "RESULTS_KEY"]

logger = logging.getLogger(__name__)

RESULTS_KEY = "lits"

# labels: uint8 (Z0, H, W) ground truth on the original grid; spacing_zyx: that grid's spacing in mm;
# to_original: callable (Zc, H, W) cache-grid labels -> (Z0, H, W).
CaseReference = namedtuple("CaseReference", ["labels", "spacing_zyx", "to_original"])


def load_case_reference(case_dir) -> CaseReference:
    """Ground truth of a cached case on its original grid, and the map from the cache grid to it."""
    from ..data.cache import load_case

    case = load_case(case_dir)
    if case.label_original is None:
        raise ValueError(f"{case_dir}: the cached case has no label_original; it cannot be scored")
    if case.geometry is not None:
        spacing = case.geometry.spacing_zyx
    elif case.resampler is not None:
        spacing = (case.resampler.spacing_z,) + tuple(case.spacing[1:])
    else:
        spacing = tuple(case.spacing)
    to_original = case.resampler.to_original if case.resampler is not None else np.asarray
    return CaseReference(np.asarray(case.label_original), tuple(float(s) for s in spacing), to_original)


class LiTSEvaluator(DatasetEvaluator):
    """3D Dice and lesion metrics of LiTS-style data (labels 0 background, 1 liver, 2 lesion).

    Inputs must carry ``case_id``, ``slice_index`` (cache grid), ``num_slices``, ``case_dir``, ``height``, ``width``;
    outputs ``instances`` with ``pred_masks`` (classes 0 liver, 1 lesion) or ``sem_seg`` [3, H, W].
    Returns ``{"lits": {metric: value}}`` on the main process (Dice and recall in percent), ``{}`` elsewhere.

    Built from explicit arguments or as ``LiTSEvaluator(cfg, dataset_name, output_dir)`` (``TEST.CT.*``; see
    :meth:`from_config`).
    """

    @configurable
    def __init__(self, dataset_name, output_dir=None, distributed=True, score_thresh=0.5, lesion_in_liver=True,
                 connectivity=26, load_reference=load_case_reference):
        """
        Args:
            dataset_name: a registered dataset (used for the log and its metadata).
            output_dir: where the CSV/JSON/PNG files go; None writes nothing.
            distributed: gather the slices of all processes on the main process before scoring.
            score_thresh: instance score threshold for the label masks (TEST.CT.SCORE_THRESH).
            lesion_in_liver: keep lesion pixels only inside the predicted liver (TEST.CT.LESION_IN_LIVER).
            connectivity: 26 or 6, for the 3D lesion components.
            load_reference: ``case_dir -> CaseReference``; the default reads the project's cache.
        """
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._score_thresh = float(score_thresh)
        self._lesion_in_liver = bool(lesion_in_liver)
        self._connectivity = connectivity
        self._load_reference = load_reference
        self._metadata = MetadataCatalog.get(dataset_name)
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name, output_dir=None):
        """Keyword arguments from the config's ``TEST.CT.*`` keys."""
        return {
            "dataset_name": dataset_name,
            "output_dir": output_dir,
            "score_thresh": cfg.TEST.CT.SCORE_THRESH,
            "lesion_in_liver": cfg.TEST.CT.LESION_IN_LIVER,
            "connectivity": cfg.TEST.CT.LESION_CONNECTIVITY,
        }

    def reset(self):
        # (case_id, slice_index, zlib-compressed uint8 (H, W) label slice or None when all background)
        self._slices = []
        # case_id -> {"case_dir", "num_slices", "height", "width"}
        self._cases = {}

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            h, w = int(inp["height"]), int(inp["width"])
            labels = output_to_label_slice(out, score_thresh=self._score_thresh,
                                           lesion_in_liver=self._lesion_in_liver, height=h, width=w)
            if labels.shape != (h, w):
                raise ValueError(f"case {inp['case_id']} slice {inp['slice_index']}: label slice {labels.shape} "
                                 f"is not the input's size ({h}, {w})")
            # Background slices (most of a CT) cost nothing; others compress ~100x (few label runs).
            payload = zlib.compress(labels.tobytes(), 1) if labels.any() else None
            self._slices.append((str(inp["case_id"]), int(inp["slice_index"]), payload))
            self._cases[str(inp["case_id"])] = {
                "case_dir": inp["case_dir"], "num_slices": int(inp["num_slices"]), "height": h, "width": w}

    def _gathered(self):
        if not self._distributed or comm.get_world_size() == 1:
            return self._slices, self._cases
        comm.synchronize()
        all_slices = comm.gather(self._slices, dst=0)
        all_cases = comm.gather(self._cases, dst=0)
        if not comm.is_main_process():
            return None, None
        cases = {}
        for c in all_cases:
            cases.update(c)
        return list(itertools.chain(*all_slices)), cases

    def evaluate(self):
        slices, cases = self._gathered()
        if slices is None:
            return {}
        if not cases:
            logger.warning(f"LiTSEvaluator on {self._dataset_name}: no slices were processed; nothing to score")
            return {}
        by_case = {c: {} for c in cases}
        for case_id, z, payload in slices:
            # the same slice twice (a padded sampler) carries the same prediction: keep the first
            by_case[case_id].setdefault(z, payload)

        rows, lesions, incomplete = [], [], []
        in_truth, predicted = set(), set()  # label values seen in some case's ground truth / prediction
        for case_id in sorted(by_case):
            info = cases[case_id]
            volume = np.zeros((info["num_slices"], info["height"], info["width"]), dtype=np.uint8)
            for z, payload in by_case[case_id].items():
                if payload is not None:
                    volume[z] = np.frombuffer(zlib.decompress(payload), dtype=np.uint8).reshape(volume.shape[1:])
            missing = info["num_slices"] - len(by_case[case_id])
            if missing:
                incomplete.append(f"{case_id} ({missing}/{info['num_slices']})")
            ref = self._load_reference(info["case_dir"])
            pred = ref.to_original(volume)
            in_truth.update(np.unique(ref.labels).tolist())
            predicted.update(np.unique(pred).tolist())
            row, case_lesions = score_case(pred, ref.labels, ref.spacing_zyx, case_id=case_id,
                                           connectivity=self._connectivity)
            row["missing_slices"] = missing
            rows.append(row)
            lesions.extend(case_lesions)
        if incomplete:
            logger.warning(f"LiTSEvaluator on {self._dataset_name}: slices never predicted count as background "
                           f"in {len(incomplete)} case(s) (case (missing/total)): {', '.join(incomplete)}")

        self._warn_never_predicted(in_truth, predicted, len(rows))
        summary = summarize_cases(rows, lesions)
        metrics = OrderedDict((k, 100.0 * v if k in PERCENT_KEYS else v) for k, v in summary.items())
        logger.info(f"LiTS 3D metrics on {self._dataset_name} ({len(rows)} cases): "
                    + ", ".join(f"{k}={v:.2f}" for k, v in metrics.items()))
        if self._output_dir:
            self._write(rows, lesions, metrics)
        return OrderedDict({RESULTS_KEY: metrics})

    def _warn_never_predicted(self, in_truth, predicted, num_cases):
        """One warning line per class that is in the ground truth but never predicted in any case: the sign of a
        model that collapsed to background for it (e.g. a lesion class that never trained)."""
        for value, name in ((1, "liver"), (2, "lesion")):
            if value in in_truth and value not in predicted:
                logger.warning(f"LiTSEvaluator on {self._dataset_name}: class '{name}' is in the ground truth, but "
                               f"no voxel of it is predicted in any of the {num_cases} cases: has the model learnt it?")

    def _write(self, rows, lesions, metrics):
        from .plots import plot_dice_per_case

        out = self._output_dir
        rows, lesions = in_percent(rows, CASE_PERCENT_FIELDS), in_percent(lesions, LESION_PERCENT_FIELDS)
        write_csv(os.path.join(out, "lits_per_case.csv"), rows, CASE_FIELDS)
        write_csv(os.path.join(out, "lits_lesions.csv"), lesions, LESION_FIELDS)
        result = {
            "type": "lits",
            "dataset": self._dataset_name,
            "unit": "percent",  # of every Dice and recall below; files written before it said nothing used fractions
            "settings": {"score_thresh": self._score_thresh, "lesion_in_liver": self._lesion_in_liver,
                         "connectivity": self._connectivity},
            "metrics": dict(metrics),
            "per_case": [{k: r[k] for k in CASE_FIELDS} for r in rows],
            "lesions": copy.deepcopy(lesions),
        }
        write_json(os.path.join(out, "lits_summary.json"), result)
        plot_dice_per_case([result], None, os.path.join(out, "lits_dice_per_case.png"))
