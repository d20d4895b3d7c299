"""A subnet taken out of the supernet as a standalone `twins_nas.models.Twins`."""
from __future__ import annotations

import torch

from ..config import ArchConfig
from ..models.twins import Twins
from ..search.space.space import SearchSpace
from .choices import subnet_of
from .model import Supernet


def extract_subnet(supernet: Supernet, cfg: ArchConfig, space: SearchSpace | None = None) -> Twins:
    """`Twins(proxy config)` holding copies of the supernet's slices for the subnet: it
    computes what the supernet computes for that subnet, and trains on apart from it.

    `cfg` is the subnet's proxy config, or with `space` a full-size config of the space (a
    config outside the space raises a one-line `ConfigError`). The model is in eval mode, on
    the supernet's device."""
    sub = subnet_of(space, cfg) if space is not None else cfg
    supernet.check(sub)
    with torch.random.fork_rng(devices=[]):  # the skeleton's own init draws are thrown away
        model = Twins(sub)
    with torch.no_grad():
        model.load_state_dict({k: v.detach().clone() for k, v in supernet.subnet_state(sub).items()}, strict=True)
    return model.to(next(supernet.parameters()).device).eval()
