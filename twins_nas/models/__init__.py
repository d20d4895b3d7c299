from .kernels import fast_paths, fast_paths_enabled, set_fast_paths
from .twins import Twins, build_model, lsa_key_mask

__all__ = ["Twins", "build_model", "lsa_key_mask", "fast_paths", "fast_paths_enabled", "set_fast_paths"]
