"""A plain-data summary of an architecture at an input size (what `twins-nas show` prints)."""
from __future__ import annotations

from .config import ArchConfig
from .models.head_cost import analytic_flops, analytic_params  # closed form: no model is built
from .sizes import Size, as_size


def summarize(cfg: ArchConfig, resolution: int | Size) -> dict:
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
            win = f"{s.window[0]}x{s.window[1]}" + (f" (used {eff[0]}x{eff[1]})" if eff != tuple(s.window) else "")
        k = "-"
        if has_g:
            k1, k2 = s.sr_pair
            k = "1 (global)" if (k1, k2) == (1, 1) else (f"{k1}" if k1 == k2 else f"{k1}x{k2}") + f" {s.subsample}"
        rows.append(dict(stage=i + 1, map=size_i, embed_dim=s.embed_dim, num_heads=s.num_heads, mlp_ratio=s.mlp_ratio,
                         blocks=" ".join(s.block_types), window=win, subsample=k, params=pstage[i]))
    return dict(size=size, stages=rows, params=analytic_params(cfg), gmacs=analytic_flops(cfg, size).total / 1e9)
