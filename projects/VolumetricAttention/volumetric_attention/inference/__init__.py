from .case_loop import CaseLoop
from .lesion_report import lesion_report, write_lesion_report
from .volume_predictor import VolumePrediction, VolumePredictor

__all__ = ["VolumePredictor", "VolumePrediction", "CaseLoop", "lesion_report", "write_lesion_report"]
