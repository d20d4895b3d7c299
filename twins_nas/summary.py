"""A plain-data summary of an architecture at an input size (what `twins-nas show` prints):
`summarize(cfg, size)` for a config, `describe(source, ...)` for a preset name or config JSON."""
from __future__ import annotations

import functools
from dataclasses import dataclass

from .config import ArchConfig, ConfigError, load_config
from .models.head_cost import analytic_flops, analytic_params  # closed form: no model is built
from .sizes import Size, as_size, parse_size

DEFAULT_RESOLUTION = 224


@dataclass(frozen=True)
class StageSummary:
    """One stage: its map (H, W), width, heads, MLP ratio, blocks ('L G ...'), LSA window
    ('7x7', '7x7 (used 4x4)' where the map is smaller, '-'), GSA ratio k with its sub-sampler
    ('2 conv', '1 (global)', '-') and parameters."""

    stage: int
    map: Size
    embed_dim: int
    num_heads: int
    mlp_ratio: float
    blocks: str
    window: str
    subsample: str
    params: int


@dataclass(frozen=True)
class Summary:
    """An architecture at an input size: per-stage rows, total params and GMACs."""

    size: Size
    stages: list[StageSummary]
    params: int
    gmacs: float


@dataclass(frozen=True)
class Description:
    """A config read from a preset name or JSON file, the name messages show for it (its own
    name, else what the caller gave), the input size asked for and, on first use, its summary
    there."""

    config: ArchConfig
    name: str
    size: Size

    @functools.cached_property
    def summary(self) -> Summary:
        return summarize(self.config, self.size)


def summarize(cfg: ArchConfig, resolution: int | Size) -> Summary:
    """Per-stage rows (map (H, W), width, heads, blocks, windows, sub-sampling, params), total
    params and GMACs of `cfg` at `resolution`: an int n (n x n pixels) or (H, W)."""
    size = as_size(resolution)
    sizes = cfg.stage_sizes(size)
    pstage = analytic_params(cfg, by_stage=True)
    rows = []
    for i, (s, size_i) in enumerate(zip(cfg.stages, sizes)):
        has_l, has_g = "L" in s.block_types, "G" in s.block_types  # the blocks that exist (LG at depth 1 is L)
        win = "-"
        if has_l:
            eff = s.lsa_window(size_i)
            assert s.window is not None  # validated: a stage with L blocks has a window
            win = f"{s.window[0]}x{s.window[1]}" + (f" (used {eff[0]}x{eff[1]})" if eff != tuple(s.window) else "")
        k = "-"
        if has_g:
            k1, k2 = s.sr_pair
            k = "1 (global)" if (k1, k2) == (1, 1) else (f"{k1}" if k1 == k2 else f"{k1}x{k2}") + f" {s.subsample}"
        rows.append(StageSummary(stage=i + 1, map=size_i, embed_dim=s.embed_dim, num_heads=s.num_heads,
                                 mlp_ratio=s.mlp_ratio, blocks=" ".join(s.block_types), window=win, subsample=k,
                                 params=pstage[i]))
    return Summary(size=size, stages=rows, params=analytic_params(cfg), gmacs=analytic_flops(cfg, size).total / 1e9)


def input_size(size: int | Size | str | None = None, resolution: int | None = None) -> Size:
    """The input size asked for: `size` (n, (H, W) or 'HxW') or `resolution` (n x n), one of
    them; 224 x 224 when neither is given."""
    if resolution is not None and size is not None:
        raise ConfigError(lambda name: f"{name('resolution')} {resolution} and {name('size')} {size}: give one of "
                          f"them ({name('size')} HxW, e.g. 512x1024, or {name('resolution')} N for N x N)",
                          field="resolution")
    return parse_size(size, field="size") if size is not None else (resolution or DEFAULT_RESOLUTION,) * 2


def describe(source: str, size: int | Size | str | None = None, resolution: int | None = None,
             index: int | None = None) -> Description:
    """The config a preset name or JSON file (`source`, entry `index` of several) holds, and the
    input size (`size` or `resolution`, see `input_size`) its `summary` is at."""
    hw = input_size(size, resolution)
    cfg = load_config(source, index=index)
    return Description(config=cfg, name=cfg.name or source, size=hw)
