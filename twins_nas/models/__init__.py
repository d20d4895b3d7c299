from .cpu_fast_paths import fast_paths, fast_paths_enabled, set_fast_paths
from .head_config import HEADS, DenseHead, HeadConfig, UperNetConfig, head_config
from .segmentation import TwinsSegmentation, load_backbone
from .twins import Twins, build_model, lsa_key_mask

__all__ = ["Twins", "build_model", "lsa_key_mask", "fast_paths", "fast_paths_enabled", "set_fast_paths",
           "TwinsSegmentation", "HeadConfig", "UperNetConfig", "DenseHead", "HEADS", "head_config", "load_backbone"]
