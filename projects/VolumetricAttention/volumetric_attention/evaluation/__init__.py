"""Evaluation: case-level inference, LiTS 3D Dice / lesion metrics, DeepLesion FROC, and their plots."""
from .case_inference import inference_on_cases, split_cases
from .deeplesion_evaluator import DeepLesionFROCEvaluator
from .froc import average_precision, box_iou, froc, sensitivity_at
from .lesions import Lesion, equivalent_diameter_mm, find_lesions, label_components, match_lesions, size_bucket
from .lits_evaluator import CaseReference, LiTSEvaluator, load_case_reference
from .lits_metrics import score_case, summarize_cases
from .metrics import dice_from_counts, dice_score
from .plots import plot_dice_per_case, plot_froc
from .results_io import load_results

__all__ = [
    "LiTSEvaluator", "DeepLesionFROCEvaluator", "CaseReference", "load_case_reference",
    "dice_score", "dice_from_counts", "score_case", "summarize_cases",
    "Lesion", "find_lesions", "label_components", "match_lesions", "equivalent_diameter_mm", "size_bucket",
    "froc", "sensitivity_at", "average_precision", "box_iou",
    "plot_froc", "plot_dice_per_case", "load_results", "inference_on_cases", "split_cases",
]
