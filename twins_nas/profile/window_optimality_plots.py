"""The window / k optimality figure of one architecture (`optimality_figure`).

Two rows (one when the model has only LSA or only GSA blocks), one column per stage. Top:
the stage's LSA cost (window-dependent MACs of all its LSA blocks: the attention matmuls
over the padded map) against a square window's side s;
bottom: its GSA cost (k-dependent MACs of all its GSA blocks: matmuls, sub-sampling and its
norm, kv projection) against a square ratio's side k. One curve per input size; on each, the
configured choice (circle) and the cost optimum under the minimum-keys rule (star; a
non-square choice m x n is drawn at its cost, at x = √(mn)); a curve is faint where it keeps
fewer keys than the rule asks. The dotted vertical line is the
paper's law k1·k2 = √(HW) for that size: with one GSA key per LSA window, LSA + GSA is
cheapest at a window (and cell) of side (HW)^(1/4).

No LaTeX anywhere (MathJax would be fetched from the network); the page loads plotly.js from the
plotly.min.js beside it (`write_figure`).
"""
from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ..atomic import atomic_path, ensure_dir, write_text
from ..config import ArchConfig
from ..figures import write_figure
from ..models.window_optimum import (
    DEFAULT_MAX_ASPECT,
    DEFAULT_MIN_KEYS,
    gsa_costs,
    gsa_keys,
    law_side,
    lsa_costs,
    stage_curves,
    stage_optima,
)
from ..sizes import Resolution, as_size, format_size
from .window_optimality import optimality_rows

FIGURE_SIZES = (224, 512, 1024)  # drawn in every optimality figure, with the profiled sizes


def figure_sizes(sizes: Iterable[Resolution] = ()) -> list:
    """224, 512 and 1024 px squares plus `sizes`, by pixel count."""
    out = {as_size(s) for s in list(FIGURE_SIZES) + list(sizes)}
    return sorted(out, key=lambda s: (s[0] * s[1], s[0]))


def _choice_macs(stage, hw, kind: str, p) -> int:
    """Window- (kind L) or k-dependent (kind G) MACs of all the stage's blocks of that kind."""
    blocks = stage.block_types.count(kind)
    if kind == "L":
        return blocks * int(lsa_costs(hw, stage.embed_dim, *p))
    return blocks * int(gsa_costs(hw, stage.embed_dim, stage.subsample, *p))


def optimality_figure(cfg: ArchConfig, name: str | None = None, sizes: Iterable[Resolution] = (),
                      min_keys: int = DEFAULT_MIN_KEYS, max_aspect: float | None = DEFAULT_MAX_ASPECT) -> dict:
    """The figure of the module doc for `cfg` at `figure_sizes(sizes)`, as a plotly figure
    dict (`go.Figure(d)` makes it an object; `plotly.io` writes it as it is: hundreds of traces
    are built as plain data, without the validation of every one)."""
    sizes = figure_sizes(sizes)
    n = len(cfg.stages)
    name = name or cfg.name or "model"
    kinds = tuple(k for k in ("L", "G") if any(k in s.block_types for s in cfg.stages))  # a row per kind present
    row_of = {k: r + 1 for r, k in enumerate(kinds)}
    traces, shown = [], set()
    pal = qualitative.D3
    for j, size in enumerate(sizes):
        color = pal[j % len(pal)]
        label = format_size(size)
        optima = stage_optima(cfg, size, min_keys, max_aspect)
        maps = cfg.stage_sizes(size)
        for i, (stage, hw, o) in enumerate(zip(cfg.stages, maps, optima)):
            curves = stage_curves(stage, hw)
            law = law_side(hw)
            for kind, key in (("L", "lsa"), ("G", "gsa")):
                ys = curves[key]
                if ys is None:
                    continue
                k = (row_of[kind] - 1) * n + i + 1  # the subplot's axes: x, y for the first, then x2, y2, ...
                axes = dict(xaxis=f"x{k if k > 1 else ''}", yaxis=f"y{k if k > 1 else ''}", legendgroup=label)
                gm = [y / 1e9 for y in ys]
                side = np.asarray(curves["side"])
                keys = (np.minimum(side, hw[0]) * np.minimum(side, hw[1]) if kind == "L"
                        else gsa_keys(hw, side, side))
                ok = keys >= o.required_keys
                hover = f"{label}, map {hw[0]}x{hw[1]}<br>side %{{x}}: %{{y:.4g}} GMACs<extra></extra>"
                conf, best = (o.window, o.best_window) if kind == "L" else (o.k, o.best_k)
                assert conf is not None and best is not None  # the stage has blocks of this kind (its curve)
                marks = [("configured", conf, "circle-open", 9), ("optimum", best, "star", 11)]
                traces += [
                    dict(type="scatter", x=curves["side"], y=gm, mode="lines", showlegend=False, opacity=0.3,
                         line=dict(color=color), hovertemplate=hover, **axes),  # every side, faint: too few keys
                    dict(type="scatter", x=curves["side"], y=[g if a else None for g, a in zip(gm, ok)],
                         mode="lines", name=label, showlegend=label not in shown, line=dict(color=color),
                         hovertemplate=hover, **axes),  # the sides that keep the required keys
                    dict(type="scatter", x=[law, law], y=[min(v for v in gm if v > 0), max(gm)], mode="lines",
                         showlegend=False, line=dict(color=color, dash="dot", width=1),
                         hovertemplate=f"{label}: k1·k2 = √(HW) at side {law:.1f}<extra></extra>", **axes),
                    dict(type="scatter", x=[math.sqrt(p[0] * p[1]) for _, p, _, _ in marks],
                         y=[_choice_macs(stage, hw, kind, p) / 1e9 for _, p, _, _ in marks], mode="markers",
                         showlegend=False, text=[f"{what} {p[0]}x{p[1]}" for what, p, _, _ in marks],
                         marker=dict(color=color, symbol=[m[2] for m in marks], size=[m[3] for m in marks],
                                     line=dict(width=2, color=color)),
                         hovertemplate=f"{label}: %{{text}}, %{{y:.4g}} GMACs<extra></extra>", **axes)]
                shown.add(label)
    layout = dict(_layout(n, kinds))  # shared parts are not changed below: copies of what is
    notes = list(layout.get("annotations", ()))
    for i, stage in enumerate(cfg.stages):
        for kind, row in row_of.items():
            if kind in stage.block_types:
                continue
            k = (row - 1) * n + i + 1
            xa, ya = f"xaxis{k if k > 1 else ''}", f"yaxis{k if k > 1 else ''}"
            layout[xa], layout[ya] = dict(layout[xa], visible=False), dict(layout[ya], visible=False)
            notes.append(dict(text=f"no {'LSA' if kind == 'L' else 'GSA'} blocks", showarrow=False,
                              x=sum(layout[xa]["domain"]) / 2, y=sum(layout[ya]["domain"]) / 2, xref="paper",
                              yref="paper", font=dict(color="gray")))
    rule = f"min keys {min_keys}" + (f", aspect <= {max_aspect:g}" if max_aspect is not None else "")
    layout.update(annotations=notes, title=dict(
        text=f"{name}: attention cost per stage vs window and k ({rule}) · circle = configured, star = optimum, "
             f"faint = too few keys, dotted = k1·k2 = √(HW)", x=0.01))
    return dict(data=traces, layout=layout)


@functools.lru_cache(maxsize=16)
def _layout(n: int, kinds: tuple) -> dict:
    """The layout (as data) of an optimality figure with `n` stage columns and a row per block
    kind: subplots, log axes and their titles, size, legend, template. Built once per shape
    (setting up plotly's layout objects is the slow part of a figure)."""
    titles = [f"stage {i + 1}: {'LSA vs window side' if k == 'L' else 'GSA vs k'}" for k in kinds for i in range(n)]
    fig = make_subplots(rows=len(kinds), cols=n, subplot_titles=titles, horizontal_spacing=0.05,
                        vertical_spacing=0.16)
    for row, kind in enumerate(kinds, start=1):
        fig.update_xaxes(type="log", title_text="window side s (s x s)" if kind == "L" else "k (k x k)", row=row)
        fig.update_yaxes(type="log", row=row)
        fig.update_yaxes(title_text=f"GMACs ({'window' if kind == 'L' else 'k'}-dependent)", row=row, col=1)
    fig.update_layout(
        width=max(900, 380 * n), height=180 + 290 * len(kinds), template="plotly_white", hovermode="closest",
        legend=dict(title_text="input size", orientation="h", x=0.0, y=-0.12 if len(kinds) == 2 else -0.25,
                    xanchor="left", yanchor="top"),
        margin=dict(l=70, r=30, t=80, b=110))
    return fig.to_dict()["layout"]


def _slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("_") or "model"


def write_optimality(configs: Mapping[str, ArchConfig], sizes: Iterable[Resolution], out_dir: str | Path,
                     min_keys: int = DEFAULT_MIN_KEYS, max_aspect: float | None = DEFAULT_MAX_ASPECT,
                     png: bool = True) -> dict:
    """Write optimality.csv and optimality.json (`optimality_table` of every model at `sizes`),
    optimality.html (every model's figure, drawn at 224, 512, 1024 and `sizes`, one page) and,
    with `png` and a Chromium, optimality_<name>.png per model. Returns {"files": [paths],
    "notes": [what was skipped and why]}."""
    sizes = [as_size(s) for s in sizes]
    out = ensure_dir(out_dir)
    rows = optimality_rows(configs, sizes, min_keys, max_aspect)
    files = [out / "optimality.csv", out / "optimality.json"]
    with atomic_path(files[0]) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    doc = dict(rule=dict(min_keys=min_keys, max_aspect=max_aspect), stages=rows)
    write_text(files[1], json.dumps(doc, indent=1, allow_nan=False) + "\n")
    figs = {name: optimality_figure(cfg, name, sizes, min_keys, max_aspect) for name, cfg in configs.items()}
    pngs = [out / f"optimality_{_slug(name)}.png" for name in figs] if png else None
    written = write_figure(list(figs.values()), out / "optimality.html", pngs, title="window / k optimality")
    files += written.files
    notes = written.notes
    return {"files": [str(p) for p in files], "notes": notes}
