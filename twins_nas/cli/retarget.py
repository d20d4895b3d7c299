"""`twins-nas retarget`: windows and k set to their cost optimum at a deployment size."""
from __future__ import annotations

import re
from pathlib import Path

import typer
from rich.table import Table

from ..config import load_config
from ..models.cost_model import analytic_flops, analytic_params, stage_macs
from ..models.retarget import retarget as retarget_config
from ..models.window_optimum import DEFAULT_MAX_ASPECT, DEFAULT_MIN_KEYS, check_rule, gsa_keys
from ..profile.latency import resolve_device
from ..sizes import format_pair, format_size, parse_size
from .app import app
from .common import console, fail, user_errors


def _change(a: str, b: str) -> str:
    return a if a == b else f"{a} -> [bold]{b}[/]"


@app.command()
@user_errors
def retarget(
    name_or_json: str = typer.Argument(..., metavar="NAME_OR_JSON",
                                       help="A preset (twins-svt-s, ...) or a config JSON (best_config.json, ...)."),
    size: str = typer.Option(..., "--size", metavar="HxW",
                             help="Deployment input size H x W in pixels, e.g. 1024x2048; one number is a square."),
    min_keys: int = typer.Option(DEFAULT_MIN_KEYS, "--min-keys", metavar="K",
                                 help="Every query attends to at least K keys, in LSA (window m*n >= K) and GSA "
                                      "(ceil(H/k1)*ceil(W/k2) >= K); a map of fewer tokens needs all of them. "
                                      "49 = 7x7, the count of the published models at 224 px."),
    max_aspect: float = typer.Option(DEFAULT_MAX_ASPECT, "--max-aspect",
                                     help="Longest / shortest side of a window or sub-sampling cell (1 = square)."),
    keep_weights: bool = typer.Option(False, "--keep-weights",
                                      help="Change k only where a checkpoint still loads as it is (windows always "
                                           "change)."),
    index: int = typer.Option(None, "--index", help="Entry to take when the JSON holds several configs."),
    latency: bool = typer.Option(True, "--latency/--no-latency",
                                 help="Time every stage before and after on this machine (default on)."),
    budget: float = typer.Option(20.0, "--budget", help="Seconds of timing for each of the two models."),
    device: str = typer.Option("auto", "--device", help="auto (a GPU when there is one), cpu, cuda, cuda:N."),
    out: Path | None = typer.Option(None, "--out", "-o", metavar="FILE.json",
                                       help="Where to write the new config (default: <name>@<H>x<W>.json here)."),
) -> None:
    """Set every stage's LSA window and GSA ratio k to their cost optimum at one input size (the
    cheapest choice that keeps --min-keys keys per query), other fields unchanged. Prints per
    stage the choice, which checkpoint tensors still fit, the GMACs and the measured latency
    before and after, and writes the new config as JSON."""
    hw = parse_size(size, field="--size")
    try:
        check_rule(min_keys, max_aspect)
    except ValueError as e:
        fail(f"--{str(e).replace('_', '-')}")
    if budget <= 0:
        fail(f"--budget {budget:g}: must be more than 0 seconds")
    cfg = load_config(name_or_json, index=index)
    cfg.stage_sizes(hw)  # one line when too small
    dev = None
    if latency:
        try:
            dev = resolve_device(device)
        except ValueError as e:
            fail(f"--{e}")
    res = retarget_config(cfg, hw, min_keys, max_aspect, keep_weights)
    new = res.config
    before, after = analytic_flops(cfg, hw), analytic_flops(new, hw)
    macs_b, macs_a = [o.stage_macs for o in res.optima], stage_macs(new, hw)
    times_b = times_a = None
    if latency:
        from ..profile.stage_time import stage_latency
        with console.status(f"timing {cfg.name or name_or_json} at {format_size(hw)} (budget {budget:g} s)"):
            times_b = stage_latency(cfg, hw, str(dev), budget_s=budget)
        with console.status(f"timing the retargeted model (budget {budget:g} s)"):
            times_a = stage_latency(new, hw, str(dev), budget_s=budget)

    t = Table(title=f"{cfg.name or name_or_json} retargeted to {format_size(hw)} (min keys {min_keys}, "
                    f"aspect <= {max_aspect:g})")
    for col in ("stage", "map", "window", "k", "GSA keys", "weights", "GMACs", "latency ms"):
        t.add_column(col, justify="left" if col in ("weights",) else "right")
    for i, (o, s_new) in enumerate(zip(res.optima, new.stages)):
        win_new = s_new.lsa_window((o.map_h, o.map_w)) if o.window is not None else None
        k_new = s_new.sr_pair if o.k is not None else None
        keys_new = None if k_new is None else int(gsa_keys((o.map_h, o.map_w), *k_new))
        lat = "-" if times_b is None or times_a is None else (f"{times_b.stage_ms[i]:.1f} -> {times_a.stage_ms[i]:.1f}")
        t.add_row(str(i + 1), f"{o.map_h}x{o.map_w}", _change(format_pair(o.window), format_pair(win_new)),
                  _change(format_pair(o.k), format_pair(k_new)), _change(str(o.gsa_keys or "-"), str(keys_new or "-")),
                  res.weights[i], f"{macs_b[i] / 1e9:.2f} -> {macs_a[i] / 1e9:.2f}", lat)
    console.print(t)
    cut = 100 * (1 - after.total / before.total)
    attn_cut = 100 * (1 - after.attention / before.attention) if before.attention else 0.0
    console.print(f"model GMACs: {before.gmacs:.2f} -> [bold]{after.gmacs:.2f}[/] ({-cut:+.1f} %);  attention "
                  f"matmuls: {before.attention / 1e9:.2f} -> [bold]{after.attention / 1e9:.2f}[/] ({-attn_cut:+.1f} %)")
    pb, pa = analytic_params(cfg), analytic_params(new)
    console.print(f"params: {pb / 1e6:.2f} -> [bold]{pa / 1e6:.2f}[/] M" + (
        "" if pa == pb else " (a conv sub-sampler's kernel grows with k1*k2; its MACs do not)"))
    if times_b is not None and times_a is not None:
        console.print(f"backbone latency ({times_b.device}, median of {times_b.repeats} / {times_a.repeats} passes): "
                      f"{times_b.total_ms:.1f} -> [bold]{times_a.total_ms:.1f}[/] ms "
                      f"({100 * (times_a.total_ms / times_b.total_ms - 1):+.1f} %)")
    if res.loads_as_is:
        console.print("weights: a checkpoint of the original loads as it is (windows carry no parameters)")
    else:
        changed = [f"stage {i + 1}: {w}" for i, w in enumerate(res.weights) if w != "as-is"]
        console.print(f"weights: {', '.join(changed)}; load a checkpoint of the original with "
                      "twins_nas.models.retarget.adapt_state_dict (or run with --keep-weights)")
    meta = dict(retargeted_from=cfg.name or name_or_json, size=list(hw), min_keys=min_keys, max_aspect=max_aspect,
                keep_weights=keep_weights, weights=res.weights)
    assert new.name is not None  # retarget_config names the config it makes
    path = out or Path(re.sub(r"[^\w.@-]+", "_", new.name) + ".json")
    new.to_json(path, meta=meta)
    console.print(f"wrote [bold]{path}[/]")
