"""The parameter budget of `retarget`: which GSA sub-sampling function (and k) every stage
keeps so that the retargeted model's parameters stay within `max_params_growth` x the
original's.

A `conv` sub-sampler's kernel is (C, C, k1, k2): its parameters grow with k1·k2, so the
cost-optimal k at a large size multiplies a model's parameters. `dwconv` (depthwise
(C, 1, k1, k2) + pointwise C x C) grows with C·k1·k2 only, `avgpool` has no weights; both
sub-sample the same cells, so at the same k the attention matmuls (2·N·M·C, M keys) are the
same and the sub-sampler's own MACs are lower (M·C·k1k2 + M·C² and 0 vs M·C²·k1k2).

The rule, per stage with GSA blocks whose k moves: the candidates are the cost-optimal k with
the configured function or a lighter one (conv -> dwconv -> avgpool), and the configured k
and function (the stage unchanged but for its window). Of every combination over the stages
that fits the budget, `fit_budget` takes the one with

1. the fewest attention matmul MACs (LSA + GSA, `FlopReport.attention`): k moves wherever
   some function fits;
2. then the least change of function: the sum over stages of how many steps along
   conv -> dwconv -> avgpool the function moved (0: configured kept);
3. then the fewest parameters.

Windows carry no parameters and always move.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

from ..config import ArchConfig, ConfigError, StageConfig
from ..sizes import Size, format_pair
from .cost_model import analytic_params, stage_parts

DEFAULT_MAX_PARAMS_GROWTH = 1.1
# sub-sampling functions from the most to the fewest parameters at a given k
SUBSAMPLE_ORDER = ("conv", "dwconv", "avgpool")


def check_growth(max_params_growth: float | None) -> float | None:
    """`max_params_growth` as the budget uses it: None (or inf) = no budget; a bad value (not a
    number more than 0) is a one-line ConfigError."""
    if max_params_growth is None or max_params_growth == math.inf:
        return None
    if not (isinstance(max_params_growth, int | float) and max_params_growth > 0):
        raise ConfigError(f"max_params_growth={max_params_growth!r}: must be a number more than 0 (1.1: the "
                          "parameters grow at most 10 %; inf: no budget)", field="max_params_growth")
    return float(max_params_growth)


@dataclass(frozen=True)
class StageChoice:
    """What one stage keeps under the budget: its sub-sampling function and k before -> after,
    the parameters the stage adds and why (`reason`, one line)."""

    stage: int
    subsample: tuple[str, str]
    k: tuple[Size, Size]
    added_params: int
    reason: str

    def to_dict(self) -> dict:
        return dict(stage=self.stage, subsample=list(self.subsample), k=[list(self.k[0]), list(self.k[1])],
                    added_params=self.added_params, reason=self.reason)


@dataclass(frozen=True)
class BudgetFit:
    """The stages `fit_budget` chose, one `StageChoice` each, the parameters before and after,
    the limit (None: no budget) and the smallest growth any choice reaches."""

    stages: list[StageConfig]
    choices: list[StageChoice]
    params: tuple[int, int]
    limit: int | None
    max_params_growth: float | None
    smallest_growth: float

    @property
    def growth(self) -> float:
        return self.params[1] / self.params[0]

    def to_dict(self) -> dict:
        return dict(max_params_growth=self.max_params_growth, params=list(self.params), growth=self.growth,
                    stages=[c.to_dict() for c in self.choices])


@dataclass(frozen=True)
class _Option:
    stage: StageConfig
    rank: int  # steps along SUBSAMPLE_ORDER from the configured function
    added: int  # parameters added to the stage
    attn: int  # attention matmul MACs of the stage


def _with(stage: StageConfig, **changes) -> StageConfig:
    return StageConfig(**{**stage.model_dump(mode="json"), **changes})


def _stage_params(cfg: ArchConfig, i: int, stage: StageConfig) -> int:
    stages = [s.model_dump(mode="json") for s in cfg.stages]
    stages[i] = stage.model_dump(mode="json")
    return analytic_params(cfg.replace(stages=stages), by_stage=True)[i]


def _stage_attn(cfg: ArchConfig, i: int, stage: StageConfig, size: Size) -> int:
    stages = [s.model_dump(mode="json") for s in cfg.stages]
    stages[i] = stage.model_dump(mode="json")
    parts = stage_parts(cfg.replace(stages=stages), size)[i]
    return sum(p.get("lsa_matmul", 0) + p.get("gsa_matmul", 0) for p in parts)


def _options(cfg: ArchConfig, i: int, target: StageConfig, size: Size,
             allowed: Callable[[StageConfig, StageConfig], bool]) -> list[_Option]:
    old = cfg.stages[i]
    base = _stage_params(cfg, i, old)
    kept = _with(target, sr_ratio=old.model_dump(mode="json")["sr_ratio"], subsample=old.subsample)
    stages = [kept]
    if "G" in old.block_types and target.sr_pair != old.sr_pair:
        lighter = SUBSAMPLE_ORDER[SUBSAMPLE_ORDER.index(old.subsample):]
        stages += [_with(target, subsample=f) for f in lighter]
    out = []
    for s in stages:
        if s is not kept and not allowed(old, s):
            continue
        rank = SUBSAMPLE_ORDER.index(s.subsample) - SUBSAMPLE_ORDER.index(old.subsample)
        out.append(_Option(s, rank, _stage_params(cfg, i, s) - base, _stage_attn(cfg, i, s, size)))
    return out


def _m(n: int) -> str:
    return f"{n / 1e6:.2f} M"


def _reason(old: StageConfig, target: StageConfig, opts: list[_Option], chosen: _Option, left: int | None) -> str:
    """Why a stage kept `chosen` (`left`: the parameters the budget leaves this stage given the
    other stages' choices; None: no budget)."""
    if "G" not in old.block_types:
        return "no GSA block"
    k_old, k_new = format_pair(old.sr_pair), format_pair(target.sr_pair)
    if target.sr_pair == old.sr_pair:
        return f"k={k_old} is the optimum already"
    moved = [o for o in opts if o.stage.sr_pair != old.sr_pair]
    if not moved:
        return f"k stays {k_old}: a checkpoint loads as it is (keep_weights)"
    budget = "no budget" if left is None else f"budget left {_m(left)}"
    tried = [o for o in moved if o.rank < chosen.rank] if chosen in moved else moved
    if chosen.stage.sr_pair == old.sr_pair:
        funcs = " / ".join(o.stage.subsample for o in tried)
        adds = " / ".join(_m(o.added) for o in tried)
        return f"{funcs} at k={k_new} would add {adds} params ({budget}): k stays {k_old}, {old.subsample}"
    if not tried:
        return f"{chosen.stage.subsample} at k={k_new} adds {_m(chosen.added)} params ({budget}): kept"
    funcs = " / ".join(o.stage.subsample for o in tried)
    adds = " / ".join(_m(o.added) for o in tried)
    return (f"{funcs} at k={k_new} would add {adds} params ({budget}): {chosen.stage.subsample}, "
            f"{chosen.added / 1e6:+.2f} M")


def fit_budget(cfg: ArchConfig, targets: list[StageConfig], size: Size, max_params_growth: float | None,
               allowed: Callable[[StageConfig, StageConfig], bool] = lambda old, new: True) -> BudgetFit:
    """The stages of `cfg` moved towards `targets` (each stage's cost-optimal window and k with
    its configured function) as far as the parameter budget allows, by the rule of the module
    doc. `size` is the input size (for the attention MACs); `allowed(old, new)` rules a stage
    out (e.g. one a checkpoint would not load into). A budget no combination meets is a
    one-line ConfigError naming the smallest growth that is reachable."""
    growth = check_growth(max_params_growth)
    before = analytic_params(cfg)
    limit = None if growth is None else math.floor(growth * before + 1e-9 * before)
    options = [_options(cfg, i, t, size, allowed) for i, t in enumerate(targets)]
    smallest = before + sum(min(o.added for o in opts) for opts in options)
    if limit is not None and smallest > limit:
        low = math.ceil(smallest / before * 1e4) / 1e4
        raise ConfigError(f"max_params_growth={growth:g}: no choice of k and sub-sampling keeps the parameters within "
                          f"it; the smallest growth achievable is {low:.4f} ({_m(before)} -> {_m(smallest)})",
                          field="max_params_growth")
    best: tuple | None = None
    for combo in itertools.product(*options):
        added = sum(o.added for o in combo)
        if limit is not None and before + added > limit:
            continue
        key = (sum(o.attn for o in combo), sum(o.rank for o in combo), added)
        if best is None or key < best[0]:
            best = (key, combo)
    assert best is not None  # the smallest combination fits
    combo = best[1]
    total = sum(o.added for o in combo)
    choices = []
    for i, (old, target, opts, o) in enumerate(zip(cfg.stages, targets, options, combo)):
        left = None if limit is None else limit - before - (total - o.added)
        choices.append(StageChoice(stage=i + 1, subsample=(old.subsample, o.stage.subsample),
                                   k=(old.sr_pair, o.stage.sr_pair), added_params=o.added,
                                   reason=_reason(old, target, opts, o, left)))
    return BudgetFit(stages=[o.stage for o in combo], choices=choices, params=(before, before + total), limit=limit,
                     max_params_growth=growth, smallest_growth=smallest / before)
