"""twins-nas: hardware-aware architecture search over Twins vision transformers."""
from .config import SCHEMA_VERSION, ArchConfig, ConfigError, StageConfig, load_config
from .models import Twins, build_model
from .presets import PRESETS, get_preset, global_reference, to_timm_kwargs

__version__ = "0.1.0"
__all__ = ["ArchConfig", "StageConfig", "ConfigError", "SCHEMA_VERSION", "load_config", "Twins",
           "build_model", "PRESETS", "get_preset", "global_reference", "to_timm_kwargs", "__version__"]
