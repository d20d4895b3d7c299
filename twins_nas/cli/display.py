"""The live view of `twins-nas search`: a progress bar (finished / N) and the best front so
far, refreshed from the study's storage."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any, cast

import optuna
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..search.pareto import pareto_mask
from ..search.run.replication import study_architectures
from ..search.run.trials import count_trials
from ..search.space.space import SearchSpace

FRONT_ROWS = 8  # front architectures shown; the rest are counted in the caption


def fmt_metric(metric: str, v: Any, se: float | None = None) -> str:
    """A metric value for a table cell: accuracy in % (± its standard error `se` when given),
    speeds and memory to 0.1, others to 0.01."""
    if v is None:
        return "-"
    if metric == "accuracy":
        return f"{100 * v:.2f}%" + ("" if se is None else f" ±{100 * se:.2f}")
    if metric in ("throughput", "latency_ms", "peak_mem_mb"):
        return f"{v:.1f}"
    return f"{v:.2f}"


class SearchDisplay:
    """`with SearchDisplay(console, study, space, n) as update:` shows the view while the block
    runs; `update()` refreshes it (the shape `run_search(progress=...)` expects)."""

    def __init__(self, console: Console, study: optuna.Study, space: SearchSpace, n: int):
        self.study, self.space, self.n = study, space, n
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[extra]}"), TimeElapsedColumn(), TextColumn("eta"),
                                 TimeRemainingColumn(), console=console)
        self.task = self.progress.add_task(f"search {study.study_name}", total=n,
                                           completed=count_trials(study)["complete"], extra="")
        self.live = Live(self._render(), console=console, refresh_per_second=2, transient=False)

    def _front_table(self) -> Table:
        archs = [a for a in study_architectures(self.study)[0]
                 if a.feasible and all(a.metrics.get(m) is not None for m in self.space.objectives)]
        table = Table(title="best front so far (architectures: mean of their replicates)", title_justify="left",
                      show_edge=False, pad_edge=False)
        cols = list(self.space.objectives) + [m for m in ("params_m", "gmacs") if m not in self.space.objectives]
        table.add_column("arch", justify="right")
        table.add_column("n", justify="right")
        for m in cols:
            table.add_column(m, justify="right")
        if not archs:
            return table
        rows = [a.metrics for a in archs]
        mask = pareto_mask(rows, cast("Mapping[str, str]", self.space.objectives))  # Metric keys are str
        first, direction = next(iter(self.space.objectives.items()))
        front = sorted((i for i in range(len(rows)) if mask[i]), key=lambda i: rows[i][first],
                       reverse=direction == "maximize")
        for i in front[:FRONT_ROWS]:
            a = archs[i]
            table.add_row(a.id, str(a.replicates), *(fmt_metric(m, rows[i].get(m), a.se.get(m)) for m in cols))
        if len(front) > FRONT_ROWS:
            table.caption = f"... and {len(front) - FRONT_ROWS} more on the front"
        return table

    def _render(self) -> Group:
        return Group(self.progress, self._front_table())

    def update(self) -> None:
        c = count_trials(self.study)
        extra = ", ".join(f"{c[k]} {k}" for k in ("running", "infeasible", "pruned", "failed") if c[k])
        self.progress.update(self.task, completed=min(c["complete"], self.n), extra=extra)
        self.live.update(self._render())

    def __enter__(self) -> Callable[[], None]:
        self.live.__enter__()
        return self.update

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(Exception):
            self.update()
        self.live.__exit__(*exc)
        if not self.live.console.is_terminal:
            self.live.console.line()  # the last render of a non-terminal Live ends without one
