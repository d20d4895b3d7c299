"""`twins-nas search` (`twins_nas.search.study.run_search`; with --dry-run
`twins_nas.search.run.preview.preview_search`) and `twins-nas export`
(`twins_nas.search.report.export.export_study`)."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..search.evaluate.status import StopReason
from ..search.report.export import Picked, export_study
from ..search.run.preview import SearchPreview, preview_search
from ..search.run.samplers import SAMPLERS
from ..search.run.settings import SearchSettings
from ..search.run.storage import DEFAULT_HEARTBEAT_S, ENV_STORAGE, GRACE_HEARTBEATS, describe_storage
from ..search.space.metrics import METRICS
from ..search.space.space import SearchSpace, load_space
from ..search.study import run_search
from ..sizes import format_size
from .app import app
from .common import console, err_console, fail, print_notes, user_errors
from .display import SearchDisplay

_PICK_HELP = ("Which config goes to best_config.json: 'knee' (the balanced point of the front, default), "
              "'max accuracy where throughput>=500', 'min latency_ms where accuracy>=0.8 and params_m<=20', "
              f"'best accuracy'. Metrics: {', '.join(METRICS)}.")
_SHOWN_METRICS = ("accuracy", "throughput", "latency_ms", "params_m", "gmacs")  # in the "picked architecture" line


def _print_preview(space: SearchSpace, settings: SearchSettings, preview: SearchPreview) -> None:
    console.print(f"[bold]space[/] {space.name} ({space.source}, sha256 {space.hash[:12]}): "
                  f"[bold]{space.size():,}[/] distinct networks")
    console.print("objectives: " + ", ".join(f"{m} ({d})" for m, d in space.objectives.items()) +
                  ("; constraints: " + ", ".join(
                      f"{m} " + " and ".join(x for x in (f">= {b.min:g}" if b.min is not None else "",
                                                         f"<= {b.max:g}" if b.max is not None else "") if x)
                      for m, b in space.constraints.items()) if space.constraints else "; no constraints"))
    p = space.proxy
    head = f" with a {space.measure.head} head ({space.measure.num_classes} classes)" if space.measure.head else ""
    console.print(f"measured at {format_size(space.measure_size)} px{head}, batch {space.measure.batch_size}, "
                  f"{space.measure.dtype}, "
                  f"device {settings.device}; proxy: {p.dataset} {p.train_samples}/{p.val_samples} images at "
                  f"{p.resolution} px, {p.epochs} epoch(s), width x{p.width_mult:g}")
    if preview.feasible_share is not None:
        console.print(f"closed-form constraints hold for {100 * preview.feasible_share:.0f}% of {preview.draws} "
                      "random configs" + ("" if preview.closed_form_only else
                                          " (timed, zero-cost and accuracy constraints are checked during the search)"))
    for i, sample in enumerate(preview.samples):
        m, viol = sample.metrics, sample.violations
        t = Table(title=f"sampled config {i + 1} (seed {settings.seed}): {m['params_m']:.2f} M params, "
                        f"{m['gmacs']:.3f} GMACs, " + ("feasible" if not viol else "breaks " + ", ".join(viol)),
                  title_justify="left")
        for col in ("stage", "depth", "dim", "heads", "mlp", "pattern", "window", "k", "sub-sample"):
            t.add_column(col, justify="right" if col in ("stage", "depth", "dim", "heads", "mlp") else "left")
        for j, st in enumerate(sample.config.stages):
            kinds = st.block_types
            t.add_row(str(j + 1), str(st.depth), str(st.embed_dim), str(st.num_heads), f"{st.mlp_ratio:g}",
                      st.pattern, f"{st.window[0]}x{st.window[1]}" if "L" in kinds and st.window else "-",
                      ("-" if "G" not in kinds else "1" if st.sr_pair == (1, 1) else
                       f"{st.sr_pair[0]}" if st.sr_pair[0] == st.sr_pair[1] else f"{st.sr_pair[0]}x{st.sr_pair[1]}"),
                      st.subsample if "G" in kinds and st.sr_pair != (1, 1) else "-")
        console.print(t)
    if preview.data is not None:
        d = preview.data
        console.print(f"proxy data: {d.name}, {d.train} training / {d.val} validation images, {d.num_classes} classes")
    console.print(f"would run {settings.trials} trials with {settings.workers} worker(s), sampler "
                  f"{settings.sampler}, study {settings.study_name!r} in {preview.storage}, report in "
                  f"{settings.out_dir}/ (dry run: nothing written)")


def _picked_line(best: Picked) -> str:
    m = best.metrics
    standalone = m.get("accuracy_inherited") is not None  # ranked by stand-alone trainings after a supernet search
    shown = ", ".join(f"{k} {m[k]:.4g}" + (f" ± {best.accuracy_se:.2g} (SE, mean of {best.replicates})"
                                            if k == "accuracy" and best.accuracy_se is not None else "")
                      + (f" stand-alone (inherited {m['accuracy_inherited']:.4g})" if k == "accuracy" and standalone
                         else "")
                      for k in _SHOWN_METRICS if k in m)
    return f"picked architecture {best.architecture} (trial {best.trial}, {best.pick}): {shown}"


@app.command(short_help="Search a space for architectures that are both accurate and fast, under its constraints.")
@user_errors
def search(
    space: Path = typer.Option(..., "--space", "-s", help="Search-space YAML (see search_spaces/svt.yaml)."),
    trials: int = typer.Option(50, "--trials", "-n",
                               help="Finished trials wanted in the study, in total: a second run continues "
                                    "up to this number."),
    study_name: str | None = typer.Option(None, "--study-name", help="Study name (default: the space's name)."),
    storage: str | None = typer.Option(
        None, "--storage", envvar=ENV_STORAGE, show_envvar=True, show_default=False,
        help="Optuna storage URL (sqlite:///x.db, postgresql://user@host/db: the same command on several "
             "machines shares one search) or a journal file (*.journal / *.log) for several processes (default: "
             "OUT/study.db, or OUT/study.journal with --workers > 1). Leave the password out of the URL: libpq "
             "reads PGPASSWORD or ~/.pgpass."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Report folder (default: reports/STUDY-NAME)."),
    device: str | None = typer.Option(
        None, "--device", help="auto | cpu | cuda | cuda:N | mps, for timing and proxy training "
                               "(default: the space's measure.device; auto = CUDA when present)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the sampler and every trial's proxy training."),
    workers: int = typer.Option(1, "--workers", "-j", help="Local worker processes sharing the storage."),
    threads: int | None = typer.Option(None, "--threads",
                                          help="torch CPU threads per worker (default: CPU cores // workers)."),
    timeout: float | None = typer.Option(
        None, "--timeout", help="Stop starting trials this many seconds after the start (running ones finish)."),
    sampler: str = typer.Option("tpe", "--sampler", help=" | ".join(SAMPLERS) + "."),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY.PATH=VALUE",
                                        help="Override a field of the space file (repeatable): proxy.epochs=1, "
                                             "stages.2.depth=[6,8], constraints.gmacs.max=3."),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Validate, print the space size and three sampled configs, and stop."),
    data_root: Path | None = typer.Option(None, "--data-root", help="Where the proxy data set lives."),
    pick: str = typer.Option("knee", "--pick", help=_PICK_HELP),
    png: bool = typer.Option(True, "--png/--no-png", help="Also write pareto.png (needs a Chromium)."),
    heartbeat: int = typer.Option(DEFAULT_HEARTBEAT_S, "--heartbeat", metavar="SECONDS",
                                  help="On a database server: a running trial's heartbeat interval; a trial "
                                       f"silent for {GRACE_HEARTBEATS} intervals is failed and its config run "
                                       "again."),
    timing_budget: float = typer.Option(1.0, "--timing-budget", metavar="SECONDS",
                                        help="Time spent timing each full-size model (at least 3 passes after "
                                             "1 warm-up; stops early once the timings agree within 5%)."),
    supernet: Path | None = typer.Option(None, "--supernet", metavar="DIR",
                                         help="A supernet of this space trained by `twins-nas supernet --out DIR`: "
                                              "every trial's accuracy is its inherited weights' score (no proxy "
                                              "training; no replicates)."),
    supernet_samples: int | None = typer.Option(None, "--supernet-samples", metavar="N", min=1,
                                                help="With --supernet: score every config on a fixed class-balanced "
                                                     "subset of N validation images (faster, coarser; default: "
                                                     "all of them)."),
    retrain: int = typer.Option(8, "--retrain", metavar="K", min=0,
                                help="With --supernet: train the top K architectures of the inherited front "
                                     "stand-alone with the space's proxy at the end; the report ranks by that "
                                     "(0: none)."),
    retrain_seeds: int = typer.Option(2, "--retrain-seeds", metavar="S", min=1,
                                      help="With --supernet: seeds per stand-alone training of --retrain."),
) -> None:
    """Search a space for architectures that are both accurate (proxy training) and fast
    (measured throughput of the full-size model), under the space's constraints.

    Writes OUT/best_config.json, pareto.json, trials.csv, pareto.html (+ .png) and keeps the
    study in OUT/study.db: the same command again continues it up to --trials finished trials.
    """
    sp = load_space(space, overrides, data_root=data_root)
    settings = SearchSettings.for_space(sp, trials, study_name=study_name, out_dir=out, device=device,
                                        timing_budget=timing_budget, storage=storage, seed=seed, workers=workers,
                                        timeout=timeout, sampler=sampler, pick=pick, png=png, threads=threads,
                                        heartbeat=heartbeat, supernet=str(supernet) if supernet else None,
                                        supernet_samples=supernet_samples, retrain=retrain,
                                        retrain_seeds=retrain_seeds)
    if dry_run:
        _print_preview(sp, settings, preview_search(sp, settings))
        return
    console.print(f"[bold]search[/] {settings.study_name}: space {sp.source} ({sp.size():,} networks), {trials} "
                  f"trials, sampler {sampler}, {workers} worker(s), storage "
                  f"{describe_storage(settings.storage_spec())}")
    try:
        res = run_search(sp, settings, progress=lambda study: SearchDisplay(err_console, study, sp, trials),
                         status=err_console.status)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None
    print_notes(res.notes)
    if res.stopped == StopReason.STORAGE:
        fail(f"search stopped: {res.message}; the same command continues it", code=1)
    c = res.counts
    extra = ", ".join(f"{c[k]} {k}" for k in ("infeasible", "pruned", "failed", "surplus") if c[k])
    console.print(f"{res.finished}/{res.target} trials finished" + (f" ({extra})" if extra else ""))
    if res.best is not None:
        console.print(_picked_line(res.best))
    for f in res.files:
        console.print(f"  wrote {f}", highlight=False)
    if res.stopped == StopReason.TIMEOUT:
        err_console.print(f"[yellow]stopped at --timeout[/]: run the same command again to continue to {trials}")
    elif res.stopped == StopReason.INTERRUPTED:
        raise typer.Exit(130)
    elif res.stopped in (StopReason.FAILING, StopReason.CRASHED, StopReason.STORAGE):
        err_console.print(f"[bold red]error:[/] search stopped: {res.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


@app.command("export", short_help="Rewrite a study's report from its storage, e.g. with another pick rule.")
@user_errors
def export(
    study: str = typer.Option(..., "--study",
                              help="Study name (the search's --study-name, by default the space name)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the report files."),
    storage: str | None = typer.Option(
        None, "--storage", envvar=ENV_STORAGE, show_envvar=True, show_default=False,
        help="Storage URL or journal file (default: OUT/study.journal or OUT/study.db, the one a search there "
             "continues)."),
    pick: str = typer.Option("knee", "--pick", help=_PICK_HELP),
    png: bool = typer.Option(True, "--png/--no-png", help="Also write pareto.png (needs a Chromium)."),
) -> None:
    """Rewrite a study's report (best_config.json, pareto.json, trials.csv, pareto.html/png)
    from its storage, e.g. with another --pick."""
    res = export_study(study, out, pick=pick, storage=storage, png=png, strict=True)
    print_notes(res.notes)
    if res.best is None:
        fail(f"study {study!r} has no finished feasible trial: nothing to pick")
    console.print(_picked_line(res.best))
    for f in res.files:
        console.print(f"  wrote {f}", highlight=False)
