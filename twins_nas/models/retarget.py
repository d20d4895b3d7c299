"""Retarget an architecture to a deployment size: every stage's LSA window and GSA ratio k set
to its cost optimum there (`optimum.stage_optima`), within a parameter budget
(`param_budget.fit_budget`: where a conv sub-sampler at that k would grow the parameters past
`max_params_growth` x the original's, the stage sub-samples with dwconv or avgpool, or keeps
its k), every other field unchanged.

Windows carry no parameters, so a new window never affects a checkpoint. k does when the
sub-sampler has weights: GSA's `sr` conv (conv: (C, C, k1, k2); dwconv: depthwise
(C, 1, k1, k2)) changes shape with k, and going from k = 1 (plain global attention) to k > 1
adds a sub-sampler and its LayerNorm (going back removes them). `weight_change` says which
case applies per stage:

* ``as-is``: the checkpoint's tensors fit unchanged (windows only, same k, or avgpool k > 1
  to another k > 1);
* ``resampled``: the sub-sampling kernel is resized to the new k by `adapt_state_dict`
  (timm's `resample_patch_embed`, the pseudo-inverse resize FlexiViT uses for patch
  embeddings, which a kernel = stride conv is): a starting point to fine-tune from;
* ``new``: a sub-sampler appears; `adapt_state_dict` starts it as a mean over each cell
  (conv: identity / (k1·k2); dwconv: 1 / (k1·k2), pointwise identity) and its LayerNorm at
  weight 1, bias 0;
* ``dropped``: the sub-sampler disappears (k > 1 -> 1); its tensors are left out;
* ``replaced``: the sub-sampling function changes (the parameter budget): the old
  sub-sampler's tensors are left out, the new one starts as for ``new``, and the LayerNorm
  after it keeps its weights.

`retarget(..., keep_weights=True)` changes k only where the checkpoint stays as-is.

`retarget_config(..., head=...)` also counts the dense model (the backbone under that head)
before and after; the parameter budget stays measured on the classifier model of the config.
"""
from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..config import ArchConfig, ConfigError, StageConfig, load_config
from ..sizes import Resolution, Size, as_size, format_size, parse_size
from . import head_cost
from .cost_model import FlopReport, analytic_flops, analytic_params, stage_macs
from .head_config import DenseHead, head_config
from .param_budget import DEFAULT_MAX_PARAMS_GROWTH, BudgetFit, StageChoice, check_growth, fit_budget
from .window_optimum import (
    DEFAULT_MAX_ASPECT,
    DEFAULT_MIN_KEYS,
    StageOptimum,
    as_field,
    check_rule,
    gsa_keys,
    stage_optima,
)

if TYPE_CHECKING:
    import torch

WEIGHT_CASES = ("as-is", "resampled", "new", "dropped", "replaced")


def weight_change(old: StageConfig, new: StageConfig) -> str:
    """How a checkpoint of a stage `old` fits the stage `new` (same but for window, k and the
    sub-sampling function)."""
    was, now = old.sr_pair != (1, 1), new.sr_pair != (1, 1)
    if "G" not in old.block_types or (old.sr_pair == new.sr_pair and (old.subsample == new.subsample or not was)):
        return "as-is"
    if was and now:
        if old.subsample != new.subsample:
            return "replaced"
        return "as-is" if old.subsample == "avgpool" else "resampled"
    return "new" if now else "dropped"


@dataclass(frozen=True)
class Retargeted:
    """The retargeted config, the per-stage optima it came from, the weight case per stage and
    what the parameter budget kept per stage (`budget`)."""

    config: ArchConfig
    optima: list[StageOptimum]
    weights: list[str]
    budget: BudgetFit

    @property
    def loads_as_is(self) -> bool:
        return all(w == "as-is" for w in self.weights)


def retarget(cfg: ArchConfig, resolution: Resolution, min_keys: int = DEFAULT_MIN_KEYS,
             max_aspect: float | None = DEFAULT_MAX_ASPECT, keep_weights: bool = False,
             name: str | None = None,
             max_params_growth: float | None = DEFAULT_MAX_PARAMS_GROWTH) -> Retargeted:
    """`cfg` with every stage's window (stages with LSA blocks) and k (stages with GSA blocks)
    set to the cost optimum at `resolution` under the minimum-keys rule, the parameters kept
    within `max_params_growth` x those of `cfg` (None: no budget) by the rule of
    `param_budget`. With `keep_weights`, k and the sub-sampling function change only where a
    checkpoint of `cfg` still loads as-is. The name becomes `<name>@<H>x<W>` unless `name` is
    given."""
    H, W = as_size(resolution)
    optima = stage_optima(cfg, (H, W), min_keys, max_aspect)
    targets = []
    for s, o in zip(cfg.stages, optima):
        changes: dict = {}
        if o.best_window is not None:
            changes["window"] = list(o.best_window)
        if o.best_k is not None:
            changes["sr_ratio"] = as_field(o.best_k)
        targets.append(StageConfig(**{**s.model_dump(mode="json"), **changes}))
    fit = fit_budget(cfg, targets, (H, W), max_params_growth,
                     allowed=(lambda old, new: weight_change(old, new) == "as-is") if keep_weights else _any)
    stages = [s.model_dump(mode="json") for s in fit.stages]
    cases = [weight_change(s, new) for s, new in zip(cfg.stages, fit.stages)]
    new_cfg = cfg.replace(stages=stages, name=name if name is not None else f"{cfg.name or 'model'}@{H}x{W}")
    return Retargeted(config=new_cfg, optima=optima, weights=cases, budget=fit)


def _any(old: StageConfig, new: StageConfig) -> bool:
    return True


# ---- retargeting a config file, with its costs before and after --------------------------------

class StageTimes(Protocol):
    """Measured forward time of every stage (as `twins_nas.profile.stage_time.StageTiming`)."""

    @property
    def stage_ms(self) -> list[float]: ...
    @property
    def repeats(self) -> int: ...
    @property
    def device(self) -> str: ...

    @property
    def total_ms(self) -> float: ...


# timer(config, size, budget seconds) -> the stages' times (e.g. `profile.stage_time.stage_latency` on a device)
StageTimer = Callable[[ArchConfig, Size, float], StageTimes]


@dataclass(frozen=True)
class StageChange:
    """One stage before -> after: its map, LSA window, GSA ratio k and GSA keys per query (None:
    no such block), how a checkpoint's tensors fit, its sub-sampling function and why the
    parameter budget kept it (`choice`), its MACs and measured ms (None: not timed)."""

    stage: int
    map: Size
    window: tuple[Size | None, Size | None]
    k: tuple[Size | None, Size | None]
    gsa_keys: tuple[int | None, int | None]
    weights: str
    choice: StageChoice
    macs: tuple[int, int]
    ms: tuple[float, float] | None


@dataclass(frozen=True)
class RetargetReport:
    """A config retargeted to a size (`retarget_config`): the original (`name` as messages show it),
    the result, the rule it used, the parameter budget (`max_params_growth`, None: none),
    per-stage changes, model MACs and params before and after, the measured times (None: not
    timed) and the JSON it was written to; with a dense `head`, that dense model's MACs
    (`dense_flops`, split into backbone, neck and head in `parts`) and params before and after
    (None without a head)."""

    name: str
    original: ArchConfig
    result: Retargeted
    size: Size
    min_keys: int
    max_aspect: float | None
    keep_weights: bool
    max_params_growth: float | None
    stages: list[StageChange]
    flops: tuple[FlopReport, FlopReport]
    params: tuple[int, int]
    times: tuple[StageTimes, StageTimes] | None
    path: Path
    head: DenseHead | None = None
    dense_flops: tuple[FlopReport, FlopReport] | None = None
    dense_params: tuple[int, int] | None = None

    @property
    def config(self) -> ArchConfig:
        return self.result.config

    def meta(self) -> dict:
        """The `meta` entry of the written JSON; with a head, `dense`: the head, its classes and
        the dense model's MACs and params before and after."""
        meta = dict(retargeted_from=self.name, size=list(self.size), min_keys=self.min_keys,
                    max_aspect=self.max_aspect, keep_weights=self.keep_weights, weights=self.result.weights,
                    max_params_growth=self.max_params_growth, params=list(self.params),
                    stages=[s.choice.to_dict() for s in self.stages])
        if self.head is not None and self.dense_flops is not None and self.dense_params is not None:
            meta["dense"] = dict(head=self.head.type, num_classes=self.head.num_classes,
                                 macs=[f.total for f in self.dense_flops], params=list(self.dense_params))
        return meta


def default_path(cfg: ArchConfig) -> Path:
    """Where a retargeted config goes by default: `<name>@<H>x<W>.json` in the working folder."""
    assert cfg.name is not None  # retarget_config names the config it makes
    return Path(re.sub(r"[^\w.@-]+", "_", cfg.name) + ".json")


def retarget_config(source: str, size: Resolution | str, min_keys: int = DEFAULT_MIN_KEYS,
                    max_aspect: float | None = DEFAULT_MAX_ASPECT, keep_weights: bool = False,
                    index: int | None = None, timer: StageTimer | None = None, budget: float = 20.0,
                    out: str | Path | None = None,
                    status: Callable[[str], contextlib.AbstractContextManager] | None = None,
                    max_params_growth: float | None = DEFAULT_MAX_PARAMS_GROWTH,
                    head: head_cost.HeadLike = None) -> RetargetReport:
    """Retarget a preset or config JSON (`source`, entry `index`) to `size` (n, (H, W) or 'HxW')
    within the parameter budget `max_params_growth` (None or inf: none; measured on the config's
    classifier model, with or without `head`), see `retarget`; count MACs and params before and
    after, time every stage of both models with `timer` (`budget` seconds each) when given, and
    write the new config with its `meta` to `out` (default `default_path`). With `head` (a name
    of `HEADS`, a dict or a head config), also the dense model's MACs and params before and
    after. `status(text)` is a context shown while a model is timed."""
    hw = parse_size(size, field="size")
    hc = head_config(head)
    check_rule(min_keys, max_aspect)
    growth = check_growth(max_params_growth)
    if not budget > 0:
        raise ConfigError(f"budget {budget:g}: must be more than 0 seconds", field="budget")
    cfg = load_config(source, index=index)
    cfg.stage_sizes(hw)  # one line when too small
    name = cfg.name or source
    res = retarget(cfg, hw, min_keys, max_aspect, keep_weights, max_params_growth=growth)
    new = res.config
    times = None
    if timer is not None:
        with (status or contextlib.nullcontext)(f"timing {name} at {format_size(hw)} (budget {budget:g} s)"):
            before = timer(cfg, hw, budget)
        with (status or contextlib.nullcontext)(f"timing the retargeted model (budget {budget:g} s)"):
            times = (before, timer(new, hw, budget))
    macs_after = stage_macs(new, hw)
    stages = []
    for i, (o, s_new) in enumerate(zip(res.optima, new.stages)):
        win_new = s_new.lsa_window((o.map_h, o.map_w)) if o.window is not None else None
        k_new = s_new.sr_pair if o.k is not None else None
        keys_new = None if k_new is None else int(gsa_keys((o.map_h, o.map_w), *k_new))
        stages.append(StageChange(stage=i + 1, map=(o.map_h, o.map_w), window=(o.window, win_new), k=(o.k, k_new),
                                  gsa_keys=(o.gsa_keys, keys_new), weights=res.weights[i],
                                  choice=res.budget.choices[i],
                                  macs=(o.stage_macs, macs_after[i]),
                                  ms=None if times is None else (times[0].stage_ms[i], times[1].stage_ms[i])))
    report = RetargetReport(name=name, original=cfg, result=res, size=hw, min_keys=min_keys, max_aspect=max_aspect,
                            keep_weights=keep_weights, max_params_growth=growth, stages=stages,
                            flops=(analytic_flops(cfg, hw), analytic_flops(new, hw)),
                            params=(analytic_params(cfg), analytic_params(new)), times=times,
                            path=Path(out) if out is not None else default_path(new), head=hc,
                            dense_flops=None if hc is None else (head_cost.analytic_flops(cfg, hw, head=hc),
                                                                 head_cost.analytic_flops(new, hw, head=hc)),
                            dense_params=None if hc is None else (head_cost.analytic_params(cfg, head=hc),
                                                                  head_cost.analytic_params(new, head=hc)))
    new.to_json(report.path, meta=report.meta())
    return report


# ---- checkpoints ---------------------------------------------------------------------------

_SR_KEY = re.compile(r"^(?P<prefix>(?:.*\.)?)blocks\.(?P<stage>\d+)\.(?P<block>\d+)\.attn\.(?P<part>sr|norm)\.")


def adapt_state_dict(state_dict: dict[str, torch.Tensor], old: ArchConfig, new: ArchConfig,
                     prefix: str = "") -> dict[str, torch.Tensor]:
    """A state dict of a model of `old` made to load strictly into the same model built from
    `new` (`retarget`'s output: only windows, k and sub-sampling functions differ). Sub-sampling
    kernels are resized, new or replaced sub-samplers start as a cell mean, removed ones are
    left out (see the module doc).
    `prefix` is what precedes `blocks.` in the keys (e.g. 'backbone.' for a segmentation
    model's state dict)."""
    import torch  # heavy import: see README
    from timm.layers import resample_patch_embed  # heavy import: see README

    if len(old.stages) != len(new.stages):
        raise ValueError(f"the configs have {len(old.stages)} and {len(new.stages)} stages: not a retarget")
    out = {}
    for key, t in state_dict.items():
        m = _SR_KEY.match(key)
        if m is None or m["prefix"] != prefix:
            out[key] = t
            continue
        i = int(m["stage"])
        case = weight_change(old.stages[i], new.stages[i])
        if case == "dropped" or (case == "replaced" and m["part"] == "sr"):
            continue
        if case == "resampled" and m["part"] == "sr" and t.dim() == 4 and tuple(t.shape[-2:]) != (1, 1):
            t = resample_patch_embed(t.float(), list(new.stages[i].sr_pair), verbose=False).to(t.dtype)
        out[key] = t
    for i, (o, n) in enumerate(zip(old.stages, new.stages)):
        case = weight_change(o, n)
        if case not in ("new", "replaced"):
            continue
        C, (k1, k2) = n.embed_dim, n.sr_pair
        for j, kind in enumerate(n.block_types):
            if kind != "G":
                continue
            base = f"{prefix}blocks.{i}.{j}.attn."
            eye = torch.eye(C)
            if n.subsample == "conv":
                out[base + "sr.weight"] = (eye / (k1 * k2))[:, :, None, None].expand(C, C, k1, k2).clone()
                out[base + "sr.bias"] = torch.zeros(C)
            elif n.subsample == "dwconv":
                out[base + "sr.dw.weight"] = torch.full((C, 1, k1, k2), 1.0 / (k1 * k2))
                out[base + "sr.pw.weight"] = eye[:, :, None, None].clone()
                out[base + "sr.pw.bias"] = torch.zeros(C)
            if case == "new":  # a replaced sub-sampler's LayerNorm keeps its weights
                out[base + "norm.weight"] = torch.ones(C)
                out[base + "norm.bias"] = torch.zeros(C)
    return out
