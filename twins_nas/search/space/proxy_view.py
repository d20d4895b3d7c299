"""The proxy network a space's search trains for a config, stage by stage next to the full-size
network (`twins-nas show --proxy`): `describe_proxy(cfg, space_file, overrides)`."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...config import ArchConfig
from ...summary import summarize
from ..proxy.network import geometry_rows, proxy_of
from .space import SearchSpace, load_space


@dataclass(frozen=True)
class ProxyStage:
    """One stage at full size (the space's input size) and in the proxy (the proxy resolution):
    each a `proxy.network.geometry_rows` row (map, window, windows_per_side, k, keys_per_side,
    subsample, embed_dim, num_heads, blocks)."""

    stage: int
    full: dict[str, Any]
    proxy: dict[str, Any]


@dataclass(frozen=True)
class ProxyView:
    """The space (with its overrides), the proxy config it trains, per-stage geometry and the
    proxy's parameter count."""

    space: SearchSpace
    config: ArchConfig
    stages: list[ProxyStage]
    params: int


def describe_proxy(cfg: ArchConfig, space_file: str | Path, overrides: Sequence[str] = ()) -> ProxyView:
    """The proxy network the search of `space_file` (with `overrides`) trains for `cfg`."""
    space = load_space(space_file, overrides)
    proxy = proxy_of(cfg, space)
    full_rows, proxy_rows = geometry_rows(cfg, space.input_size), geometry_rows(proxy, space.proxy.resolution)
    stages = [ProxyStage(stage=i + 1, full=f, proxy=p) for i, (f, p) in enumerate(zip(full_rows, proxy_rows))]
    return ProxyView(space=space, config=proxy, stages=stages, params=summarize(proxy, space.proxy.resolution).params)
