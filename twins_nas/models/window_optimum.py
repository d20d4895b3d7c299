"""Cost-optimal LSA windows and GSA sub-sample ratios per stage, from the closed form.

The Twins paper sizes its windows by cost: with LSA over m x n windows costing ~ mn·HWd and
GSA with one key per window costing ~ H²W²d/(mn), the sum is smallest at mn = √(HW), about
7 x 7 on the 56 x 56 stage-1 map at 224 px; later stages keep about 7 x 7 GSA keys (k = 8, 4,
2, 1) "to avoid too few keys". At 512-1024 px those choices are far from their optimum.

Here each stage's window and k are chosen as the cheapest integers under a **minimum-keys
rule**: every query attends to at least `min_keys` keys, in LSA (the window holds m·n >=
min_keys tokens) and in GSA (the sub-sampled map has ceil(H/k1)·ceil(W/k2) >= min_keys
tokens); a map of fewer tokens than `min_keys` needs all of them (a window covering the map,
k = 1). The default, 49 = 7 x 7, is the count every attention of the six published models
sees at 224 px, and under it the optimum at 224 px is exactly their published choice
(windows 7 x 7; k 8, 4, 2, 1).

Counted cost, batch 1, per block, in the closed form's convention (`cost_model`), every term
the window or k changes, padding included:

* LSA: the matmuls Q·Kᵀ and A·V over the map padded to whole windows, 2·Hp·Wp·m·n·C
  (the qkv and output projections do not depend on the window);
* GSA: the matmuls 2·N·M·C over M = ceil(H/k1)·ceil(W/k2) keys, the sub-sampling
  (conv M·C²·k1k2, dwconv M·C·k1k2 + M·C², avgpool 0) and its LayerNorm 5·M·C, and the kv
  projection of the keys, 2·M·C² (the q and output projections do not depend on k).

The LSA and GSA blocks of a stage are separate layers, so the stage's optimum is the LSA
optimum and the GSA optimum, each found over every integer candidate (1..H x 1..W; a window
larger than the map is the map). Ties go to the least padding, then the squarest choice,
then the smaller numbers.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np

from ..config import ArchConfig, ConfigError, StageConfig
from ..sizes import Resolution, Size, as_size
from .cost_model import analytic_flops, stage_macs

DEFAULT_MIN_KEYS = 49  # 7 x 7: the keys every attention of the published models sees at 224 px
DEFAULT_MAX_ASPECT = 2.0  # longest / shortest side of a window or sub-sampling cell


def required_keys(size: Size, min_keys: int) -> int:
    """Keys a query must see on a map of `size`: `min_keys`, or every token of a smaller map."""
    return min(int(min_keys), size[0] * size[1])


def check_rule(min_keys: int, max_aspect: float | None) -> None:
    """A one-line ConfigError (a ValueError) naming the field, for a rule that cannot be applied."""
    if isinstance(min_keys, bool) or not isinstance(min_keys, int) or min_keys < 1:
        raise ConfigError(f"min_keys={min_keys!r}: must be a whole number of keys, at least 1 (default 49 = 7x7)",
                          field="min_keys")
    if max_aspect is not None and not (isinstance(max_aspect, (int, float)) and max_aspect >= 1):
        raise ConfigError(f"max_aspect={max_aspect!r}: must be a number >= 1 (1 = square only) or None",
                          field="max_aspect")


def law_side(size: Size) -> float:
    """Side of the square window (or sub-sampling cell) at the paper's optimum k1·k2 = √(HW)
    (one GSA key per LSA window): (HW)^(1/4)."""
    return (size[0] * size[1]) ** 0.25


# ---- cost of every candidate at once (numpy, batch 1) -------------------------------------

def lsa_costs(size: Size, C: int, m, n) -> np.ndarray:
    """Window-dependent MACs of one LSA block for windows (m, n) (arrays broadcast): the
    attention matmuls on the padded map, 2·Hp·Wp·m·n·C, windows clamped to the map."""
    H, W = size
    m, n = np.minimum(np.asarray(m, dtype=np.int64), H), np.minimum(np.asarray(n, dtype=np.int64), W)
    Hp, Wp = -(-H // m) * m, -(-W // n) * n
    return 2 * Hp * Wp * m * n * C


def gsa_keys(size: Size, k1, k2) -> np.ndarray:
    """Key tokens of GSA with ratio (k1, k2): ceil(H/k1)·ceil(W/k2) (all H·W at k = 1)."""
    H, W = size
    return -(-H // np.asarray(k1, dtype=np.int64)) * -(-W // np.asarray(k2, dtype=np.int64))


def gsa_costs(size: Size, C: int, subsample: str, k1, k2) -> np.ndarray:
    """k-dependent MACs of one GSA block for ratios (k1, k2) (arrays broadcast): matmuls
    2·N·M·C, sub-sampling (+ its LayerNorm 5·M·C) and the kv projection 2·M·C²."""
    k1, k2 = np.broadcast_arrays(np.asarray(k1, dtype=np.int64), np.asarray(k2, dtype=np.int64))
    N = size[0] * size[1]
    M = gsa_keys(size, k1, k2)
    if subsample == "conv":
        sub = M * C * C * k1 * k2
    elif subsample == "dwconv":
        sub = M * C * k1 * k2 + M * C * C
    elif subsample == "avgpool":
        sub = np.zeros_like(M)
    else:
        raise ValueError(f"subsample={subsample!r}: choose conv, dwconv or avgpool")
    sampled = (k1 != 1) | (k2 != 1)
    return 2 * N * M * C + 2 * M * C * C + np.where(sampled, sub + 5 * M * C, 0)


def _grid(size: Size) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.meshgrid(np.arange(1, size[0] + 1), np.arange(1, size[1] + 1), indexing="ij")
    return rows.ravel().astype(np.int64), cols.ravel().astype(np.int64)


def _argmin(cost: np.ndarray, ok: np.ndarray, padding: np.ndarray, a: np.ndarray, b: np.ndarray) -> int:
    """Index of the cheapest allowed candidate; ties: least padding, squarest, smallest."""
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        raise ValueError("no candidate meets the rule")
    order = np.lexsort((b[idx], a[idx], np.abs(a[idx] - b[idx]), padding[idx], cost[idx]))
    return int(idx[order[0]])


def _shapely(a: np.ndarray, b: np.ndarray, max_aspect: float | None) -> np.ndarray:
    if max_aspect is None:
        return np.ones(a.shape, dtype=bool)
    return np.maximum(a, b) <= max_aspect * np.minimum(a, b)


@functools.lru_cache(maxsize=4096)  # pure: profile, its table and its figures ask for the same stages
def best_window(size: Size, C: int, min_keys: int = DEFAULT_MIN_KEYS,
                max_aspect: float | None = DEFAULT_MAX_ASPECT) -> Size:
    """The cheapest LSA window (m, n) on a map of `size` whose m·n holds the required keys,
    with sides at most `max_aspect` apart (None: any shape). Where no window of that shape
    holds the keys (a thin map), any shape is allowed."""
    H, W = size
    m, n = _grid(size)
    pad = (-(-H // m) * m) * (-(-W // n) * n) - H * W
    keys = m * n >= required_keys(size, min_keys)
    return _pick(lsa_costs(size, C, m, n), keys, _shapely(m, n, max_aspect), pad, m, n)


@functools.lru_cache(maxsize=4096)
def best_ratio(size: Size, C: int, subsample: str, min_keys: int = DEFAULT_MIN_KEYS,
               max_aspect: float | None = DEFAULT_MAX_ASPECT) -> Size:
    """The cheapest GSA ratio (k1, k2) on a map of `size` that keeps the required keys, with
    k1, k2 at most `max_aspect` apart (None: any shape; also where no such ratio keeps them)."""
    H, W = size
    k1, k2 = _grid(size)
    pad = (-(-H // k1) * k1) * (-(-W // k2) * k2) - H * W
    keys = gsa_keys(size, k1, k2) >= required_keys(size, min_keys)
    return _pick(gsa_costs(size, C, subsample, k1, k2), keys, _shapely(k1, k2, max_aspect), pad, k1, k2)


def _pick(cost, keys, shapely, pad, a, b) -> Size:
    ok = keys & shapely
    i = _argmin(cost, ok if ok.any() else keys, pad, a, b)
    return int(a[i]), int(b[i])


# ---- per stage -------------------------------------------------------------------------

@dataclass(frozen=True)
class StageOptimum:
    """One stage at one input size: its configured window / k and the cost-optimal ones.

    MACs are for the whole stage (every LSA / GSA block), batch 1, window- or k-dependent
    terms only (see the module doc). `extra_*` = configured - optimal: what the configured
    choice costs above the optimum, in MACs, in % of the stage's MACs and of the model's
    (negative when the configured choice breaks the minimum-keys rule and is cheaper).
    """

    stage: int
    map_h: int
    map_w: int
    lsa_blocks: int
    gsa_blocks: int
    window: Size | None  # configured LSA window, clamped to the map (None: no LSA block)
    best_window: Size | None
    k: Size | None  # configured GSA ratio (None: no GSA block)
    best_k: Size | None
    lsa_keys: int | None
    best_lsa_keys: int | None
    gsa_keys: int | None
    best_gsa_keys: int | None
    attn_macs: int  # configured, window/k-dependent MACs of the stage
    best_attn_macs: int
    stage_macs: int  # every MAC of the stage as configured (patch embedding, blocks, PEG)
    model_macs: int
    required_keys: int

    @property
    def extra_macs(self) -> int:
        return self.attn_macs - self.best_attn_macs

    @property
    def extra_pct_stage(self) -> float:
        return 100 * self.extra_macs / self.stage_macs if self.stage_macs else 0.0

    @property
    def extra_pct_model(self) -> float:
        return 100 * self.extra_macs / self.model_macs if self.model_macs else 0.0

    @property
    def optimal(self) -> bool:
        return self.extra_macs == 0

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("window", "best_window", "k", "best_k"):
            d[key] = None if d[key] is None else list(d[key])
        d.update(extra_macs=self.extra_macs, extra_pct_stage=self.extra_pct_stage,
                 extra_pct_model=self.extra_pct_model)
        return d


def stage_optima(cfg: ArchConfig, resolution: Resolution, min_keys: int = DEFAULT_MIN_KEYS,
                 max_aspect: float | None = DEFAULT_MAX_ASPECT) -> list[StageOptimum]:
    """Configured vs cost-optimal window and k of every stage of `cfg` at `resolution`
    (an int or (H, W)) under the minimum-keys rule (see `best_window`, `best_ratio`)."""
    check_rule(min_keys, max_aspect)
    in_size = as_size(resolution)
    sizes = cfg.stage_sizes(in_size)
    model_macs, totals = analytic_flops(cfg, in_size).total, stage_macs(cfg, in_size)
    out = []
    for i, (s, size) in enumerate(zip(cfg.stages, sizes)):
        kinds = s.block_types
        n_l, n_g = kinds.count("L"), kinds.count("G")
        C = s.embed_dim
        win = best = k = best_k = None
        attn = best_attn = 0
        lk = blk = gk = bgk = None
        if n_l:
            win, best = s.lsa_window(size), best_window(tuple(size), C, min_keys, max_aspect)
            attn += n_l * int(lsa_costs(size, C, *win))
            best_attn += n_l * int(lsa_costs(size, C, *best))
            lk, blk = win[0] * win[1], best[0] * best[1]
        if n_g:
            k, best_k = s.sr_pair, best_ratio(tuple(size), C, s.subsample, min_keys, max_aspect)
            attn += n_g * int(gsa_costs(size, C, s.subsample, *k))
            best_attn += n_g * int(gsa_costs(size, C, s.subsample, *best_k))
            gk, bgk = int(gsa_keys(size, *k)), int(gsa_keys(size, *best_k))
        out.append(StageOptimum(
            stage=i, map_h=size[0], map_w=size[1], lsa_blocks=n_l, gsa_blocks=n_g, window=win, best_window=best,
            k=k, best_k=best_k, lsa_keys=lk, best_lsa_keys=blk, gsa_keys=gk, best_gsa_keys=bgk,
            attn_macs=attn, best_attn_macs=best_attn, stage_macs=totals[i],
            model_macs=model_macs, required_keys=required_keys(size, min_keys)))
    return out


def stage_curves(stage: StageConfig, size: Size, max_side: int | None = None) -> dict:
    """Window- and k-dependent MACs of one stage (all its LSA / GSA blocks) for square windows
    s x s and square ratios k x k, s, k = 1..max_side (default: the map's longer side):
    {"side": [...], "lsa": [...] or None, "gsa": [...] or None}."""
    kinds = stage.block_types
    n_l, n_g = kinds.count("L"), kinds.count("G")
    side = np.arange(1, (max_side or max(size)) + 1, dtype=np.int64)
    C = stage.embed_dim
    return dict(side=side.tolist(),
                lsa=(n_l * lsa_costs(size, C, side, side)).tolist() if n_l else None,
                gsa=(n_g * gsa_costs(size, C, stage.subsample, side, side)).tolist() if n_g else None)


def attention_cut(cfg: ArchConfig, retargeted: ArchConfig, resolution: Resolution) -> dict:
    """Attention matmul MACs (LSA + GSA) and total MACs of `cfg` and of its retargeted copy at
    `resolution`, and the cut in %."""
    a, b = analytic_flops(cfg, resolution), analytic_flops(retargeted, resolution)
    return dict(attn_macs=a.attention, retargeted_attn_macs=b.attention,
                attn_cut_pct=100 * (1 - b.attention / a.attention) if a.attention else 0.0,
                macs=a.total, retargeted_macs=b.total, macs_cut_pct=100 * (1 - b.total / a.total))


def as_field(pair: Size):
    """A (k1, k2) pair as a config value: an int when square (as the presets write k)."""
    return pair[0] if pair[0] == pair[1] else list(pair)
