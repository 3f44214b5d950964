from .checkpoint import VACheckpointer
from .ddp import create_ddp_model
from .trainer import VATrainer

__all__ = ["VACheckpointer", "VATrainer", "create_ddp_model"]
