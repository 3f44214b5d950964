from .config import add_va_config
