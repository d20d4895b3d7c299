"""The resolution sweep behind `twins-nas profile`: cost, latency and memory of several
architectures at several input sizes, as one pandas DataFrame (one row per model x size).

Sizes are ints (n x n) or (H, W) pairs. With a segmentation `head` (`HeadConfig`, `UperNetConfig`), every
model is the dense one (`build_model(cfg, head=head)`): backbone, neck and head are counted
apart (`backbone_*`, `neck_*`, `head_*` columns) and the measured forward is the whole model.

Analytic columns (closed-form cost model, exact, milliseconds for the whole sweep): params,
GMACs in total and per category, the attention share of the GMACs, and what retargeting the
windows and k to each size would save (`retarget_*`, see `models.optimum`). Measured columns
(forward passes): latency / throughput (`measure_latency`, run by the spec's runtime, named in
`runtime`; `latency_spread` its across-round spread; `prepare_s` the seconds the runtime took
before its first timed pass: export, compilation, correctness check, never in the latency)
and the peak memory of the (eager) forward.

Measuring everything at large sizes on a CPU takes minutes (the global-attention reference
at 1024 alone is ~2 TMACs), so the measured part runs under an optional time budget. Every
model is built once, by `backends.timing_model` (as the search builds what it times), and timed
as a `MeasureSpec` says (default `SWEEP_SPEC`). The sweep predicts each cell's forward time from the cells already
measured (seconds per GMAC of the same model at its last size, else of all models) and always
measures the remaining cell with the fastest forward next, so each model runs at increasing
sizes. When the next cell no longer fits the time left (or would take over a quarter of the
budget: one mispredicted giant cannot overrun it by much), the remaining cells, the slowest
of all models, get `latency_est_ms` (the prediction) instead of a measurement: every model is
measured from the smallest size up to a common forward-time limit. Cells whose forward takes
>= `single_pass_s` are timed with one pass and no warm-up (warm-up effects are < 1 % there).

Peak memory here is measured in this process on one forward pass, which doubles as the
latency's warm-up (a seconds-long cell: its single timed pass): the peak resident set is reset
(/proc/self/clear_refs) after handing freed heap back to the OS (malloc_trim), and a forward on
a tiny input has paid the process's one-time costs, so the reading is the forward's own
increase, as `measure_peak_memory` measures it in a fresh process. On CUDA the allocator's
peak statistics are used.
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast

import pandas as pd
import torch

from ..config import ArchConfig
from ..models import DenseHead
from ..models.cost_model import CATEGORIES
from ..models.head_config import head_fields
from ..models.head_cost import analytic_flops, analytic_params, param_parts
from ..models.window_optimum import DEFAULT_MAX_ASPECT, DEFAULT_MIN_KEYS
from ..sizes import Resolution, as_size, format_size
from .backends import MeasureSpec, timing_model, torch_threads
from .flops import count_flops
from .latency import device_label, measure_latency, resolve_device
from .memory import PeakRSS, cpu_forward_peak_mb, cuda_forward_peak_mb, warm_up_cpu
from .window_optimality import retarget_columns

Progress = Callable[[int, int, str], None]  # (cells done, cells in all, what was just done)

_LADDER = (224, 320, 448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048)


def default_resolutions(max_res: int, min_res: int = 224) -> list[int]:
    """Input sizes from `min_res` up to `max_res` in steps that look even on a log axis,
    e.g. 1024 -> 224, 320, 448, 512, 640, 768, 896, 1024 (beyond 2048: steps of 512)."""
    if max_res < 32:
        raise ValueError(f"resolution {max_res} is too small (the smallest Twins input is 32)")
    if max_res <= min_res:
        return [max_res]
    ladder = list(_LADDER)
    while ladder[-1] < max_res:
        ladder.append(ladder[-1] + 512)
    out = [r for r in ladder if min_res <= r <= max_res]
    if min_res not in out:
        out.insert(0, min_res)
    if out[-1] != max_res:
        out.append(max_res)
    return out


def sizes_of(sizes: Iterable[Resolution]) -> list:
    """Distinct (H, W) sizes ordered by pixel count, then height."""
    return sorted({as_size(s) for s in sizes}, key=lambda s: (s[0] * s[1], s[0]))


def analytic_row(name: str, cfg: ArchConfig, resolution: Resolution, batch: int = 1,
                 head: DenseHead | None = None) -> dict:
    """The closed-form columns of one cell. `resolution` is the input size's side for a square
    and √(HW) otherwise (so the growth laws in r hold); `size` is 'HxW'."""
    H, W = as_size(resolution)
    row = dict(model=name, size=format_size((H, W)), height=H, width=W,
               resolution=H if H == W else math.sqrt(H * W), batch=batch)
    rep, parts = analytic_flops(cfg, (H, W), batch=batch, head=head), param_parts(cfg, head)
    total, params = rep.total, analytic_params(cfg, head=head)
    row.update(params=params, params_m=params / 1e6, gmacs=total / 1e9, **head_fields(head))
    row.update({f"{part}_params_m": n / 1e6 for part, n in parts.items()})
    row.update({f"{part}_gmacs": n / 1e9 for part, n in rep.part_totals.items()})
    cats = {c: rep.by_category.get(c, 0) for c in CATEGORIES}
    row.update({f"gmacs_{c}": v / 1e9 for c, v in cats.items()})
    attn = cats["lsa_matmul"] + cats["gsa_matmul"]
    row.update(attn_gmacs=attn / 1e9, attn_share=attn / total if total else 0.0,
               lsa_gmacs=cats["lsa_matmul"] / 1e9, gsa_gmacs=cats["gsa_matmul"] / 1e9)
    return row


SWEEP_SPEC = MeasureSpec(batch=1, warmup=1, min_repeats=3, max_repeats=30, budget_s=0.5)
"""How the sweep times a cell by default: 1 image, 1 warm-up pass (the memory pass when memory
is measured), 3 to 30 timed passes within 0.5 s."""

MEASURED_COLUMNS = ("latency_ms", "latency_iqr_ms", "latency_spread", "latency_repeats", "throughput", "latency_est_ms",
                    "peak_mem_mb", "prepare_s", "device", "threads", "dtype", "runtime")
_LABELS = ("device", "dtype", "runtime")  # text columns: None where nothing was measured


@dataclass
class _Planner:
    """Predicts what a cell costs from the cells measured so far; decides what fits."""

    budget_s: float | None
    single_pass_s: float
    spec: MeasureSpec  # how a cell is timed: its repeats and time budget
    latency: bool
    prior_s_per_gmac: float
    max_cell_share: float = 0.25
    start: float = field(default_factory=time.perf_counter)
    s_per_gmac: dict = field(default_factory=dict)  # model -> seconds/GMAC of its last measured cell
    measured_s: float = 0.0
    measured_gmacs: float = 0.0

    def forward_s(self, model: str, gmacs: float) -> float:
        if model in self.s_per_gmac:
            rate = self.s_per_gmac[model]
        elif self.measured_gmacs > 0:
            rate = self.measured_s / self.measured_gmacs
        else:
            rate = self.prior_s_per_gmac
        return gmacs * rate

    def cell_s(self, t: float) -> float:
        """Seconds that measuring a cell with single-forward time `t` will take."""
        if not self.latency or t >= self.single_pass_s:
            return t
        spec = self.spec
        timed = max(spec.min_repeats, min(math.ceil(spec.budget_s / t), spec.max_repeats)) * t if t > 0 else 0
        return t + timed  # warm-up (the memory pass) + at least min_repeats timed passes

    def cost_s(self, model: str, gmacs: float) -> float:
        return self.cell_s(self.forward_s(model, gmacs))

    def fits(self, cost: float) -> bool:
        """Whether a cell predicted to take `cost` seconds still fits the budget (and takes at
        most a quarter of it: one mispredicted giant cannot overrun the budget by much)."""
        if self.budget_s is None:
            return True
        left = self.budget_s - (time.perf_counter() - self.start)
        return cost <= min(left, self.max_cell_share * self.budget_s)

    def observe(self, model: str, gmacs: float, forward_s: float) -> None:
        if gmacs > 0:
            self.s_per_gmac[model] = forward_s / gmacs
            self.measured_s += forward_s
            self.measured_gmacs += gmacs


def _measure(configs: Mapping[str, ArchConfig], resolutions: list, gmacs: dict, spec: MeasureSpec, latency: bool,
             memory: bool, budget_s: float | None, single_pass_s: float, progress: Progress | None, done0: int,
             total: int, head: DenseHead | None = None) -> dict:
    """Forward-pass measurements of every cell that fits the budget: {(model, res): columns}.
    Models are built with `timing_model`, as the search builds the models it times."""
    dev = resolve_device(spec.device)
    batch, dtype = spec.batch, spec.dtype
    cuda = dev.type == "cuda"
    fmt = spec.memory_format(dev)
    label, threads = device_label(dev), torch.get_num_threads()
    plan = _Planner(budget_s, single_pass_s, spec, latency, prior_s_per_gmac=1e-4 if cuda else 0.02)
    # the cell with the fastest predicted forward first (re-predicted after every measurement):
    # each model runs at increasing sizes; when the budget ends, the slowest cells are left
    todo = {(name, r) for name in configs for r in resolutions}
    models: dict = {}  # built on first use, once per model
    out, done = {}, done0
    while todo:
        name, r = min(todo, key=lambda c: (plan.forward_s(c[0], gmacs[c]), c[1][0] * c[1][1], c[1]))
        if not plan.fits(plan.cost_s(name, gmacs[(name, r)])):
            break
        todo.remove((name, r))
        g = gmacs[(name, r)]
        row: dict = dict(device=label, threads=threads, dtype=dtype, runtime=spec.backend)
        if name not in models:
            models[name] = timing_model(configs[name], head).eval().to(dev, memory_format=fmt)  # type: ignore[call-overload]
            if dev.type == "cpu" and memory:
                warm_up_cpu(models[name])
        model = models[name]
        t0 = time.perf_counter()
        single = latency and plan.forward_s(name, g) >= single_pass_s
        if memory and not single:  # one forward, measured alone; it is also the latency's warm-up
            row["peak_mem_mb"] = (cuda_forward_peak_mb(model, r, batch, dev, dtype) if cuda
                                  else cpu_forward_peak_mb(model, r, batch, dtype))
        if latency:
            cell = replace(spec, device=str(dev), warmup=0 if single or memory else spec.warmup,
                           min_repeats=1 if single else spec.min_repeats, max_repeats=1 if single else spec.max_repeats)
            if single and memory and cuda:
                torch.cuda.synchronize(dev)
                torch.cuda.reset_peak_memory_stats(dev)
                base = torch.cuda.memory_allocated(dev)
            with PeakRSS() if single and memory and not cuda else contextlib.nullcontext() as peak:
                rep = measure_latency(model, r, spec=cell)
            if single and memory:  # a seconds-long forward: its one timed pass is measured
                row["peak_mem_mb"] = ((torch.cuda.max_memory_allocated(dev) - base) / 2 ** 20 if cuda
                                      else cast(PeakRSS, peak).mb)
            row.update(latency_ms=rep.latency_ms, latency_iqr_ms=rep.iqr_ms if rep.repeats > 1 else math.nan,
                       latency_spread=rep.spread if rep.rounds > 1 else math.nan, latency_repeats=rep.repeats,
                       throughput=rep.throughput, prepare_s=rep.prepare_s)
            plan.observe(name, g, rep.median_ms / 1e3)
        else:
            plan.observe(name, g, time.perf_counter() - t0)
        out[(name, r)] = row
        done += 1
        if progress:
            progress(done, total, f"{name} @ {format_size(r)}: {time.perf_counter() - t0:.1f}s")
        if not any(n == name for n, _ in todo):
            del models[name]
    for name, r in sorted(todo, key=lambda c: (list(configs).index(c[0]), c[1][0] * c[1][1], c[1])):  # did not fit
        out[(name, r)] = dict(device=label, threads=threads, dtype=dtype, runtime=spec.backend,
                              latency_est_ms=plan.forward_s(name, gmacs[(name, r)]) * 1e3)
        done += 1
        if progress:
            progress(done, total, f"{name} @ {format_size(r)}: estimated (budget)")
    return out


def profile_sweep(
    configs: Mapping[str, ArchConfig],
    resolutions: Iterable[Resolution],
    spec: MeasureSpec | None = None,
    *,
    latency: bool = True,
    memory: bool | None = None,
    fvcore: bool = False,
    budget_s: float | None = None,
    single_pass_s: float = 1.0,
    progress: Progress | None = None,
    head: DenseHead | None = None,
    retarget: bool = True,
    min_keys: int = DEFAULT_MIN_KEYS,
    max_aspect: float | None = DEFAULT_MAX_ASPECT,
    batch: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    cell_budget_s: float | None = None,
) -> pd.DataFrame:
    """One row per model x size (models in the given order, sizes by pixel count); sizes are
    ints (n x n) or (H, W). `head`: profile the dense model (see the module doc). `retarget`:
    add the `retarget_*` columns (closed form, backbone; rule: `min_keys`, `max_aspect`).

    `spec` (default `SWEEP_SPEC`) says how a cell is timed: device, dtype, batch (also of the
    analytic columns), threads, backend, and the warm-up, repeats and seconds of a cell that
    takes under `single_pass_s` (a slower one is timed once, without warm-up). `batch`,
    `device`, `dtype` and `cell_budget_s` (the spec's `budget_s`), when given, replace those
    fields of `spec`.

    `memory` defaults to `latency` (both need forward passes; with neither the sweep is
    analytic only and takes well under a second). `fvcore=True` adds `gmacs_fvcore`, counted
    by tracing (slow; the analytic count is exact). `budget_s` caps the seconds spent on
    forward passes of the whole sweep (see the module doc); None measures every cell.
    """
    given: dict[str, Any] = dict(batch=batch, device=device, dtype=dtype, budget_s=cell_budget_s)
    spec = replace(spec or SWEEP_SPEC, **{k: v for k, v in given.items() if v is not None})
    batch = spec.batch
    res = sizes_of(resolutions)
    if not res:
        raise ValueError("no resolutions given")
    if not configs:
        raise ValueError("no models given")
    memory = latency if memory is None else memory
    measured = latency or memory
    total = len(configs) * len(res) * (2 if measured else 1)
    rows, done = [], 0
    for name, cfg in configs.items():
        for r in res:
            cfg.stage_sizes(r)  # a one-line ConfigError when a size is too small
        for r in res:
            row = analytic_row(name, cfg, r, batch, head)
            if retarget:
                row.update(retarget_columns(cfg, r, min_keys, max_aspect))
            if fvcore:
                row["gmacs_fvcore"] = count_flops(cfg, r, batch=batch, head=head).total / 1e9
            rows.append(row)
            done += 1
            if progress:
                progress(done, total, f"{name} @ {format_size(r)}: {row['gmacs']:.1f} GMACs")
    meas = {}
    if measured:
        gmacs = {(row["model"], (row["height"], row["width"])): row["gmacs"] for row in rows}
        with torch_threads(spec.threads):
            meas = _measure(configs, res, gmacs, spec, latency, memory, budget_s, single_pass_s, progress, done,
                            total, head)
    for row in rows:
        m = meas.get((row["model"], (row["height"], row["width"])), {})
        for c in MEASURED_COLUMNS:
            row[c] = m.get(c, math.nan if c not in _LABELS else None)
    df = pd.DataFrame(rows)
    if fvcore:  # next to the analytic count
        cols = list(df.columns)
        cols.insert(cols.index("gmacs") + 1, cols.pop(cols.index("gmacs_fvcore")))
        df = df[cols]
    return df
