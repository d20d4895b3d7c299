"""`twins-nas latency-table`: time every block a space can produce on this machine and write
the latency table that predicts its models' latency."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..presets import presets_for
from ..sizes import format_size
from .app import app
from .common import console, fail, user_errors


@app.command("latency-table", short_help="Time every block a space can produce here: a latency table that "
                                         "predicts its models' latency.")
@user_errors
def latency_table(
    space: Path = typer.Option(..., "--space", help="Search-space YAML file: its blocks at measure.size, "
                                                    "measure.batch_size and measure.head are timed."),
    out: Path = typer.Option(..., "--out", "-o", help="The table to write (JSON)."),
    runtime: str | None = typer.Option(None, "--runtime",
                                          help="Timing backend that runs the blocks (default: the space's "
                                               "measure.runtime, else eager)."),
    device: str | None = typer.Option(None, "--device",
                                         help="auto, cpu, cuda, cuda:N (default: the space's measure.device)."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for torch (default: all)."),
    calibration: int = typer.Option(8, "--calibration", metavar="N",
                                    help="Whole models timed to fit what a model adds beyond its blocks "
                                         "(the smallest, the largest and random ones); 0: none."),
    budget: float = typer.Option(0.4, "--budget", metavar="SECONDS",
                                 help="Timing per block, at most, once its 3 rounds are done (whole models get "
                                      "4x, up to 1.5 s): the build takes about blocks x this."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random calibration models."),
    presets: bool = typer.Option(True, "--presets/--no-presets",
                                 help="Also time the six published models' blocks, so a search that predicts "
                                      "its speed from the table predicts theirs for its report too."),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY.PATH=VALUE",
                                        help="Override a field of the space file (repeatable), e.g. "
                                             "measure.batch_size=1, measure.size=512, measure.head=semantic-fpn."),
) -> None:
    """Time every building block (patch embeddings, L and G blocks, PEGs, the classifier or the
    dense head's parts) that a config of the space runs at its measured size, batch and head,
    each alone on this machine with the chosen runtime, then a few whole models, and write the
    table: `measure: {predictor: TABLE.json}` in a space then predicts the timed metrics from it."""
    from ..search.latency.blocks import space_blocks  # heavy import: see README
    from ..search.latency.build import TABLE_SPEC, build_latency_table
    from ..search.space.space import load_space
    t0 = time.perf_counter()
    if not budget > 0:
        fail(f"--budget {budget:g}: must be a positive number of seconds")
    sp = load_space(space, overrides)
    spec = replace(TABLE_SPEC, device=device or sp.measure.device, threads=threads, budget_s=budget,
                   backend=runtime or sp.measure.runtime or TABLE_SPEC.backend)
    n = len(space_blocks(sp))
    console.print(f"[bold]latency table[/] of {sp.name}: {n} blocks at {format_size(sp.measure_size)} px, "
                  f"batch {sp.measure.batch_size}, {sp.measure.head or 'classifier'}, runtime {spec.backend}, "
                  f"+ {calibration} whole models" + (" + the published models' blocks" if presets else ""))
    bar = Progress(TextColumn("[bold]timing[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.description}"), console=console, transient=True)
    task = bar.add_task("", total=None)

    def progress(done: int, total: int, text: str) -> None:
        bar.start()
        bar.update(task, completed=done, total=total, description=text)

    try:
        table = build_latency_table(sp, spec, out, calibration=calibration, progress=progress, seed=seed,
                                    extra=list(presets_for(sp.num_classes, sp.in_chans).values()) if presets else [])
    finally:
        if bar.live.is_started:
            bar.stop()
    fit = table.fit
    errs = [abs(r["predicted_ms"] / r["measured_ms"] - 1) for r in table.calibration if r["measured_ms"] > 0]
    fit_note = f"; on its {len(errs)} calibration models within {100 * max(errs):.0f} %" if errs else ""
    console.print(f"whole model = {fit.a:.3f} x sum of blocks + {fit.b:.2f} ms ({fit.method}{fit_note})")
    console.print(f"wrote {out} ({len(table.blocks)} blocks, {table.machine['device']}, {table.threads} threads) "
                  f"in {time.perf_counter() - t0:.0f} s")
