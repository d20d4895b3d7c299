"""Retarget an architecture to a deployment size: every stage's LSA window and GSA ratio k set
to its cost optimum there (`optimum.stage_optima`), every other field unchanged.

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
* ``dropped``: the sub-sampler disappears (k > 1 -> 1); its tensors are left out.

`retarget(..., keep_weights=True)` changes k only where the checkpoint stays as-is.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import ArchConfig, StageConfig
from ..sizes import Resolution, as_size
from .window_optimum import DEFAULT_MAX_ASPECT, DEFAULT_MIN_KEYS, StageOptimum, as_field, stage_optima

if TYPE_CHECKING:
    import torch

WEIGHT_CASES = ("as-is", "resampled", "new", "dropped")


def weight_change(old: StageConfig, new: StageConfig) -> str:
    """How a checkpoint of a stage `old` fits the stage `new` (same but for window / k)."""
    if "G" not in old.block_types or old.sr_pair == new.sr_pair:
        return "as-is"
    was, now = old.sr_pair != (1, 1), new.sr_pair != (1, 1)
    if was and now:
        return "as-is" if old.subsample == "avgpool" else "resampled"
    return "new" if now else "dropped"


@dataclass(frozen=True)
class Retargeted:
    """The retargeted config, the per-stage optima it came from and the weight case per stage."""

    config: ArchConfig
    optima: list[StageOptimum]
    weights: list[str]

    @property
    def loads_as_is(self) -> bool:
        return all(w == "as-is" for w in self.weights)


def retarget(cfg: ArchConfig, resolution: Resolution, min_keys: int = DEFAULT_MIN_KEYS,
             max_aspect: float | None = DEFAULT_MAX_ASPECT, keep_weights: bool = False,
             name: str | None = None) -> Retargeted:
    """`cfg` with every stage's window (stages with LSA blocks) and k (stages with GSA blocks)
    set to the cost optimum at `resolution` under the minimum-keys rule. With `keep_weights`,
    k changes only where a checkpoint of `cfg` still loads as-is. The name becomes
    `<name>@<H>x<W>` unless `name` is given."""
    H, W = as_size(resolution)
    optima = stage_optima(cfg, (H, W), min_keys, max_aspect)
    stages, cases = [], []
    for s, o in zip(cfg.stages, optima):
        changes: dict = {}
        if o.best_window is not None:
            changes["window"] = list(o.best_window)
        if o.best_k is not None:
            changes["sr_ratio"] = as_field(o.best_k)
        new = StageConfig(**{**s.model_dump(mode="json"), **changes})
        if keep_weights and weight_change(s, new) != "as-is":
            new = StageConfig(**{**new.model_dump(mode="json"), "sr_ratio": s.model_dump(mode="json")["sr_ratio"]})
        stages.append(new.model_dump(mode="json"))
        cases.append(weight_change(s, new))
    new_cfg = cfg.replace(stages=stages, name=name if name is not None else f"{cfg.name or 'model'}@{H}x{W}")
    return Retargeted(config=new_cfg, optima=optima, weights=cases)


# ---- checkpoints ---------------------------------------------------------------------------

_SR_KEY = re.compile(r"^(?P<prefix>(?:.*\.)?)blocks\.(?P<stage>\d+)\.(?P<block>\d+)\.attn\.(?P<part>sr|norm)\.")


def adapt_state_dict(state_dict: dict[str, torch.Tensor], old: ArchConfig, new: ArchConfig,
                     prefix: str = "") -> dict[str, torch.Tensor]:
    """A state dict of a model of `old` made to load strictly into the same model built from
    `new` (`retarget`'s output: only windows and k differ). Sub-sampling kernels are resized,
    new sub-samplers start as a cell mean, removed ones are left out (see the module doc).
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
        if case == "dropped":
            continue
        if case == "resampled" and m["part"] == "sr" and t.dim() == 4 and tuple(t.shape[-2:]) != (1, 1):
            t = resample_patch_embed(t.float(), list(new.stages[i].sr_pair), verbose=False).to(t.dtype)
        out[key] = t
    for i, (o, n) in enumerate(zip(old.stages, new.stages)):
        if weight_change(o, n) != "new":
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
            out[base + "norm.weight"] = torch.ones(C)
            out[base + "norm.bias"] = torch.zeros(C)
    return out
