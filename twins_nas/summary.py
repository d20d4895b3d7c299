"""A plain-data summary of an architecture at an input size (what `twins-nas show` prints):
`summarize(cfg, size)` for a config, `describe(source, ...)` for a preset name or config JSON;
with a dense head, also the whole segmentation model's params and GMACs split into backbone,
neck and head (`DenseCost`)."""
from __future__ import annotations

import functools
from dataclasses import dataclass

from .config import ArchConfig, ConfigError, load_config
from .models.head_config import DenseHead, head_config
from .models.head_cost import HeadLike, analytic_flops, analytic_params, param_parts  # closed form: no model is built
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
class DenseCost:
    """The dense model `build_model(cfg, head=head)` at an input size: its head (name and
    classes), params per part (backbone, neck, head; `aux` for an UperNet with its auxiliary
    head) and GMACs per part (backbone, neck, head), with their totals."""

    head: str
    num_classes: int
    params: dict[str, int]
    gmacs: dict[str, float]

    @property
    def total_params(self) -> int:
        return sum(self.params.values())

    @property
    def total_gmacs(self) -> float:
        return sum(self.gmacs.values())


@dataclass(frozen=True)
class Summary:
    """An architecture at an input size: per-stage rows, total params and GMACs; with a dense
    head, that dense model's cost (`dense`, None without a head)."""

    size: Size
    stages: list[StageSummary]
    params: int
    gmacs: float
    dense: DenseCost | None = None


def dense_cost(cfg: ArchConfig, head: HeadLike, resolution: int | Size) -> DenseCost | None:
    """Params and GMACs per part of `build_model(cfg, head=head)` at `resolution` (closed
    form, exact); None without a head. An unknown head is a one-line ConfigError."""
    hc = head_config(head)
    if hc is None:
        return None
    flops = analytic_flops(cfg, as_size(resolution), head=hc)
    return DenseCost(head=hc.type, num_classes=hc.num_classes, params=param_parts(cfg, hc),
                     gmacs={part: sum(cats.values()) / 1e9 for part, cats in flops.parts.items()})


@dataclass(frozen=True)
class Description:
    """A config read from a preset name or JSON file, the name messages show for it (its own
    name, else what the caller gave), the input size asked for and, on first use, its summary
    there."""

    config: ArchConfig
    name: str
    size: Size
    head: DenseHead | None = None

    @functools.cached_property
    def summary(self) -> Summary:
        return summarize(self.config, self.size, head=self.head)


def summarize(cfg: ArchConfig, resolution: int | Size, head: HeadLike = None) -> Summary:
    """Per-stage rows (map (H, W), width, heads, blocks, windows, sub-sampling, params), total
    params and GMACs of `cfg` at `resolution`: an int n (n x n pixels) or (H, W); with `head`
    (a name of `HEADS`, a dict or a head config), the dense model's cost too (`dense_cost`)."""
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
    return Summary(size=size, stages=rows, params=analytic_params(cfg), gmacs=analytic_flops(cfg, size).total / 1e9,
                   dense=dense_cost(cfg, head, size))


def input_size(size: int | Size | str | None = None, resolution: int | None = None) -> Size:
    """The input size asked for: `size` (n, (H, W) or 'HxW') or `resolution` (n x n), one of
    them; 224 x 224 when neither is given."""
    if resolution is not None and size is not None:
        raise ConfigError(lambda name: f"{name('resolution')} {resolution} and {name('size')} {size}: give one of "
                          f"them ({name('size')} HxW, e.g. 512x1024, or {name('resolution')} N for N x N)",
                          field="resolution")
    return parse_size(size, field="size") if size is not None else (resolution or DEFAULT_RESOLUTION,) * 2


def describe(source: str, size: int | Size | str | None = None, resolution: int | None = None,
             index: int | None = None, head: HeadLike = None) -> Description:
    """The config a preset name or JSON file (`source`, entry `index` of several) holds, and the
    input size (`size` or `resolution`, see `input_size`) its `summary` is at; with `head` (see
    `summarize`), the summary has the dense model's cost too. An unknown head is a one-line
    ConfigError, raised here."""
    hw = input_size(size, resolution)
    hc = head_config(head)
    cfg = load_config(source, index=index)
    return Description(config=cfg, name=cfg.name or source, size=hw, head=hc)
