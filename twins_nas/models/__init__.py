from .twins import Twins, build_model, lsa_key_mask, lsa_window

__all__ = ["Twins", "build_model", "lsa_key_mask", "lsa_window"]
