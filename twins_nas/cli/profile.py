"""`twins-nas profile`: GMACs, attention share, latency and peak memory vs input size."""
from __future__ import annotations

import math
import re
import time
from dataclasses import replace
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import ConfigError
from ..models import HEADS
from ..models.window_optimum import DEFAULT_MAX_ASPECT, DEFAULT_MIN_KEYS
from ..profile.run import profile_models, run_profile
from ..profile.runtimes import RUNTIMES
from ..profile.sweep import SWEEP_SPEC, default_resolutions, sizes_of
from ..sizes import format_size, parse_size
from .app import app
from .common import FLAGS, console, fail, flag, user_errors


def parse_resolutions(text: str) -> list[int]:
    """'224,512, 1024' -> [224, 512, 1024]; a one-line error for anything else."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            r = int(part)
        except ValueError:
            fail(f"--resolutions: {part!r} is not a whole number of pixels (expected e.g. 224,512,1024)")
        if r < 32:
            fail(f"--resolutions: {r} is too small (the smallest input a Twins accepts is 32)")
        out.append(r)
    if not out:
        fail("--resolutions: no sizes given (expected e.g. 224,512,1024)")
    return sorted(set(out))


def parse_sizes(values: list[str]) -> list[tuple[int, int]]:
    """['512x2048', '1024x1024,800x1333'] -> [(512, 2048), (1024, 1024), (800, 1333)] by pixels."""
    parts = [p.strip() for v in values for p in v.split(",") if p.strip()]
    if not parts:
        fail("--size: no sizes given (expected e.g. 512x2048 or 512x512,1024x1024)")
    return sizes_of(parse_size(p, field="--size") for p in parts)


# where this command's flags differ from the other commands' (`common.FLAGS`)
OWN_FLAGS = {"sizes": "--size", "budget_s": "--budget"}


def profile_flag(field: str, *items: object) -> str:
    """The flag of a field `run_profile` or `MeasureSpec` names (see `common.flag`)."""
    return OWN_FLAGS.get(field) or flag(field, *items)


_LEADING = re.compile(r"^([a-z_]+)(?=[=:])")
_QUOTED = re.compile(r"`([a-z_]+)`")


def with_flags(text: str) -> str:
    """A library message in this command's words: the field it starts with and every field in
    backticks spelled as its flag ('min_keys=0: ...' -> '--min-keys=0: ...')."""
    text = _LEADING.sub(lambda m: profile_flag(m[1]), text)
    return _QUOTED.sub(lambda m: profile_flag(m[1]) if m[1] in OWN_FLAGS or m[1] in FLAGS else m[0], text)


def _fmt(v, spec: str, est=None) -> str:
    if v is not None and not (isinstance(v, float) and math.isnan(v)):
        return format(v, spec)
    if est is not None and not (isinstance(est, float) and math.isnan(est)):
        return f"[dim]~{est:,.0f}[/]"
    return "[dim]-[/]"


def _summary_table(df, sizes: list) -> Table:
    labels = [format_size(s) for s in sizes]
    show = labels if len(labels) <= 4 else [labels[0], labels[len(labels) // 2], labels[-1]]
    dense = "neck_gmacs" in df
    what = f", {df['head'].iloc[0]} head, {int(df['num_classes'].iloc[0])} classes" if dense else ""
    t = Table(title=f"cost vs input size (batch {int(df['batch'].iloc[0])}{what}; all sizes in profile.csv)")
    t.add_column("model", no_wrap=True)
    cols = ["size", "params M", "GMACs"] + (["backbone", "neck", "head"] if dense else []) + \
        ["attn %", "retarget attn", "latency ms", "img/s", "mem MiB"]
    for col in cols:
        t.add_column(col, justify="right")
    models = list(dict.fromkeys(df["model"]))
    for k, m in enumerate(models):
        sub = df[(df["model"] == m) & df["size"].isin(show)]
        for j, (_, row) in enumerate(sub.iterrows()):
            split = [f"{row[c]:.2f}" for c in ("backbone_gmacs", "neck_gmacs", "head_gmacs")] if dense else []
            cut = f"{-row['retarget_attn_cut_pct']:+.0f} %" if "retarget_attn_cut_pct" in row else "-"
            t.add_row(m if j == 0 else "", row["size"], f"{row['params_m']:.2f}" if j == 0 else "",
                      f"{row['gmacs']:.2f}", *split, f"{100 * row['attn_share']:.1f}", cut,
                      _fmt(row["latency_ms"], ",.0f" if row["latency_ms"] >= 100 else ".1f",
                           row["latency_est_ms"]), _fmt(row["throughput"], ".1f"),
                      _fmt(row["peak_mem_mb"], ".0f"), end_section=j == len(sub) - 1 and k < len(models) - 1)
    return t


@app.command(short_help="Profile architectures over input sizes: params, GMACs, latency, memory and window "
                        "optimality.")
@user_errors
def profile(
    resolution: int = typer.Option(1024, "--resolution", "-r",
                                   help="Largest input size; the sweep goes from 224 up in even steps "
                                        "(1024: 224, 320, 448, 512, 640, 768, 896, 1024)."),
    resolutions: str | None = typer.Option(None, "--resolutions",
                                              help="Exact square sizes instead, comma-separated, e.g. 224,512,1024."),
    size: list[str] = typer.Option([], "--size", "-s", metavar="HxW",
                                   help="Exact sizes H x W instead (rows x columns), e.g. 512x2048; repeatable or "
                                        "comma-separated (512x512,1024x1024); one number is a square."),
    head: str | None = typer.Option(None, "--head", metavar="NAME",
                                       help=f"Profile the dense model: the backbone plus this segmentation head "
                                            f"({', '.join(HEADS)}), costs split into backbone, neck and head."),
    num_classes: int | None = typer.Option(None, "--num-classes", help="Classes of the --head (default 150)."),
    min_keys: int = typer.Option(DEFAULT_MIN_KEYS, "--min-keys", metavar="K",
                                 help="Window / k optimality: every query keeps at least K keys (49 = 7x7)."),
    max_aspect: float = typer.Option(DEFAULT_MAX_ASPECT, "--max-aspect",
                                     help="Window / k optimality: longest / shortest side of a window or cell."),
    preset: list[str] = typer.Option([], "--preset", "-p", metavar="NAME",
                                     help="A published model (twins-svt-s, twins-pcpvt-b, ...); repeatable."),
    config: list[Path] = typer.Option([], "--config", "-c", metavar="FILE.json",
                                      help="An architecture JSON (e.g. best_config.json); repeatable. Without "
                                           "--preset/--config: the six presets and a global-attention reference."),
    batch: int = typer.Option(1, "--batch", "-b", help="Images per forward pass."),
    device: str = typer.Option("auto", "--device", help="auto (a GPU when there is one), cpu, cuda, cuda:N."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32, bf16 or fp16 (autocast) for the timed passes."),
    runtime: str = typer.Option("eager", "--runtime", metavar="NAME",
                                help=f"What runs the timed passes: {', '.join(RUNTIMES)} (compiling or exporting "
                                     f"happens before them, once per model and size). Written to profile.csv."),
    latency: bool = typer.Option(True, "--latency/--no-latency",
                                 help="Time forward passes. --no-latency: analytic costs only, in seconds."),
    memory: bool | None = typer.Option(None, "--memory/--no-memory",
                                          help="Measure the peak memory of the forward (default: with latency)."),
    budget: float = typer.Option(60.0, "--budget",
                                 help="Seconds for all forward passes; the most expensive cells that would not "
                                      "fit get an estimated latency instead. 0 = measure every cell."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for torch (default: all)."),
    fvcore: bool = typer.Option(False, "--fvcore", help="Also count GMACs with fvcore (slow; the analytic "
                                                        "count is exact)."),
    png: bool | None = typer.Option(None, "--png/--no-png",
                                       help="Write the figures as PNGs too (needs a Chromium for kaleido; default: "
                                            "unless --no-latency, which stays analytic and quick)."),
    panels: bool | None = typer.Option(None, "--panels/--no-panels",
                                          help="Also one PNG per panel (default: unless --no-latency)."),
    out: Path | None = typer.Option(None, "--out", "-o",
                                       help="Output folder (default: reports/profile-<largest size>/)."),
    predictor: Path | None = typer.Option(None, "--predictor", metavar="TABLE.json",
                                             help="Predict latency and throughput from a latency table "
                                                  "(twins-nas latency-table) instead of timing; its size, batch "
                                                  "and head must be the profile's."),
) -> None:
    """Profile architectures over input sizes: params, GMACs (per category; with --head per part),
    attention share, latency / throughput and peak forward memory, and how far each stage's
    windows and k are from their cost optimum. Writes profile.csv, complexity.html,
    optimality.csv / .json, one optimality figure per model, and PNGs."""
    t0 = time.perf_counter()
    if resolution < 32:
        fail(f"--resolution {resolution}: must be at least 32")
    if size and resolutions is not None:
        fail(f"--size {size[0]} and --resolutions {resolutions}: give one of them")
    if size:
        res = parse_sizes(size)
    else:
        res = sizes_of(parse_resolutions(resolutions) if resolutions is not None else default_resolutions(resolution))
    bar = Progress(TextColumn("[bold]profile[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.description}"), console=console, transient=True)
    task = bar.add_task("", total=None)

    def progress(done: int, total: int, text: str) -> None:
        bar.start()  # on the first cell: input errors and notes come before the bar
        bar.update(task, completed=done, total=total, description=text)

    try:
        predict = None
        if predictor is not None:
            from ..search.latency.predictor import LatencyPredictor  # heavy import: see README
            predict = LatencyPredictor.load(predictor).predict_at
        spec = replace(SWEEP_SPEC, device=device, dtype=dtype, batch=batch, threads=threads, backend=runtime)
        result = run_profile(profile_models(preset, config), res, spec, out_dir=out, head=head,
                             num_classes=num_classes, latency=latency, memory=memory, budget_s=budget or None,
                             fvcore=fvcore, png=png, panels=panels, min_keys=min_keys, max_aspect=max_aspect,
                             progress=progress, on_note=lambda n: console.print(f"[yellow]note:[/] {with_flags(n)}"),
                             predict=predict)
    except ConfigError as e:
        fail(with_flags(e.render(profile_flag)))
    finally:
        if bar.live.is_started:
            bar.stop()
    df = result.frame
    console.print(_summary_table(df, result.sizes))
    if result.estimated_cells:
        console.print(f"[yellow]{result.estimated_cells} of {len(df)} cells did not fit the {budget:g} s budget:[/] "
                      "their latency (~) is an estimate (seconds per GMAC of the same model) and their memory is "
                      "not measured; raise --budget (0 = no limit) to measure them.")
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"wrote {', '.join(f.name for f in result.files)} to [bold]{result.out_dir}/[/] "
                  f"in {time.perf_counter() - t0:.1f} s")
