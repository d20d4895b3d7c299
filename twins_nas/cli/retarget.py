"""`twins-nas retarget`: `twins_nas.models.retarget.retarget_config`."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..models import HEADS
from ..models.param_budget import DEFAULT_MAX_PARAMS_GROWTH
from ..models.retarget import RetargetReport, StageTimer, retarget_config
from ..models.window_optimum import DEFAULT_MAX_ASPECT, DEFAULT_MIN_KEYS
from ..sizes import format_pair, format_size
from .app import app
from .common import console, device_of, user_errors


def _change(a: str, b: str) -> str:
    return a if a == b else f"{a} -> [bold]{b}[/]"


def _timer(device: str, runtime: str) -> StageTimer:
    """Every stage timed on `device` by `runtime` (both checked now: a bad one is a one-line
    error before any work)."""
    from ..profile.runtimes import check_runtime  # heavy import: see README
    from ..profile.stage_time import stage_latency
    dev = device_of(device)
    check_runtime(runtime, dev)
    return lambda cfg, size, budget_s: stage_latency(cfg, size, str(dev), budget_s=budget_s, runtime=runtime)


def _print_report(rep: RetargetReport) -> None:
    t = Table(title=f"{rep.name} retargeted to {format_size(rep.size)} (min keys {rep.min_keys}, "
                    f"aspect <= {rep.max_aspect:g})")
    for col in ("stage", "map", "window", "k", "sub-sampler", "GSA keys", "weights", "GMACs", "latency ms"):
        t.add_column(col, justify="left" if col in ("weights", "sub-sampler") else "right")
    for s in rep.stages:
        lat = "-" if s.ms is None else f"{s.ms[0]:.1f} -> {s.ms[1]:.1f}"
        t.add_row(str(s.stage), f"{s.map[0]}x{s.map[1]}", _change(*map(format_pair, s.window)),
                  _change(*map(format_pair, s.k)),
                  _change(*s.choice.subsample) if s.k[0] is not None else "-",
                  _change(*(str(k or "-") for k in s.gsa_keys)),
                  s.weights, f"{s.macs[0] / 1e9:.2f} -> {s.macs[1] / 1e9:.2f}", lat)
    console.print(t)
    before, after = rep.flops
    cut = 100 * (1 - after.total / before.total)
    attn_cut = 100 * (1 - after.attention / before.attention) if before.attention else 0.0
    console.print(f"model GMACs: {before.gmacs:.2f} -> [bold]{after.gmacs:.2f}[/] ({-cut:+.1f} %);  attention "
                  f"matmuls: {before.attention / 1e9:.2f} -> [bold]{after.attention / 1e9:.2f}[/] ({-attn_cut:+.1f} %)")
    for s in rep.stages:
        if s.k[0] is not None:
            console.print(f"stage {s.stage}: {s.choice.reason}", highlight=False)
    pb, pa = rep.params
    budget = ("no budget" if rep.max_params_growth is None else
              f"budget x{rep.max_params_growth:g} = {rep.max_params_growth * pb / 1e6:.2f} M, --max-params-growth")
    console.print(f"params: {pb / 1e6:.2f} -> [bold]{pa / 1e6:.2f}[/] M ({100 * (pa / pb - 1):+.1f} %; {budget})")
    if rep.head is not None and rep.dense_flops is not None and rep.dense_params is not None:
        (fb, fa), (db, da) = rep.dense_flops, rep.dense_params
        console.print(f"dense model ({rep.head.type} head, {rep.head.num_classes} classes): GMACs {fb.gmacs:.2f} -> "
                      f"[bold]{fa.gmacs:.2f}[/] ({100 * (fa.total / fb.total - 1):+.1f} %);  params "
                      f"{db / 1e6:.2f} -> [bold]{da / 1e6:.2f}[/] M ({100 * (da / db - 1):+.1f} %)", highlight=False)
    if rep.times is not None:
        tb, ta = rep.times
        console.print(f"backbone latency ({tb.device}, median of {tb.repeats} / {ta.repeats} passes): "
                      f"{tb.total_ms:.1f} -> [bold]{ta.total_ms:.1f}[/] ms "
                      f"({100 * (ta.total_ms / tb.total_ms - 1):+.1f} %)")
    if rep.result.loads_as_is:
        console.print("weights: a checkpoint of the original loads as it is (windows carry no parameters)")
    else:
        changed = [f"stage {i + 1}: {w}" for i, w in enumerate(rep.result.weights) if w != "as-is"]
        console.print(f"weights: {', '.join(changed)}; load a checkpoint of the original with "
                      "twins_nas.models.retarget.adapt_state_dict (or run with --keep-weights)")
    console.print(f"wrote [bold]{rep.path}[/]")


@app.command(short_help="Set every stage's LSA window and GSA ratio k to their cost optimum at one input size.")
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
    max_params_growth: float = typer.Option(DEFAULT_MAX_PARAMS_GROWTH, "--max-params-growth", metavar="G",
                                            help="Parameters after <= G x before (inf: no budget), counted on "
                                                 "the classifier model of the config, with or without --head. "
                                                 "Where a conv sub-sampler at the optimal k would break it, the "
                                                 "stage sub-samples with dwconv or avgpool (or keeps its k)."),
    index: int = typer.Option(None, "--index", help="Entry to take when the JSON holds several configs."),
    head: str | None = typer.Option(None, "--head", metavar="NAME",
                                    help=f"Also count the dense model before and after: the backbone plus this "
                                         f"segmentation head ({', '.join(HEADS)}, 150 classes), its GMACs and "
                                         f"params printed and written to the JSON's meta."),
    latency: bool = typer.Option(True, "--latency/--no-latency",
                                 help="Time every stage before and after on this machine (default on)."),
    budget: float = typer.Option(20.0, "--budget", help="Seconds of timing for each of the two models."),
    device: str = typer.Option("auto", "--device", help="auto (a GPU when there is one), cpu, cuda, cuda:N."),
    runtime: str = typer.Option("eager", "--runtime", metavar="NAME",
                                help="What runs the timed stages: eager, compile or onnxruntime (then each stage is "
                                     "compiled or exported on its own before it is timed)."),
    out: Path | None = typer.Option(None, "--out", "-o", metavar="FILE.json",
                                    help="Where to write the new config (default: <name>@<H>x<W>.json here)."),
) -> None:
    """Set every stage's LSA window and GSA ratio k to their cost optimum at one input size (the
    cheapest choice that keeps --min-keys keys per query), the parameters kept within
    --max-params-growth by switching a stage's conv sub-sampler to dwconv or avgpool where
    needed, other fields unchanged. Prints per stage the choice and why, which checkpoint
    tensors still fit, the GMACs and the measured latency before and after (with --head, the
    dense model's GMACs and params too), and writes the new config as JSON."""
    if not latency:  # nothing is timed, but a runtime that does not exist is still a mistake
        from ..profile.runtimes import check_runtime  # heavy import: see README
        check_runtime(runtime)
    _print_report(retarget_config(name_or_json, size, min_keys, max_aspect, keep_weights, index=index,
                                  timer=_timer(device, runtime) if latency else None, budget=budget, out=out,
                                  status=console.status, max_params_growth=max_params_growth, head=head))
