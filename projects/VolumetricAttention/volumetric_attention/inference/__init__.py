from .lesion_report import lesion_report, write_lesion_report
from .volume_predictor import VolumePrediction, VolumePredictor, load_weights_strict

__all__ = ["VolumePredictor", "VolumePrediction", "lesion_report", "write_lesion_report", "load_weights_strict"]
