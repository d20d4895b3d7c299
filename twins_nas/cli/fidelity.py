"""`twins-nas fidelity`: `twins_nas.search.fidelity.experiment.fidelity_experiment`."""
from __future__ import annotations

import math
import time
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .app import app
from .common import console, print_notes, user_errors


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


@app.command(short_help="Measure how well each cheap scorer ranks architectures as a longer training does.")
@user_errors
def fidelity(
    space_path: Path = typer.Option(..., "--space", metavar="SPACE.yaml", help="The search space."),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                        help="Override a key of the space (the proxy it scores), e.g. proxy.epochs=1."),
    reference: list[str] = typer.Option([], "--reference", metavar="KEY=VALUE",
                                        help="Override of the proxy for the reference training, e.g. "
                                             "proxy.train_samples=18000 (default: 3x the images and 2x the epochs "
                                             "of the space's proxy, 6x its budget)."),
    archs: int = typer.Option(30, "--archs", min=3, help="Random architectures (Kendall tau is over these)."),
    pairs: int = typer.Option(10, "--pairs", min=0, help="Controlled pairs: two configs differing only in one "
                                                         "window, k, pattern or sub-sampling function."),
    seeds: int = typer.Option(2, "--seeds", min=1, help="Seeds of every scorer that depends on one (the "
                                                        "trainings; the zero-cost scores' initialisation) on the "
                                                        "first --seeded random architectures."),
    seeded: int = typer.Option(10, "--seeded", min=0, help="Random architectures scored with every seed."),
    seed: int = typer.Option(0, "--seed", help="Seed of the draw and of the trainings."),
    out: Path = typer.Option(Path("fidelity"), "--out", help="Output folder; a run there with the same settings "
                                                             "continues where it stopped."),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads (0 = every core)."),
    png: bool = typer.Option(True, "--png/--no-png", help="Also write fidelity.png (needs Chromium)."),
    stop_after: float | None = typer.Option(None, "--stop-after", min=0, metavar="MINUTES",
                                            help="Start no new training after this many minutes and write the "
                                                 "report of what is done (0: only the report); run again to "
                                                 "continue."),
    supernet: Path | None = typer.Option(None, "--supernet", metavar="DIR",
                                         help="A supernet of this space trained by `twins-nas supernet --out DIR`: "
                                              "adds the scorer `supernet` (its inherited weights' accuracy)."),
) -> None:
    """Rank architectures by every cheap scorer (params, GMACs, zero-cost scores, proxy rungs) and by a
    longer reference training; write fidelity.json/csv and a scatter plot of each scorer vs the reference."""
    from ..search.fidelity.experiment import FidelitySetup, fidelity_experiment
    t0 = time.perf_counter()

    def started(setup: FidelitySetup) -> None:
        console.print(f"[bold]fidelity[/] of {setup.space.name} ({setup.space.source}): {archs} architectures + "
                      f"{pairs} pairs; reference: {', '.join(setup.reference_overrides)}")

    with Progress(TextColumn("[bold]fidelity[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), TextColumn("{task.description}"), console=console, transient=True) as bar:
        task = bar.add_task("", total=None)

        def progress(done: int, total: int, text: str) -> None:
            bar.update(task, completed=done, total=total, description=text)

        try:
            summary = fidelity_experiment(space_path, overrides, reference, out, archs=archs, pairs=pairs,
                                          seeds=seeds, seeded=seeded, seed=seed, threads=threads, png=png,
                                          stop_after=stop_after, supernet=supernet, started=started,
                                          progress=progress)
        except KeyboardInterrupt:
            console.print(f"interrupted: the report of what is done is in {out}/; the same command continues")
            raise typer.Exit(130) from None
    t = Table(title=f"scorers vs reference ({summary.reference.budget_x:.1f}x the proxy budget)")
    for col in ("scorer", "Kendall τ", "τ 95 % CI", "Spearman ρ", "pairs ordered", "s / arch", "seed τ",
                "SNR", "SNR / min", "τ corrected", "τ vs proxy"):
        t.add_column(col, justify="left" if col == "scorer" else "right")
    for name, s in summary.scorers.items():
        ci = s.tau_ci95
        t.add_row(name + (" (default)" if name == summary.default_scorer else ""), _fmt(s.kendall_tau),
                  f"[{_fmt(ci[0])}, {_fmt(ci[1])}]", _fmt(s.spearman_rho),
                  _fmt(s.pair_agreement * 100 if s.pair_agreement == s.pair_agreement else None, ".0f") +
                  f" % of {s.n_pairs}", _fmt(summary.mean_seconds.get(name), ".1f"), _fmt(s.seed_tau),
                  _fmt(s.seed_snr), _fmt(s.snr_per_minute), _fmt(s.kendall_tau_corrected), _fmt(s.kendall_tau_vs_proxy))
    console.print(t)
    console.print("seed τ: Kendall τ between two seeds' orders (1 for params, GMACs and a supernet: no seed); "
                  "SNR: the architectures' true variance over one score's seed variance, SNR / min: that per "
                  "minute of scoring (what buys separation fastest); "
                  "τ corrected: τ / √(seed τ × reference seed τ), a correction for seed noise, not a measurement; "
                  "τ vs proxy: against the stand-alone proxy (accuracy, mean of its seeds)")
    r = summary.reference
    if r.seeded_archs:
        console.print(f"reference seed spread (std over seeds, mean of {r.seeded_archs} archs): "
                      f"{_fmt(r.seed_spread_mean, '.4f')}; τ between two seeds: {_fmt(r.seed_tau)}; "
                      f"SNR {_fmt(r.seed_snr)}")
    sep = summary.separation
    ratio = sep.reference_span_points / sep.reference_seed_sd if sep.reference_seed_sd else math.nan
    console.print(f"separation: {sep.verdict} (reference seed τ {_fmt(r.seed_tau)}, separates needs ≥ 0.8 and weakly "
                  f"≥ 0.5; span of its means {_fmt(sep.reference_span_points, '.4f')} = {_fmt(ratio, '.1f')} × its "
                  f"seed SD, separates needs ≥ 5)")
    jobs = summary.jobs
    state = "complete" if summary.complete or jobs is None else \
        f"partial: {jobs.done} of {jobs.total} scores; run the same command again to continue"
    console.print(f"wrote fidelity.json, fidelity.csv, fidelity.html to [bold]{out}/[/] ({state}) "
                  f"in {time.perf_counter() - t0:.0f} s")
    print_notes(summary.notes)
