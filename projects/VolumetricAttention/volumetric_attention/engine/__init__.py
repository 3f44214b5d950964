from .checkpoint import CheckpointLoadError, VACheckpointer
from .ddp import create_ddp_model, launch
from .trainer import VATrainer
from .va_stats_hook import VAStatsHook

__all__ = ["VACheckpointer", "CheckpointLoadError", "VATrainer", "VAStatsHook", "create_ddp_model", "launch"]
