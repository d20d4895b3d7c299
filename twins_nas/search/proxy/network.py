"""The proxy copy of a full-size architecture: what the accuracy objective trains.

`proxy_arch(cfg, proxy, num_classes, in_chans, resolution, choices)` (`resolution`: the
full-size input, n or (H, W)) keeps:

* the number of stages, every stage's depth, L/G pattern, MLP ratio and sub-sampling function;
* the attention geometry (``proxy.geometry: faithful``, the default): the proxy input
  (``proxy.resolution``, stage-1 patch ``proxy.patch_size``; later stages keep their patch
  sizes) gives smaller maps, and every LSA window side and GSA ratio k is scaled by
  proxy map / full-size map, per axis (rows by the map heights, columns by the widths: a
  square proxy of a 512x1024 full-size input scales columns half as much as rows), so that a
  stage keeps its number of windows per side and of GSA keys per side, along each axis.
  Twins-SVT-S at 224 px (maps 56/28/14/7, windows 7x7: 8/4/2/1 windows per side; k =
  8/4/2/1: 7 keys per side) becomes, at 32 px with a stage-1 patch of 2 (maps
  16/8/4/2), windows 2x2 (8/4/2/1 per side) and k = 2/2/2/1 (8/4/2/2 keys per side: a block
  that sub-samples keeps sub-sampling, so k > 1 stays >= 2, and k = 1 stays global);
* distinct choices stay distinct: given the space's choices of a stage (`choices`), the scaled
  values are made strictly increasing in the full-size value (a collision moves the larger
  choice up by one, or the smaller down when the map has no room), so two configs that differ
  in a window or k of any stage train different proxy networks. When the proxy maps cannot
  hold that many distinct values, `ConfigError` names the stage and field.

``proxy.geometry: clamp`` is the older rule: windows and k clamped to the proxy maps and
rounded down to divisors of the map side (windows of a later stage then all become the whole
map).

Widths: each head is `head_dim * width_mult` wide but at least `min_head_dim`, and the stage
gets `round(embed_dim * width_mult / that)` heads (at least 1). The classifier and input
channels follow the proxy data set; no drop-path.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ...config import ArchConfig, ConfigError
from ...sizes import Size
from .settings import ProxySettings


@dataclass(frozen=True)
class StageChoices:
    """The values a space allows for one stage's geometry, per axis (rows, cols)."""

    window_rows: tuple[int, ...] = ()
    window_cols: tuple[int, ...] = ()
    k_rows: tuple[int, ...] = ()
    k_cols: tuple[int, ...] = ()


def _proxy_patches(patches: list[int], resolution: int) -> list[int]:
    """Patch sizes with every proxy map non-empty: reduce from the last stage backwards."""
    patches = list(patches)
    for i in reversed(range(len(patches))):
        while resolution // math.prod(patches) < 1 and patches[i] > 1:
            patches[i] -= 1
    return patches


def _divisor_at_most(v: int, size: int) -> int:
    """The largest divisor of `size` that is at most `v` (the `clamp` geometry)."""
    v = min(v, size)
    while size % v:
        v -= 1
    return v


def scale_sides(values: Sequence[int], full: int, proxy: int, kind: str) -> dict[int, int]:
    """Proxy side of each full-size side of a stage whose map side is `full` at full size and
    `proxy` in the proxy; `kind` is "window" (an LSA window side) or "ratio" (a GSA ratio k).

    Each value (a value larger than the map counts as the map) goes to
    `round(v * proxy / full)`, kept within what keeps the block's kind: a window smaller than
    the map stays smaller than the proxy map (local), a window covering the map covers it
    (global); a ratio k > 1 stays >= 2 (the block still sub-samples, with its sub-sampling
    function), k = 1 stays 1. The result is then made strictly increasing over the distinct
    values. Raises ValueError when the proxy map has no room for that."""
    eff = sorted({min(v, full) for v in values})
    lo = [2 if kind == "ratio" and v > 1 and proxy > 1 else 1 for v in eff]
    hi = [proxy - 1 if kind == "window" and v < full and proxy > 1 else proxy for v in eff]
    if kind == "ratio":
        hi = [1 if v == 1 else h for v, h in zip(eff, hi)]
    out = [min(h, max(lw, math.floor(v * proxy / full + 0.5))) for v, lw, h in zip(eff, lo, hi)]
    for i in range(1, len(out)):            # up: strictly increasing
        out[i] = max(out[i], out[i - 1] + 1)
    for i in reversed(range(len(out))):     # down: back under each bound
        out[i] = min(out[i], hi[i], out[i + 1] - 1 if i + 1 < len(out) else hi[i])
    if any(not lw <= o <= h for o, lw, h in zip(out, lo, hi)) or any(a >= b for a, b in zip(out, out[1:])):
        raise ValueError(f"{len(eff)} distinct {kind} values {eff} do not fit a {proxy}-wide proxy map")
    by_eff = dict(zip(eff, out))
    return {v: by_eff[min(v, full)] for v in values}


def _axis(values: Sequence[int], own: int, full: int, proxy: int, kind: str, where: str) -> int:
    try:
        return scale_sides(tuple(values) + (own,), full, proxy, kind)[own]
    except ValueError as e:
        raise ConfigError(f"{where}: {e}; the proxy cannot tell these choices apart, raise proxy.resolution "
                          f"or lower proxy.patch_size") from None


def proxy_patch_sizes(cfg: ArchConfig, proxy: ProxySettings) -> list[int]:
    """The proxy's patch sizes: the stage-1 patch is `proxy.patch_size` (when set), every map
    is non-empty at `proxy.resolution`."""
    patches = [s.patch_size for s in cfg.stages]
    if proxy.patch_size is not None:
        patches[0] = proxy.patch_size
    return _proxy_patches(patches, proxy.resolution)


def proxy_arch(cfg: ArchConfig, proxy: ProxySettings, num_classes: int, in_chans: int,
               resolution: int | Size | None = None,
               choices: Sequence[StageChoices] | None = None) -> ArchConfig:
    """The proxy copy of the full-size `cfg` at input `resolution` (n or (H, W): the space's;
    needed by the faithful geometry, which scales rows and columns each by its own axis)
    given the space's geometry `choices` per stage (None: the config's own values only). See
    the module docstring for the rules."""
    patches = proxy_patch_sizes(cfg, proxy)
    faithful = proxy.geometry == "faithful"
    if faithful and resolution is None:
        raise ValueError("the faithful proxy geometry needs the full-size resolution")
    full_sizes = cfg.stage_sizes(resolution) if faithful and resolution is not None else [None] * len(cfg.stages)
    h = w = proxy.resolution
    stages = []
    for i, (s, patch, full) in enumerate(zip(cfg.stages, patches, full_sizes)):
        h, w = h // patch, w // patch
        head_dim = max(proxy.min_head_dim, round(s.head_dim * proxy.width_mult))
        heads = max(1, round(s.embed_dim * proxy.width_mult / head_dim))
        k = s.sr_pair
        if faithful:
            assert full is not None  # the stage sizes of the faithful geometry
            c = choices[i] if choices is not None else StageChoices()
            where = f"stages[{i}]"
            k1 = _axis(c.k_rows, k[0], full[0], h, "ratio", f"{where}.sr_ratio (rows)")
            k2 = _axis(c.k_cols, k[1], full[1], w, "ratio", f"{where}.sr_ratio (cols)")
            window = None if s.window is None else (
                _axis(c.window_rows, s.window[0], full[0], h, "window", f"{where}.window (rows)"),
                _axis(c.window_cols, s.window[1], full[1], w, "window", f"{where}.window (cols)"))
        else:
            k1, k2 = _divisor_at_most(k[0], h), _divisor_at_most(k[1], w)
            window = None if s.window is None else (_divisor_at_most(s.window[0], h),
                                                    _divisor_at_most(s.window[1], w))
        stages.append(dict(
            patch_size=patch, embed_dim=heads * head_dim, depth=s.depth, num_heads=heads,
            mlp_ratio=s.mlp_ratio, window=window,
            sr_ratio=k1 if k1 == k2 else (k1, k2), subsample=s.subsample, pattern=s.pattern))
    name = f"{cfg.name}-proxy" if cfg.name else None
    return ArchConfig(name=name, stages=stages, num_classes=num_classes, in_chans=in_chans,
                      qkv_bias=cfg.qkv_bias, peg=cfg.peg, drop_path_rate=0.0)


def keys_per_side(side: int, k: int) -> int:
    """GSA keys along a map side of `side` tokens sub-sampled by k (a partial cell is a key)."""
    return -(-side // k)


def geometry_rows(cfg: ArchConfig, resolution: int | Size) -> list[dict]:
    """Per stage at input `resolution` (n or (H, W)), what makes its attention local or
    global: map, window, windows per side, k, GSA keys per side, width (plain data for
    `twins-nas show --proxy`)."""
    rows = []
    for s, (h, w) in zip(cfg.stages, cfg.stage_sizes(resolution)):
        kinds = s.block_types
        win = s.lsa_window((h, w)) if "L" in kinds else None
        k = s.sr_pair if "G" in kinds else None
        rows.append(dict(map=(h, w), window=win,
                         windows_per_side=None if win is None else (-(-h // win[0]), -(-w // win[1])),
                         k=k, keys_per_side=None if k is None else (keys_per_side(h, k[0]), keys_per_side(w, k[1])),
                         subsample=s.subsample if k not in (None, (1, 1)) else None,
                         embed_dim=s.embed_dim, num_heads=s.num_heads, blocks="".join(kinds)))
    return rows


def proxy_of(cfg: ArchConfig, space) -> ArchConfig:
    """The proxy network a search over `space` (a `SearchSpace`) trains for the full-size
    `cfg`: the space's proxy settings, input size (H, W) and geometry choices, the data set's classes."""
    from .data import dataset_shape
    num_classes, in_chans = dataset_shape(space.proxy)
    return proxy_arch(cfg, space.proxy, num_classes, in_chans, space.input_size, space.geometry_choices())
