"""Window / k optimality of several architectures at several input sizes, as tables.

`optimality_table` has one row per model x size x stage: the configured LSA window and GSA
ratio k, the cost-optimal ones under the minimum-keys rule (`models.optimum`), their
window/k-dependent MACs and the configured choice's extra cost in % of the stage and of the
model. `retarget_columns` gives, per model x size, what retargeting every stage saves.
All closed form: no model is built.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

from ..config import ArchConfig
from ..models.retarget import retarget
from ..models.window_optimum import DEFAULT_MAX_ASPECT, DEFAULT_MIN_KEYS, attention_cut, stage_optima
from ..sizes import Resolution, as_size, format_size


def _pair_text(p) -> str | None:
    return None if p is None else f"{p[0]}x{p[1]}"


def optimality_table(configs: Mapping[str, ArchConfig], sizes: Iterable[Resolution], min_keys: int = DEFAULT_MIN_KEYS,
                     max_aspect: float | None = DEFAULT_MAX_ASPECT) -> pd.DataFrame:
    """One row per model x size x stage (see the module doc); MACs at batch 1."""
    return pd.DataFrame(optimality_rows(configs, sizes, min_keys, max_aspect))


def optimality_rows(configs: Mapping[str, ArchConfig], sizes: Iterable[Resolution], min_keys: int = DEFAULT_MIN_KEYS,
                    max_aspect: float | None = DEFAULT_MAX_ASPECT) -> list[dict]:
    """The rows of `optimality_table` as plain data (None where a stage has no LSA or GSA block)."""
    rows = []
    for name, cfg in configs.items():
        for size in sizes:
            hw = as_size(size)
            for o in stage_optima(cfg, hw, min_keys, max_aspect):
                rows.append(dict(
                    model=name, size=format_size(hw), height=hw[0], width=hw[1], stage=o.stage + 1,
                    map=f"{o.map_h}x{o.map_w}", lsa_blocks=o.lsa_blocks, gsa_blocks=o.gsa_blocks,
                    window=_pair_text(o.window), best_window=_pair_text(o.best_window), k=_pair_text(o.k),
                    best_k=_pair_text(o.best_k), lsa_keys=o.lsa_keys, best_lsa_keys=o.best_lsa_keys,
                    gsa_keys=o.gsa_keys, best_gsa_keys=o.best_gsa_keys, required_keys=o.required_keys,
                    attn_gmacs=o.attn_macs / 1e9, best_attn_gmacs=o.best_attn_macs / 1e9,
                    extra_gmacs=o.extra_macs / 1e9, extra_pct_stage=o.extra_pct_stage,
                    extra_pct_model=o.extra_pct_model, stage_gmacs=o.stage_macs / 1e9, optimal=o.optimal,
                    min_keys=min_keys, max_aspect=max_aspect))
    return rows


def retarget_columns(cfg: ArchConfig, size: Resolution, min_keys: int = DEFAULT_MIN_KEYS,
                     max_aspect: float | None = DEFAULT_MAX_ASPECT) -> dict:
    """What retargeting `cfg` to `size` saves (closed form): the attention matmuls' GMACs after
    and their cut in %, the GMACs saved in all (only the backbone changes), and the weight case
    of every stage (`models.retarget.weight_change`). Every stage at its cost optimum with its
    configured sub-sampling function (no parameter budget): the GMACs saved are the sum of the
    optimality table's extra costs."""
    res = retarget(cfg, size, min_keys, max_aspect, max_params_growth=None)
    cut = attention_cut(cfg, res.config, size)
    return dict(retarget_attn_gmacs=cut["retargeted_attn_macs"] / 1e9, retarget_attn_cut_pct=cut["attn_cut_pct"],
                retarget_gmacs_cut=(cut["macs"] - cut["retargeted_macs"]) / 1e9,
                retarget_weights=",".join(res.weights))
