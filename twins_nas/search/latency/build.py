"""`build_latency_table`: time every block a space can produce, on this machine, with a
timing backend, plus a few whole models to fit what a model adds beyond its blocks.

Each block (`blocks.space_blocks`) is built alone (`modules.block_module`) and timed with
`profile.latency.time_forward` on a random input of the shape the network feeds it, through
the spec's runtime (`MeasureSpec.backend`: any registered backend). Blocks are cheap, so the
default effort (`TABLE_SPEC`: one warm-up pass, three rounds, about 0.4 s per block) keeps a
table of a few hundred blocks within minutes. Then `calibration` whole models (the space's
smallest and largest by GMACs and random ones, seeded) are timed whole with `measure_latency`
(built with `timing_model`, as the search builds them) and ``measured = a * sum_of_blocks + b``
is fitted by least squares: the part of a model's time no block holds (the tensors handed from
block to block, caches that a block timed alone finds warm).
"""
from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from ... import __version__
from ...config import ArchConfig
from ...errors import ConfigError
from ...hardware import cpu_model
from ...models.head_cost import analytic_flops
from ...profile.backends import MeasureSpec, get_backend, timing_model, torch_threads
from ...profile.latency import device_label, measure_latency, resolve_device, time_forward
from ..space.space import SearchSpace, network_key
from .blocks import BlockKey, model_blocks, space_blocks
from .modules import block_example, block_module
from .table import BlockTime, Fit, LatencyTable, write_table

Progress = Callable[[int, int, str], None]

# how hard one block is timed (device, dtype, threads and runtime come from the caller)
TABLE_SPEC = MeasureSpec(warmup=1, min_repeats=6, max_repeats=30, budget_s=0.4, rounds=3)
CALIBRATION_BUDGET_S = 1.5  # seconds of timing per calibration model, at most (4x a block's budget below it)
DEFAULT_CALIBRATION = 8
_DRAWS = 200  # random configs drawn to find the space's smallest and largest by GMACs


def calibration_configs(space: SearchSpace, n: int, seed: int = 0) -> list[ArchConfig]:
    """`n` distinct configs of `space`: the smallest and the largest by GMACs at its measured
    size (among `_DRAWS` seeded draws), then random ones."""
    rng = random.Random(seed)
    drawn: dict[tuple, ArchConfig] = {}
    for _ in range(_DRAWS):
        cfg = space.random_config(rng)
        drawn.setdefault(network_key(cfg), cfg)
    configs = list(drawn.values())
    if n <= 0 or not configs:
        return []
    gmacs = {network_key(c): analytic_flops(c, space.measure_size, head=space.measure.head_config).gmacs
             for c in configs}
    by_cost = sorted(configs, key=lambda c: gmacs[network_key(c)])
    picked = [by_cost[0], by_cost[-1]][:n]
    rest = [c for c in configs if network_key(c) not in {network_key(p) for p in picked}]
    rng.shuffle(rest)
    return (picked + rest)[:n]


def fit_overhead(blocks_ms: list[float], measured_ms: list[float]) -> Fit:
    """``measured = a * blocks + b``: by least squares where three or more models with
    different sums give a positive slope and a positive prediction for every one of them;
    otherwise (fewer models, or a fit that noise bent out of shape) the median ratio
    measured / blocks with b = 0, which can never predict a negative time; no models: a = 1,
    b = 0."""
    x, y = np.asarray(blocks_ms, float), np.asarray(measured_ms, float)
    if len(x) >= 3 and np.ptp(x) > 0:
        a, b = np.polyfit(x, y, 1)
        if a > 0 and bool(np.all(a * x + b > 0)):
            return Fit(float(a), float(b), "least squares")
    ok = (x > 0) & (y > 0)
    if ok.any():
        return Fit(float(np.median(y[ok] / x[ok])), 0.0, "median ratio")
    return Fit()


def _versions(runtime: str) -> dict[str, str]:
    v = {"twins_nas": __version__, "python": platform.python_version(), "torch": torch.__version__,
         "numpy": np.__version__}
    try:  # a runtime that is a library (onnxruntime): its version too
        v[runtime] = importlib.metadata.version(runtime)
    except importlib.metadata.PackageNotFoundError:
        pass
    return v


def time_block(key: BlockKey, spec: MeasureSpec, device: torch.device) -> BlockTime:
    """Time one block alone as `spec` says, on a random input of its shape on `device`."""
    module = block_module(key)
    example = block_example(key, device=device, memory_format=spec.memory_format(device))
    t = time_forward(module, example, spec)
    return BlockTime(latency_ms=t.latency_ms, spread=t.spread, repeats=t.repeats)


def build_latency_table(space: SearchSpace, spec: MeasureSpec = TABLE_SPEC, out_path: str | Path | None = None,
                        calibration: int = DEFAULT_CALIBRATION, progress: Progress | None = None,
                        seed: int = 0, extra: Sequence[ArchConfig] = ()) -> LatencyTable:
    """Time every block of `space` (at its measured size, ``measure.batch_size`` and
    ``measure.head``) as `spec` says (device, dtype, threads, runtime and effort; its batch is
    the space's), then `calibration` whole models, fit the whole-model overhead and write the
    table to `out_path` (atomically) when given. `progress(done, total, text)` is called as
    blocks and models are done; the blocks of the `extra` configs (e.g. the published models,
    which a space need not contain) are timed too. A bad device or runtime: one-line
    ConfigError, before any timing."""
    t0 = time.perf_counter()
    get_backend(spec.backend)
    try:
        dev = resolve_device(spec.device)
    except ValueError as e:
        raise ConfigError(str(e), field="device") from None
    if calibration < 0:
        raise ConfigError(f"calibration={calibration}: must be a whole number >= 0", field="calibration")
    spec = replace(spec, device=str(dev), batch=space.measure.batch_size, dtype=space.measure.dtype)
    head, size = space.measure.head_config, space.measure_size
    keys = sorted(space_blocks(space).union(*(model_blocks(c, size, spec.batch, head) for c in extra)),
                  key=lambda k: k.id)
    configs = calibration_configs(space, calibration, seed)
    total, done = len(keys) + len(configs), 0
    blocks: dict[str, BlockTime] = {}
    rows: list[dict] = []
    with torch_threads(spec.threads):
        threads = torch.get_num_threads()
        for key in keys:
            if progress:
                progress(done, total, key.id)
            blocks[key.id] = time_block(key, spec, dev)
            done += 1
        whole = replace(spec, budget_s=max(spec.budget_s, min(CALIBRATION_BUDGET_S, 4 * spec.budget_s)),
                        rounds=max(spec.rounds, 3))
        for cfg in configs:
            if progress:
                progress(done, total, f"whole model {len(rows) + 1}/{len(configs)}")
            rep = measure_latency(timing_model(cfg, head), size, spec=whole)
            summed = sum(blocks[k.id].latency_ms for k in model_blocks(cfg, size, spec.batch, head))
            rows.append({"config": cfg.to_dict(), "measured_ms": rep.latency_ms, "spread": rep.spread,
                         "blocks_ms": summed})
            done += 1
    if progress:
        progress(done, total, "fitting")
    fit = fit_overhead([r["blocks_ms"] for r in rows], [r["measured_ms"] for r in rows])
    for r in rows:
        r["predicted_ms"] = fit(r["blocks_ms"])
    machine = {"device": device_label(dev) if dev.type != "cpu" else f"cpu ({cpu_model()})", "cpu": cpu_model()}
    table = LatencyTable(
        space={"name": space.name, "hash": space.hash, "source": space.source}, machine=machine,
        runtime=spec.backend, device=str(dev), threads=threads, dtype=spec.dtype, batch=spec.batch, size=size,
        head=head, blocks=blocks, fit=fit, calibration=rows, libraries=_versions(spec.backend),
        timing={k: v for k, v in asdict(spec).items() if k not in ("device", "dtype", "batch", "threads", "backend")},
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), build_s=time.perf_counter() - t0)
    if out_path is not None:
        write_table(table, out_path)
    return table
