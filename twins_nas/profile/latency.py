"""Inference latency and throughput of one network at one input size.

`measure_latency` times the forward pass as a `MeasureSpec` says (see `backends`): warm-up
passes first (lazy kernel selection, allocator growth), then timed passes in interleaved
rounds (a short pause between rounds) until at least `spec.rounds` rounds are done and the
relative inter-quartile range of the timings is below a target, or a time budget is spent.
The figure reported is `spec.statistic` of the passes: by default the fastest pass, since load
from other processes only ever adds time (of the statistics measured across separate
processes, `benchmarks/timing_repeatability.py`, it moves least); every timing also reports
its across-round spread (largest / smallest round median - 1). The passes run through the
spec's `TimingBackend`; the default (``eager``) runs the module in eval mode under
`torch.inference_mode`, bf16/fp16 under autocast. On CUDA every
pass is timed with CUDA events (synchronised) and the model and input use the channels-last
memory format by default; on CPU passes are timed with `time.perf_counter` in fp32 unless
bf16/fp16 autocast is asked for. What the backend does before its first timed pass (an
export, a compilation, its correctness check) is timed apart (`prepare_s`), never counted in
the latency.
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn as nn

from ..config import ArchConfig
from ..hardware import DEVICE_NAMES, check_device_name, check_dtype_name
from ..models import build_model
from ..sizes import Resolution, Size, as_size, compact_size, format_size
from .backends import (
    DEFAULT_BACKEND,
    DTYPES,
    MeasureSpec,
    autocast_context,  # noqa: F401  (memory.py and benchmarks import it from here)
    get_backend,
    synchronize,
    timing_model,
    torch_threads,
)


def size_key(resolution: Resolution) -> Resolution:
    """How a size is reported and keyed: an int for a square (as before), (H, W) otherwise."""
    return compact_size(as_size(resolution))


def arch_of(model: nn.Module) -> ArchConfig | None:
    """The config of a Twins or a segmentation model (`.cfg`), or of the Twins another wrapper
    holds (`.backbone.cfg`); None when neither tells."""
    for cfg in (getattr(model, "cfg", None), getattr(getattr(model, "backbone", None), "cfg", None)):
        if isinstance(cfg, ArchConfig):
            return cfg
    return None


def in_chans_of(model: nn.Module) -> int:
    """The input channels of `arch_of(model)`; 3 when it has no config."""
    cfg = arch_of(model)
    return cfg.in_chans if cfg is not None else 3


@dataclass
class LatencyReport:
    """Timing of one forward pass of `batch` images of `size` = (H, W) pixels. `resolution` is
    the size as given: an int n for a square n x n input, (H, W) otherwise; `size` is always
    (H, W). Any output of the forward (logits, a segmentation map) is timed alike."""

    median_ms: float  # median of every timed pass
    iqr_ms: float  # inter-quartile range of the timed passes (0 when fewer than 2 passes)
    throughput: float  # images per second = batch / latency_ms
    repeats: int  # timed passes (warm-up passes excluded)
    device: str  # e.g. 'cpu (2 threads)' or 'NVIDIA H100 80GB HBM3'
    threads: int  # torch intra-op threads
    dtype: str
    batch: int
    resolution: Resolution
    size: Size | None = None  # (H, W); filled from `resolution` when not given
    latency_ms: float = math.nan  # the reported figure (`statistic`); NaN (not given): `median_ms`
    statistic: str = "median"  # how `latency_ms` was taken from the passes (`backends.STATISTICS`)
    rounds: int = 1  # rounds the timed passes came in
    spread: float = 0.0  # across-round spread: largest / smallest round median - 1 (0 for one round)
    runtime: str = DEFAULT_BACKEND  # the `TimingBackend` that ran the passes
    prepare_s: float = 0.0  # seconds the backend took before the first pass (export, compile, check)

    def __post_init__(self) -> None:
        self.resolution = size_key(self.resolution)
        self.size = as_size(self.resolution if self.size is None else self.size)
        if math.isnan(self.latency_ms):
            self.latency_ms = self.median_ms

    @property
    def size_str(self) -> str:
        """'512x1024' ('224x224' for a square)."""
        assert self.size is not None  # set in __post_init__
        return format_size(self.size)

    @property
    def rel_iqr(self) -> float:
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else float("inf")

    def to_dict(self) -> dict:
        """Plain JSON-serialisable data: `resolution` an int (square) or [H, W], `size` [H, W]."""
        d = asdict(self)
        assert self.size is not None  # set in __post_init__
        d["size"] = list(self.size)
        if isinstance(self.resolution, tuple):
            d["resolution"] = list(self.resolution)
        return d


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> the first CUDA GPU when one is usable, else the CPU. Also accepts 'cpu',
    'cuda', 'cuda:N' and 'mps'; raises ValueError with one readable line otherwise."""
    if isinstance(device, torch.device):
        device = str(device)
    name = check_device_name(str(device)).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r}: CUDA is not available here (no GPU or a CPU-only torch); "
                             "use device='cpu' or 'auto'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return dev
    if dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError(f"device={device!r}: MPS is not available here")
        return dev
    raise ValueError(f"device={device!r} is not supported: use {DEVICE_NAMES}")


def resolve_dtype(dtype: str) -> torch.dtype:
    return DTYPES[check_dtype_name(dtype)]


def device_label(device: torch.device) -> str:
    """What the report calls the device: the GPU's name, or 'cpu (N threads)'."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        n = torch.get_num_threads()
        return f"cpu ({n} thread{'s' if n != 1 else ''})"
    return device.type


def _as_model(model_or_cfg: nn.Module | ArchConfig | dict | str) -> nn.Module:
    if isinstance(model_or_cfg, nn.Module):
        return model_or_cfg
    return build_model(model_or_cfg, seed=0)


def quantiles(times: list[float]) -> tuple[float, float]:
    """(median, inter-quartile range) of a list of timings."""
    if len(times) == 1:
        return times[0], 0.0
    q1, q2, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return q2, q3 - q1


class Timer:
    """Times `fn()` on a device: CUDA events around each call on a GPU, perf_counter elsewhere
    (after `sync`, which waits for the device's queued work: a backend's `synchronize`)."""

    def __init__(self, device: torch.device, sync: Callable[[torch.device], None] = synchronize):
        self.device = device
        self._sync = sync

    def sync(self) -> None:
        self._sync(self.device)

    def __call__(self, fn: Callable[[], object]) -> float:
        """Milliseconds one call of `fn` took on the device."""
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        self.sync()
        t0 = time.perf_counter()
        fn()
        self.sync()
        return (time.perf_counter() - t0) * 1e3


def measure_latency(
    model_or_cfg: nn.Module | ArchConfig | dict | str,
    resolution: Resolution,
    batch: int | None = None,
    device: str | torch.device | None = None,
    dtype: str | None = None,
    channels_last: bool | None = None,
    warmup: int | None = None,
    min_repeats: int | None = None,
    max_repeats: int | None = None,
    budget_s: float | None = None,
    target_rel_iqr: float | None = None,
    *,
    spec: MeasureSpec | None = None,
) -> LatencyReport:
    """Median forward latency (ms) and throughput (images/s) of one network on `spec.batch`
    inputs of `resolution` (an int n: n x n pixels, or (H, W); the input is (batch, C, H, W)).

    `spec` (a `MeasureSpec`; default `MeasureSpec()`) says how: device, dtype, batch,
    threads, warm-up, repeats, time budget and the `TimingBackend` that runs the passes. The
    keyword arguments `batch` ... `target_rel_iqr`, when given, replace those fields of `spec`
    (so ``measure_latency(m, 224, batch=8, device="cpu")`` needs no spec).

    `model_or_cfg` is a module (moved to the device, set to eval mode for the measurement and
    put back in its previous mode by the eager backend; whatever its forward returns, logits
    or a segmentation map; C is `in_chans` of its `.cfg` or `.backbone.cfg`) or anything
    `build_model` takes (built with `timing_model`, as the search and `profile` build it).
    After `warmup` untimed passes, passes are timed until at least `min_repeats` are done and
    either the relative IQR (IQR / median) is <= `target_rel_iqr` or `budget_s` seconds of
    timing have elapsed; never more than `max_repeats`. `channels_last` None: True on CUDA
    (input and conv weights in NHWC), False elsewhere.
    """
    given: dict[str, Any] = dict(batch=batch, device=device, dtype=dtype, channels_last=channels_last, warmup=warmup,
                 min_repeats=min_repeats, max_repeats=max_repeats, budget_s=budget_s, target_rel_iqr=target_rel_iqr)
    spec = replace(spec or MeasureSpec(), **{k: v for k, v in given.items() if v is not None})
    dev = resolve_device(spec.device)
    h, w = as_size(resolution)
    model = model_or_cfg if isinstance(model_or_cfg, nn.Module) else timing_model(model_or_cfg)
    with torch_threads(spec.threads):
        x = torch.randn(spec.batch, in_chans_of(model), h, w, device=dev).to(memory_format=spec.memory_format(dev))
        t = time_forward(model, x, spec)
    return LatencyReport(median_ms=t.median_ms, iqr_ms=t.iqr_ms, throughput=spec.batch * 1e3 / t.latency_ms,
                         repeats=t.repeats, device=t.device, threads=t.threads, dtype=spec.dtype, batch=spec.batch,
                         resolution=size_key((h, w)), size=(h, w), latency_ms=t.latency_ms, statistic=spec.statistic,
                         rounds=len(t.rounds), spread=t.spread, runtime=spec.backend, prepare_s=t.prepare_s)


@dataclass
class Timing:
    """The timed passes of one forward (`time_forward`), in rounds, and what is read from them."""

    rounds: list[list[float]]  # milliseconds of every timed pass, round by round
    statistic: str
    prepare_s: float
    device: str
    threads: int

    @property
    def passes(self) -> list[float]:
        return [t for r in self.rounds for t in r]

    @property
    def repeats(self) -> int:
        return len(self.passes)

    @property
    def median_ms(self) -> float:
        return quantiles(self.passes)[0]

    @property
    def iqr_ms(self) -> float:
        return quantiles(self.passes)[1]

    @property
    def round_medians(self) -> list[float]:
        return [statistics.median(r) for r in self.rounds]

    @property
    def latency_ms(self) -> float:
        """The reported figure: `statistic` of the passes (see `backends.STATISTICS`)."""
        if self.statistic == "best-round":
            return min(self.round_medians)
        if self.statistic == "min":
            return min(self.passes)
        return self.median_ms

    @property
    def spread(self) -> float:
        """Largest / smallest round median - 1 (0 for a single round)."""
        meds = self.round_medians
        return max(meds) / min(meds) - 1 if len(meds) > 1 and min(meds) > 0 else 0.0


ROUND_PAUSE_S = 0.02  # idle time between rounds: a burst of other load can pass
ROUND_PASSES = 3  # timed passes per round, at least (a round's median needs a few)


def time_forward(model: nn.Module, example: torch.Tensor, spec: MeasureSpec) -> Timing:
    """Time `model(example)` as `spec` says (warm-up, rounds, repeats, budget; the spec's batch
    and size are not read: `example` is the input, of any shape, on the measured device).
    `measure_latency` is this on a (batch, C, H, W) image input; a latency table times its
    building blocks with it. Threads are as the caller set them."""
    dev = example.device
    backend = get_backend(spec.backend)
    timer = Timer(dev, backend.synchronize)
    rounds: list[list[float]] = []
    per_round = max(ROUND_PASSES, -(-spec.min_repeats // spec.rounds))  # ceil: min_repeats passes over the rounds
    t_prepare = time.perf_counter()
    with backend.prepare(model, example, spec) as run:
        prepare_s = time.perf_counter() - t_prepare
        for _ in range(spec.warmup):
            run(example)
        timer.sync()
        t_start, done = time.perf_counter(), 0
        while done < spec.max_repeats:
            if rounds:
                time.sleep(ROUND_PAUSE_S)
            rounds.append([timer(lambda: run(example)) for _ in range(min(per_round, spec.max_repeats - done))])
            done += len(rounds[-1])
            if done >= spec.min_repeats:
                if time.perf_counter() - t_start >= spec.budget_s:
                    break
                med, iqr = quantiles([t for r in rounds for t in r])
                if len(rounds) >= spec.rounds and iqr <= spec.target_rel_iqr * med:
                    break
    return Timing(rounds=rounds, statistic=spec.statistic, prepare_s=prepare_s, device=device_label(dev),
                  threads=torch.get_num_threads())
