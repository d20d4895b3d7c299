"""Forward time of each stage of a Twins backbone at one input size.

The backbone's `forward_features` runs with a timestamp taken as each stage's patch
embedding starts and once at the end (synchronised on CUDA), so stage i's time is its patch
embedding, blocks and PEG. One untimed warm-up pass, then timed passes until `budget_s` is
spent (at least one, at most `max_repeats`); the median per stage is reported. A pass that
alone takes over a third of the budget is timed once, with no warm-up.

With another runtime than eager (``compile``, ``onnxruntime``: see `runtimes`) no hook can
reach inside the compiled or exported graph: each stage (`Twins.forward_stage`) is then
prepared by the runtime as a network of its own, on the map the stages before it make, and
timed alone (one warm-up pass, then passes within its share of the budget). Their sum leaves
out what a runtime fuses across stage boundaries.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..config import ArchConfig
from ..models import Twins
from ..sizes import Resolution, as_size
from .backends import DEFAULT_BACKEND, MeasureSpec, get_backend, timing_model
from .latency import Timer, device_label, resolve_device


@dataclass(frozen=True)
class StageTiming:
    stage_ms: list[float]  # median per stage
    repeats: int
    device: str

    @property
    def total_ms(self) -> float:
        return sum(self.stage_ms)


def stage_latency(model_or_cfg: Twins | ArchConfig, resolution: Resolution, device: str = "auto",
                  batch: int = 1, budget_s: float = 10.0, max_repeats: int = 5,
                  runtime: str = DEFAULT_BACKEND) -> StageTiming:
    """Median forward milliseconds of every stage of a backbone (or a config, built with
    `timing_model`) on a (batch, in_chans, H, W) input, in eval mode without autograd, run by
    `runtime` (a name of `BACKENDS`; see the module doc)."""
    dev = resolve_device(device)
    backend = get_backend(runtime)
    model = timing_model(model_or_cfg) if isinstance(model_or_cfg, ArchConfig) else model_or_cfg
    model = model.eval().to(dev)
    H, W = as_size(resolution)
    model.cfg.stage_sizes((H, W))  # one line when too small
    x = torch.randn(batch, model.cfg.in_chans, H, W, device=dev)
    if runtime != DEFAULT_BACKEND:
        return _runtime_stages(model, x, backend.name, budget_s, max_repeats)
    stamps: list[float] = []

    def stamp(*_) -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        stamps.append(time.perf_counter())

    handles = [m.register_forward_pre_hook(stamp) for m in model.patch_embeds]

    def one_pass() -> list[float]:
        stamps.clear()
        model.forward_features(x)
        stamp()
        return [1e3 * (b - a) for a, b in zip(stamps, stamps[1:])]

    try:
        with torch.inference_mode():
            start = time.perf_counter()
            runs = [one_pass()]
            if time.perf_counter() - start <= budget_s / 3:  # that was the warm-up
                runs = []
                while len(runs) < max(1, max_repeats) and (not runs or time.perf_counter() - start < budget_s):
                    runs.append(one_pass())
    finally:
        for h in handles:
            h.remove()
    per_stage = [statistics.median(r[i] for r in runs) for i in range(len(model.patch_embeds))]
    return StageTiming(stage_ms=per_stage, repeats=len(runs), device=device_label(dev))


class _Stage(nn.Module):
    """Stage `i` of a backbone as a network of its own (`Twins.forward_stage`)."""

    def __init__(self, model: Twins, i: int) -> None:
        super().__init__()
        self.model, self.i = model, i

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_stage(self.i, x)


def _runtime_stages(model: Twins, x: torch.Tensor, runtime: str, budget_s: float, max_repeats: int) -> StageTiming:
    """Every stage prepared by `runtime` on the map of the stages before it and timed alone,
    within an equal share of `budget_s` (at least one pass each)."""
    backend = get_backend(runtime)
    spec = MeasureSpec(device=str(x.device), batch=x.shape[0], backend=runtime, channels_last=False)
    timer = Timer(x.device, backend.synchronize)
    n = len(model.patch_embeds)
    per_stage, repeats = [], max(1, max_repeats)
    for i in range(n):
        with backend.prepare(_Stage(model, i), x, spec) as run:
            run(x)  # warm-up
            timer.sync()
            times: list[float] = []
            start = time.perf_counter()
            while len(times) < repeats and (not times or time.perf_counter() - start < budget_s / n):
                times.append(timer(lambda: run(x)))  # noqa: B023  (called at once, in this pass)
        per_stage.append(statistics.median(times))
        repeats = min(repeats, len(times))
        with torch.no_grad():
            x = model.forward_stage(i, x).contiguous()
    return StageTiming(stage_ms=per_stage, repeats=repeats, device=device_label(x.device))
