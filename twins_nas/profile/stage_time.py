"""Forward time of each stage of a Twins backbone at one input size.

The backbone's `forward_features` runs with a timestamp taken as each stage's patch
embedding starts and once at the end (synchronised on CUDA), so stage i's time is its patch
embedding, blocks and PEG. One untimed warm-up pass, then timed passes until `budget_s` is
spent (at least one, at most `max_repeats`); the median per stage is reported. A pass that
alone takes over a third of the budget is timed once, with no warm-up.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from ..config import ArchConfig
from ..models import Twins
from ..sizes import Resolution, as_size
from .backends import timing_model
from .latency import device_label, resolve_device


@dataclass(frozen=True)
class StageTiming:
    stage_ms: list[float]  # median per stage
    repeats: int
    device: str

    @property
    def total_ms(self) -> float:
        return sum(self.stage_ms)


def stage_latency(model_or_cfg: Twins | ArchConfig, resolution: Resolution, device: str = "auto",
                  batch: int = 1, budget_s: float = 10.0, max_repeats: int = 5) -> StageTiming:
    """Median forward milliseconds of every stage of a backbone (or a config, built with
    `timing_model`) on a (batch, in_chans, H, W) input, in eval mode without autograd."""
    dev = resolve_device(device)
    model = timing_model(model_or_cfg) if isinstance(model_or_cfg, ArchConfig) else model_or_cfg
    model = model.eval().to(dev)
    H, W = as_size(resolution)
    model.cfg.stage_sizes((H, W))  # one line when too small
    x = torch.randn(batch, model.cfg.in_chans, H, W, device=dev)
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
