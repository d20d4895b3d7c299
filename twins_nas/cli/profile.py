"""`twins-nas profile`: GMACs, attention share, latency and peak memory vs input size."""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..config import ArchConfig
from ..hardware import check_dtype_name
from ..models import HEADS, head_config
from ..models.window_optimum import DEFAULT_MAX_ASPECT, DEFAULT_MIN_KEYS, check_rule
from ..presets import PRESETS, get_preset, global_reference
from ..profile.latency import resolve_device
from ..profile.sweep import default_resolutions, profile_sweep, sizes_of
from ..sizes import format_size, parse_size
from .app import app
from .common import console, fail, user_errors


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


def _models(presets: list[str], configs: list[Path]) -> dict:
    models: dict = {}

    def add(name: str, cfg) -> None:
        key, i = name, 2
        while key in models:
            key, i = f"{name} ({i})", i + 1
        models[key] = cfg

    if not presets and not configs:
        for name in PRESETS:
            add(name, get_preset(name))
        ref = global_reference()
        add(ref.name, ref)
    for name in presets:
        add(name, get_preset(name))
    for path in configs:
        cfg = ArchConfig.from_json(path)
        add(cfg.name or Path(path).stem, cfg)
    return models


def _fmt(v, spec: str, est=None) -> str:
    if v is not None and not (isinstance(v, float) and math.isnan(v)):
        return format(v, spec)
    if est is not None and not (isinstance(est, float) and math.isnan(est)):
        return f"[dim]~{est:,.0f}[/]"
    return "[dim]-[/]"


def _busy_note(threads: int) -> str | None:
    """A warning when other processes keep the CPU busy (timings then say little)."""
    try:
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
    except (OSError, AttributeError):
        return None
    if load < 1.0 or load < 0.25 * cores:
        return None
    hint = (f"; with {threads} threads also erratic (OpenMP threads spin waiting for each other): "
            "OMP_WAIT_POLICY=PASSIVE in the environment or --threads 1 give steadier numbers" if threads > 1 else "")
    return f"the machine is busy (load {load:.1f} on {cores} cores): timings will be inflated{hint}"


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


@app.command()
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
) -> None:
    """Profile architectures over input sizes: params, GMACs (per category; with --head per part),
    attention share, latency / throughput and peak forward memory, and how far each stage's
    windows and k are from their cost optimum. Writes profile.csv, complexity.html,
    optimality.csv / .json, one optimality figure per model, and PNGs."""
    t0 = time.perf_counter()
    for flag, value, lo in (("--resolution", resolution, 32), ("--batch", batch, 1), ("--threads", threads, 1),
                            ("--budget", budget, 0)):
        if value is not None and value < lo:
            fail(f"{flag} {value:g}: must be at least {lo}")
    if size and resolutions is not None:
        fail(f"--size {size[0]} and --resolutions {resolutions}: give one of them")
    if size:
        res = parse_sizes(size)
    else:
        res = sizes_of(parse_resolutions(resolutions) if resolutions is not None else default_resolutions(resolution))
    if num_classes is not None and head is None:
        fail(f"--num-classes {num_classes}: give --head too (the classes of a segmentation head), one of "
             f"{', '.join(HEADS)}")
    head_cfg = head_config(head, num_classes)
    try:
        check_rule(min_keys, max_aspect)
    except ValueError as e:
        fail(f"--{str(e).replace('_', '-')}")
    try:
        check_dtype_name(dtype)
        dev = resolve_device(device)
    except ValueError as e:
        fail(f"--{e}")
    models = _models(preset, config)
    for cfg in models.values():
        for r in res:
            cfg.stage_sizes(r)  # one line if a size is too small for a model
    if threads:
        torch.set_num_threads(threads)
    largest = res[-1]
    out_dir = out or Path("reports") / f"profile-{largest[0] if largest[0] == largest[1] else format_size(largest)}"
    if (latency or memory) and dev.type == "cpu":
        note = _busy_note(torch.get_num_threads())
        if note:
            console.print(f"[yellow]note:[/] {note}")

    from ..profile.plots import complexity_figure, write_report  # heavy import (plotly): see README
    from ..profile.window_optimality_plots import write_optimality
    with Progress(TextColumn("[bold]profile[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=console, transient=True) as bar:
        task = bar.add_task("", total=None)

        def progress(done: int, total: int, text: str) -> None:
            bar.update(task, completed=done, total=total, description=text)

        df = profile_sweep(models, res, batch=batch, device=str(dev), dtype=dtype, latency=latency, memory=memory,
                           fvcore=fvcore, budget_s=budget or None, progress=progress, head=head_cfg,
                           min_keys=min_keys, max_aspect=max_aspect)
        bar.update(task, description="writing the report")
        png = latency if png is None else png
        report = write_report(df, complexity_figure(df), out_dir, png=png,
                              panels=latency if panels is None else panels)
        opt = write_optimality(models, res, out_dir, min_keys, max_aspect, png=png)
        report["files"] += opt["files"]
        report["notes"] += [n for n in opt["notes"] if n not in report["notes"]]
    console.print(_summary_table(df, res))
    skipped = int(df["latency_est_ms"].notna().sum())
    if skipped:
        console.print(f"[yellow]{skipped} of {len(df)} cells did not fit the {budget:g} s budget:[/] their latency "
                      "(~) is an estimate (seconds per GMAC of the same model) and their memory is not measured; "
                      "raise --budget (0 = no limit) to measure them.")
    for note in report["notes"]:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"wrote {', '.join(Path(f).name for f in report['files'])} to [bold]{out_dir}/[/] "
                  f"in {time.perf_counter() - t0:.1f} s")
