"""Figures and files of a resolution sweep: `complexity_figure(df)` and `write_report(...)`.

The figure has six panels, every one against the input size (pixels, log axis):
GMACs; the attention matmuls' share of the GMACs; the attention matmuls' GMACs beside the
growth laws of the Twins paper (dashed); latency (measured, and the budget's estimates as
open markers); peak forward memory; and where the GMACs go at the largest size.

Growth laws, for an H x W map with d channels and m x n LSA windows (H, W grow with the input
size r, the windows and the sub-sampling ratio stay fixed):
  LSA    O(mn * HWd)        ~ r^2
  GSA    O(H^2 W^2 d / mn)  ~ r^4 (a fixed ratio k means HW/k^2 keys per query)
  global O(H^2 W^2 d)       ~ r^4, with a constant mn (here k^2) times larger
Each law is drawn through the measured value at the smallest size, so the dashed curve shows
the law's growth and the solid one what the network does (padding to whole windows, fixed
stage-4 global attention, ...).

No LaTeX anywhere (MathJax would be fetched from the network); the HTML loads plotly.js from
the plotly.min.js beside it (`write_figure`).
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ..atomic import atomic_path, ensure_dir
from ..figures import write_figure

PANELS = {  # file stem -> title
    "gmacs": "Compute (GMACs)",
    "attn_share": "Attention matmuls: share of GMACs (%)",
    "laws": "Attention matmuls vs growth laws (GMACs)",
    "latency": "Latency (ms / batch)",
    "memory": "Peak forward memory (MiB)",
    "breakdown": "Where the GMACs go at the largest size (%)",
}
_GRID = {"gmacs": (1, 1), "attn_share": (1, 2), "laws": (1, 3), "latency": (2, 1), "memory": (2, 2),
         "breakdown": (2, 3)}
# (growth exponent in r, label) of the laws
LAWS = {"lsa": (2, "LSA law O(mn·HWd) ∝ r²"), "gsa": (4, "GSA law O(H²W²d/mn) ∝ r⁴"),
        "global": (4, "global law O(H²W²d) ∝ r⁴")}
GROUPS = {  # breakdown bar -> cost-model categories
    "LSA matmuls": ["lsa_matmul"],
    "GSA matmuls": ["gsa_matmul"],
    "attention linears": ["attn_qkv", "attn_q", "attn_kv", "attn_proj"],
    "GSA sub-sampling": ["gsa_subsample"],
    "MLP": ["mlp"],
    "other (embed, PEG, norm, head)": ["patch_embed", "peg", "norm", "head"],
}
_GROUP_COLORS = ["#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#1f77b4", "#7f7f7f"]
DENSE_GROUPS = [("FPN neck", "neck_gmacs", "#2ca02c"), ("FPN head", "head_gmacs", "#17becf")]  # `profile --head`


def law_curve(resolutions, anchor_res: float, anchor_value: float, exponent: int) -> list[float]:
    """anchor_value * (r / anchor_res) ** exponent for every r: a growth law through one point."""
    return [anchor_value * (r / anchor_res) ** exponent for r in resolutions]


def _colors(models: list[str]) -> dict:
    pal = qualitative.D3 + qualitative.Plotly
    return {m: pal[i % len(pal)] for i, m in enumerate(models)}


def _models(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["model"]))


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["resolution", "height"] if "height" in df else "resolution")


def _by_model(df: pd.DataFrame):
    for m in _models(df):
        yield m, _sorted(df[df["model"] == m])


def _xcol(df: pd.DataFrame) -> str:
    """The x column: the input size's side, or its 'HxW' label (a category axis) when some size
    is not square."""
    return "size" if "height" in df and (df["height"] != df["width"]).any() else "resolution"


def _order(df: pd.DataFrame) -> list:
    """The x values in increasing pixel count."""
    return list(dict.fromkeys(_sorted(df)[_xcol(df)]))


def _has(df: pd.DataFrame, col: str) -> bool:
    return col in df and bool(df[col].notna().any())


def _line(sub, y, name, color, showlegend, legendgroup=None, dash=None, hover="", **kw) -> go.Scatter:
    return go.Scatter(x=sub[_xcol(sub)], y=y, name=name, mode="lines+markers", legendgroup=legendgroup or name,
                      showlegend=showlegend, line=dict(color=color, dash=dash),
                      hovertemplate=f"{name}<br>%{{x}} px: %{{y:.4g}}{hover}<extra></extra>", **kw)


def _panel_traces(df: pd.DataFrame, panel: str, colors: dict, global_model: str | None) -> list:
    """The traces of one panel. Model traces share a legend group (one entry per model)."""
    traces = []
    first = panel == "gmacs"  # the model legend entries live in the first panel
    if panel == "gmacs":
        for m, sub in _by_model(df):
            traces.append(_line(sub, sub["gmacs"], m, colors[m], first))
    elif panel == "attn_share":
        for m, sub in _by_model(df):
            traces.append(_line(sub, 100 * sub["attn_share"], m, colors[m], first, hover=" %"))
    elif panel == "latency":
        for m, sub in _by_model(df):
            meas = sub[sub["latency_ms"].notna()] if "latency_ms" in sub else sub.iloc[:0]
            if len(meas):
                traces.append(_line(meas, meas["latency_ms"], m, colors[m], first, hover=" ms"))
            if _has(sub, "latency_est_ms"):
                est = sub[sub["latency_est_ms"].notna()]
                bridge = meas.tail(1)  # join the estimates to the last measured point
                x = list(bridge[_xcol(df)]) + list(est[_xcol(df)])
                y = list(bridge["latency_ms"]) + list(est["latency_est_ms"])
                traces.append(go.Scatter(
                    x=x, y=y, mode="lines+markers", legendgroup=m, showlegend=False, name=f"{m} (estimate)",
                    line=dict(color=colors[m], dash="dot"), marker=dict(symbol="circle-open", size=8),
                    hovertemplate=f"{m}<br>%{{x}} px: %{{y:.4g}} ms (estimated: not measured "
                                  f"within the time budget)<extra></extra>"))
    elif panel == "memory":
        for m, sub in _by_model(df):
            meas = sub[sub["peak_mem_mb"].notna()] if "peak_mem_mb" in sub else sub.iloc[:0]
            if len(meas):
                traces.append(_line(meas, meas["peak_mem_mb"], m, colors[m], first, hover=" MiB"))
    elif panel == "laws":
        traces += _law_traces(df, colors, global_model)
    elif panel == "breakdown":
        top = df[df[_xcol(df)] == _order(df)[-1]]
        models = list(top["model"])[::-1]  # first model on top
        groups = [(g, [f"gmacs_{c}" for c in cats], color) for (g, cats), color in zip(GROUPS.items(), _GROUP_COLORS)]
        if "neck_gmacs" in top:  # a dense model: its neck and head too
            groups += [(g, [col], color) for g, col, color in DENSE_GROUPS]
        for group, cols, color in groups:
            vals = sum(top[c] for c in cols if c in top) / top["gmacs"] * 100
            traces.append(go.Bar(y=models, x=list(vals)[::-1], name=group, orientation="h", legend="legend3",
                                 marker_color=color, hovertemplate=f"%{{y}}: %{{x:.1f}} % {group}<extra></extra>"))
    return traces


def _law_traces(df: pd.DataFrame, colors: dict, global_model: str | None) -> list:
    """Measured attention-matmul GMACs of representative models (solid) and the laws (dashed)."""
    models = _models(df)
    r0 = df["resolution"].min()
    picks = []  # (law, model, column)
    lsa = [m for m in models if (df[df["model"] == m]["lsa_gmacs"] > 0).all()]
    if lsa:
        picks.append(("lsa", lsa[0], "lsa_gmacs"))
    if global_model is None:
        global_model = next((m for m in models if "global" in m.lower()), None)
    gsa = [m for m in lsa + models if m != global_model and (df[df["model"] == m]["gsa_gmacs"] > 0).all()]
    if gsa:
        picks.append(("gsa", gsa[0], "gsa_gmacs"))
    if global_model in models:
        picks.append(("global", global_model, "attn_gmacs"))
    traces = []
    for law, m, col in picks:
        sub = _sorted(df[df["model"] == m])
        what = {"lsa": "LSA matmuls", "gsa": "GSA matmuls", "global": "attention matmuls"}[law]
        traces.append(_line(sub, sub[col], f"{m}: {what}", colors[m], True, legend="legend2",
                            marker=dict(symbol={"lsa": "square", "gsa": "diamond", "global": "circle"}[law])))
        exp, label = LAWS[law]
        anchor = float(sub[sub["resolution"] == r0][col].iloc[0])
        traces.insert(len(traces) - 1, go.Scatter(  # under the measured line, wide and faint
            x=sub[_xcol(df)], y=law_curve(sub["resolution"], r0, anchor, exp), name=label, mode="lines",
            legend="legend2", opacity=0.6, line=dict(color=colors[m], dash="dash", width=3.5),
            hovertemplate=f"{label}<br>%{{x}} px: %{{y:.4g}}<extra></extra>"))
    return traces


def _style_axes(fig: go.Figure, panel: str, resolutions: list, row: int, col: int) -> None:
    if panel == "breakdown":
        fig.update_xaxes(title_text="% of GMACs", range=[0, 100], row=row, col=col)
        return
    if resolutions and isinstance(resolutions[0], str):  # 'HxW' labels, in pixel order
        ticks = dict(type="category", categoryorder="array", categoryarray=resolutions,
                     title_text="input size (H x W px)")
    else:
        ticks = dict(type="log", tickvals=resolutions, ticktext=[str(r) for r in resolutions],
                     title_text="input size (px)")
    fig.update_xaxes(**ticks, row=row, col=col)
    if panel != "attn_share":
        fig.update_yaxes(type="log", row=row, col=col)
    else:
        fig.update_yaxes(rangemode="tozero", row=row, col=col)


def _empty_note(df: pd.DataFrame, panel: str) -> str | None:
    col = {"latency": "latency_ms", "memory": "peak_mem_mb"}.get(panel)
    if col and not _has(df, col) and not (panel == "latency" and _has(df, "latency_est_ms")):
        return "not measured (run without --no-latency / --no-memory)"
    return None


def _title(df: pd.DataFrame) -> str:
    dev = df["device"].dropna().iloc[0] if _has(df, "device") else "analytic only"
    dtype = df["dtype"].dropna().iloc[0] if _has(df, "dtype") else "fp32"
    return f"Twins: cost vs input size (batch {int(df['batch'].iloc[0])}, {dtype}, {dev})"


def _headroom(fig: go.Figure, row: int, col: int, decades: float = 1.4) -> None:
    """Room above the curves of a log-y panel for a legend inside it."""
    ys = [y for tr in fig.select_traces(row=row, col=col) for y in (() if tr.y is None else tr.y)
          if y is not None and y > 0]
    if ys:
        lo, hi = math.log10(min(ys)), math.log10(max(ys))
        fig.update_yaxes(range=[lo - 0.15, hi + decades], row=row, col=col)


def _note_empty(fig: go.Figure, df: pd.DataFrame, panel: str, row: int = 1, col: int = 1) -> None:
    """Hide the axes of a panel without data and say why in its middle."""
    note = _empty_note(df, panel)
    if not note:
        return
    sp = fig.get_subplot(row, col)
    fig.update_xaxes(visible=False, row=row, col=col)
    fig.update_yaxes(visible=False, row=row, col=col)
    fig.add_annotation(text=note, x=sum(sp.xaxis.domain) / 2, y=sum(sp.yaxis.domain) / 2, xref="paper",
                       yref="paper", xanchor="center", showarrow=False, font=dict(color="gray"))


def complexity_figure(df: pd.DataFrame, global_model: str | None = None) -> go.Figure:
    """The six-panel figure of a `profile_sweep` DataFrame (see the module doc)."""
    colors = _colors(_models(df))
    res = _order(df)
    titles = dict(PANELS)
    if _has(df, "latency_est_ms"):
        titles["latency"] += " · open = estimated"
    fig = make_subplots(rows=2, cols=3, subplot_titles=[titles[p] for p in _GRID],
                        horizontal_spacing=0.07, vertical_spacing=0.14)
    for panel, (row, col) in _GRID.items():
        for tr in _panel_traces(df, panel, colors, global_model):
            fig.add_trace(tr, row=row, col=col)
        _style_axes(fig, panel, res, row, col)
        _note_empty(fig, df, panel, row, col)
    laws = fig.get_subplot(*_GRID["laws"])
    fig.update_layout(
        title=dict(text=_title(df), x=0.01), width=1700, height=950, template="plotly_white",
        barmode="stack", hovermode="closest", margin=dict(l=60, r=30, t=80, b=130),
        # models under the figure on the left, the breakdown's groups on the right,
        # the laws' legend inside their panel (top left, where the curves are not)
        legend=dict(title_text="model", orientation="h", x=0.0, y=-0.085, xanchor="left", yanchor="top"),
        legend3=dict(orientation="h", x=1.0, y=-0.14, xanchor="right", yanchor="top", font=dict(size=11)),
        legend2=dict(x=laws.xaxis.domain[0] + 0.005, y=laws.yaxis.domain[1] - 0.005, xanchor="left", yanchor="top",
                     title_text=f"dashed: law through the {res[0]} px value", bgcolor="rgba(255,255,255,0.8)",
                     font=dict(size=10)))
    _headroom(fig, *_GRID["laws"], decades=1.8)
    return fig


def panel_figure(df: pd.DataFrame, panel: str, global_model: str | None = None) -> go.Figure:
    """One panel of `complexity_figure` on its own (for a slide or a paper)."""
    colors = _colors(_models(df))
    fig = make_subplots(rows=1, cols=1)
    for tr in _panel_traces(df, panel, colors, global_model):
        tr.update(legend="legend", showlegend=True)
        fig.add_trace(tr, row=1, col=1)
    _style_axes(fig, panel, _order(df), 1, 1)
    _note_empty(fig, df, panel)
    fig.update_layout(title=dict(text=f"{PANELS[panel]}<br><sup>{_title(df)}</sup>", x=0.01), width=900, height=560,
                      template="plotly_white", barmode="stack")
    return fig


def write_report(df: pd.DataFrame, fig: go.Figure | None, out_dir: str | Path, png: bool = True,
                 panels: bool = True) -> dict:
    """Write profile.csv, complexity.html (works offline with the plotly.min.js written beside
    it) and, when a Chromium is present, complexity.png plus one PNG per panel (`panels`).
    Never fails for want of a browser: returns {"files": [paths], "notes": [what was skipped
    and why]}."""
    out = ensure_dir(out_dir)
    fig = complexity_figure(df) if fig is None else fig
    files, notes = [], []
    with atomic_path(out / "profile.csv") as tmp:
        df.to_csv(tmp, index=False)
    files.append(out / "profile.csv")
    more = [(panel_figure(df, p), out / f"complexity_{p}.png") for p in PANELS] if png and panels else []
    written = write_figure(fig, out / "complexity.html", out / "complexity.png" if png else None, more_pngs=more)
    files += written.files
    notes += written.notes
    return {"files": [str(p) for p in files], "notes": notes}
