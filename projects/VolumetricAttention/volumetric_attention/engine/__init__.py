from .checkpoint import CheckpointLoadError, VACheckpointer
from .ddp import create_ddp_model
from .trainer import VATrainer

__all__ = ["VACheckpointer", "CheckpointLoadError", "VATrainer", "create_ddp_model"]
