"""`twins-nas supernet`: `twins_nas.supernet.train.train_supernet`."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..hardware import cpu_cores
from .app import app
from .common import console, err_console, user_errors


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


@app.command(short_help="Train a weight-sharing supernet of a space (one-shot NAS), or continue one.")
@user_errors
def supernet(
    space: Path = typer.Option(..., "--space", "-s", metavar="SPACE.yaml", help="The search space."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder of the supernet (checkpoint and curve.csv); a run "
                                                      "there continues the supernet it holds."),
    minutes: float | None = typer.Option(None, "--minutes", help="Stop this run after about this many minutes "
                                                                 "(checkpointed); run again to continue."),
    steps: int | None = typer.Option(None, "--steps", help="Planned training steps in all (the learning-rate "
                                                           "schedule's length; default supernet.epochs passes "
                                                           "over the proxy images). Fixed by the first run."),
    seed: int = typer.Option(0, "--seed", help="Seeds the weights, the image order and the random subnets."),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads (0 = every core); the same count gives "
                                                            "the same weights."),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY.PATH=VALUE",
                                        help="Override a key of the space (proxy.batch_size=64) or a supernet "
                                             "setting: supernet.random_subnets (2), supernet.distill (true), "
                                             "supernet.epochs (20), supernet.checkpoint_every (25), "
                                             "supernet.eval_every (25)."),
) -> None:
    """Train the supernet of a space: every network of the space is a subnet of it on shared (sliced)
    weights, trained with the sandwich rule (the largest, the smallest and random subnets each step)
    on the space's proxy task. Writes OUT/supernet.pt and OUT/curve.csv; the same command again
    continues it. Score configs with its weights through `twins_nas.supernet.SupernetScorer`."""
    import torch  # heavy import: see README

    from ..search.space.space import load_space  # heavy import: see README
    from ..supernet.checkpoint import space_digest  # heavy import: see README
    from ..supernet.settings import split_overrides  # heavy import: see README
    from ..supernet.train import check_run_args, existing_checkpoint, train_supernet  # heavy import: see README

    check_run_args(minutes, steps)
    torch.set_num_threads(threads or cpu_cores())
    space_overrides, settings = split_overrides(overrides)
    sp = load_space(space, space_overrides)
    ckpt = existing_checkpoint(sp, out, seed, steps, settings)
    where = f"continuing at step {ckpt.step} of {ckpt.total_steps}" if ckpt is not None else "a fresh supernet"
    console.print(f"[bold]supernet[/] of {sp.name} ({sp.source}, supernet digest {space_digest(sp)[:12]}) in "
                  f"{out}/: {where}; sandwich of {2 + settings.random_subnets} subnets per step"
                  + (", in-place distillation" if settings.distill else ""))
    with Progress(TextColumn("[bold]supernet[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), TextColumn("{task.description}"), console=err_console,
                  transient=True) as bar:
        task = bar.add_task("", total=None)

        def progress(row: dict, total: int) -> None:
            bar.update(task, completed=row["step"], total=total, description=f"loss {row['loss']:.3f}")

        try:
            run = train_supernet(sp, out, minutes=minutes, steps=steps, seed=seed, settings=settings,
                                 progress=progress)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: the last checkpoint stands; the same command continues")
            raise typer.Exit(130) from None
    ran = run.step - run.started_at
    per_step = f", {run.seconds / ran:.2f} s/step" if ran else ""
    console.print(f"{run.step}/{run.total_steps} steps" + (f" ({ran} this run{per_step})" if run.started_at else
                                                           f"{per_step}") + f"; {run.params:,} parameters")
    if run.last is not None:
        console.print(f"loss {run.last['loss']:.4f} (largest {run.last['loss_largest']:.4f}, smallest "
                      f"{run.last['loss_smallest']:.4f}) at step {run.last['step']}")
    if run.last_eval is not None:
        console.print(f"validation accuracy at step {run.last_eval['step']}: largest subnet "
                      f"{_pct(run.last_eval['acc_largest'])}, smallest {_pct(run.last_eval['acc_smallest'])}")
    for f in (run.checkpoint, run.curve):
        console.print(f"  wrote {f}", highlight=False)
    if not run.complete:
        err_console.print(f"[yellow]stopped at step {run.step} of {run.total_steps}[/]: run the same command again "
                          "to continue")
