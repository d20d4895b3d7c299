from .cpu_fast_paths import fast_paths, fast_paths_enabled, set_fast_paths
from .head_config import HEADS, HeadConfig, head_config
from .segmentation import TwinsSegmentation, load_backbone
from .twins import Twins, build_model, lsa_key_mask

__all__ = ["Twins", "build_model", "lsa_key_mask", "fast_paths", "fast_paths_enabled", "set_fast_paths",
           "TwinsSegmentation", "HeadConfig", "HEADS", "head_config", "load_backbone"]
