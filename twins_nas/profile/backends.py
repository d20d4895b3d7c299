"""How a forward pass is measured: one spec (`MeasureSpec`) and the runtime that runs the timed
passes (a `TimingBackend`, looked up by name in `BACKENDS`).

`MeasureSpec` says on which device, in which precision, with how many images and threads,
and how hard (warm-up, repeats, time budget) a network is timed, and by which backend. The
search's ``measure:`` section (`MeasureSettings.spec`), `profile_sweep` and `measure_latency`
all take one. Input sizes are not part of it: they stay arguments of the measuring call.

A backend turns a network and an example input into the callable that is timed. `EagerBackend`
(``eager``, the default) runs the module itself: eval mode, `torch.inference_mode`, autocast
for bf16/fp16, the network in the spec's memory format. Another runtime (a compiler, an
exported graph) is one class with a `name`, a `prepare` and a `synchronize`, registered with
`register_backend`.

`timing_model` builds the network that is timed from a config: `profile`, the search and
`measure_latency` time the same model.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, TypeVar, overload, runtime_checkable

import torch
import torch.nn as nn

from ..config import ArchConfig
from ..errors import ConfigError
from ..hardware import DTYPE_NAMES, check_device_name, check_dtype_name
from ..models import DenseHead, Twins, TwinsSegmentation, build_model

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}  # keys: hardware.DTYPE_NAMES
DEFAULT_BACKEND = "eager"
STATISTICS = ("min", "best-round", "median")  # what a timing reports (see `MeasureSpec.statistic`)
DEFAULT_STATISTIC = "min"


@dataclass(frozen=True)
class MeasureSpec:
    """How one network is timed (the defaults are `measure_latency`'s).

    * `device`: auto (a CUDA GPU when one is usable, else the CPU), cpu, cuda, cuda:N or mps;
    * `dtype`: fp32, or bf16 / fp16 under autocast (weights stay fp32);
    * `batch`: images per forward pass;
    * `threads`: torch's intra-op CPU threads while measuring (restored after); None: as set;
    * `warmup`: untimed passes before the timed ones;
    * `min_repeats` / `max_repeats`: timed passes, at least / at most;
    * `budget_s`: seconds of timing after which no more passes start (once `min_repeats` are done);
    * `target_rel_iqr`: passes also stop once IQR / median is at most this;
    * `channels_last`: NHWC input and conv weights; None: on CUDA only;
    * `backend`: the name of the `TimingBackend` that runs the passes (see `BACKENDS`);
    * `rounds`: the timed passes come in at least this many rounds (passes stop only after
      them, or once `budget_s` is spent), with a short pause between rounds, so the figure does
      not rest on one stretch of time a neighbour's load can slow down;
    * `statistic`: the figure reported, one of `STATISTICS`: ``min`` (the fastest pass: other
      load only ever adds time; the default, the figure that moves least between processes),
      ``best-round`` (the lowest of the rounds' medians) or ``median`` (of every timed pass).

    Bad values raise a one-line `ConfigError` naming the field."""

    device: str = "auto"
    dtype: str = "fp32"
    batch: int = 1
    threads: int | None = None
    warmup: int = 2
    min_repeats: int = 5
    max_repeats: int = 100
    budget_s: float = 2.0
    target_rel_iqr: float = 0.05
    channels_last: bool | None = None
    backend: str = DEFAULT_BACKEND
    rounds: int = 5
    statistic: str = DEFAULT_STATISTIC

    def __post_init__(self) -> None:
        if isinstance(self.device, torch.device):
            object.__setattr__(self, "device", str(self.device))
        try:
            check_device_name(self.device)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.dtype not in DTYPE_NAMES:
            raise ConfigError(f"dtype={self.dtype!r}: choose one of {', '.join(DTYPE_NAMES)}")
        if self.statistic not in STATISTICS:
            raise ConfigError(f"statistic={self.statistic!r}: choose one of {', '.join(STATISTICS)}")
        for name, lo in (("batch", 1), ("threads", 1), ("warmup", 0), ("min_repeats", 1), ("rounds", 1)):
            value = getattr(self, name)
            if value is None and name == "threads":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ConfigError(f"{name}={value!r}: must be a whole number, at least {lo}")
        if isinstance(self.max_repeats, bool) or not isinstance(self.max_repeats, int) \
                or self.max_repeats < self.min_repeats:
            raise ConfigError(f"max_repeats={self.max_repeats!r}: must be a whole number, at least "
                              f"min_repeats ({self.min_repeats})")
        for name in ("budget_s", "target_rel_iqr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"{name}={value!r}: must be a number >= 0")
        if not isinstance(self.backend, str):
            raise ConfigError(f"backend={self.backend!r}: must be a backend name ({', '.join(BACKENDS)})")

    def memory_format(self, device: torch.device) -> torch.memory_format:
        """channels-last when asked for, or by default on CUDA; contiguous otherwise."""
        channels_last = device.type == "cuda" if self.channels_last is None else self.channels_last
        return torch.channels_last if channels_last else torch.contiguous_format


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `threads` inside the block, restored after; None: unchanged."""
    if threads is None or threads == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def autocast_context(device: torch.device, dtype: str) -> AbstractContextManager:
    """Autocast for bf16/fp16 (weights stay fp32, as in mixed-precision inference); no-op for fp32."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[check_dtype_name(dtype)])


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on a GPU (CUDA, MPS); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@runtime_checkable
class TimingBackend(Protocol):
    """A runtime that runs the timed forward passes.

    `prepare(model, example, spec)` is a context manager: on entry it readies `model` (a
    module, on the CPU or already on `example.device`) for inputs like `example` (a tensor of
    the measured shape on the measured device, in the spec's memory format) and yields the
    callable that is timed, `run(x)`; on exit it undoes what it changed on `model` (its
    training mode, say). Whatever `run` returns is ignored. `synchronize(device)` returns once
    the work `run` queued on `device` is done (the timer calls it around the passes)."""

    name: str

    def prepare(self, model: nn.Module, example: torch.Tensor,
                spec: MeasureSpec) -> AbstractContextManager[Callable[[torch.Tensor], object]]: ...

    def synchronize(self, device: torch.device) -> None: ...


class EagerBackend:
    """The module itself, in eval mode under `torch.inference_mode` and, for bf16/fp16,
    autocast; moved to the example's device in the spec's memory format. Its training mode
    is restored afterwards."""

    name = DEFAULT_BACKEND

    @contextlib.contextmanager
    def prepare(self, model: nn.Module, example: torch.Tensor,
                spec: MeasureSpec) -> Iterator[Callable[[torch.Tensor], object]]:
        was_training = model.training
        model.to(example.device, memory_format=spec.memory_format(example.device)).eval()  # type: ignore[call-overload]  # torch's stubs omit memory_format
        try:
            with torch.inference_mode(), autocast_context(example.device, spec.dtype):
                yield model
        finally:
            model.train(was_training)

    def synchronize(self, device: torch.device) -> None:
        synchronize(device)


BACKENDS: dict[str, TimingBackend] = {}


def register_backend(backend: TimingBackend, replace: bool = False) -> TimingBackend:
    """Make `backend` known by its `name` (to `MeasureSpec.backend`, the ``measure:`` section's
    ``backend`` key); returns it. A name already taken by another backend raises a ConfigError
    unless `replace`."""
    name = getattr(backend, "name", None)
    if not isinstance(name, str) or not name or not isinstance(backend, TimingBackend):
        raise ConfigError(f"backend={backend!r}: a timing backend has a name (str), prepare() and synchronize()")
    if not replace and BACKENDS.get(name, backend) is not backend:
        raise ConfigError(f"backend={name!r}: a backend of that name is registered already (replace=True "
                          f"to replace it)")
    BACKENDS[name] = backend
    return backend


def get_backend(name: str) -> TimingBackend:
    """The registered backend called `name`; a one-line ConfigError naming the valid ones otherwise."""
    try:
        return BACKENDS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"backend={name!r}: unknown timing backend; valid backends: "
                          f"{', '.join(BACKENDS)}") from None


register_backend(EagerBackend())


@overload
def timing_model(cfg: ArchConfig | dict | str, head: None = None) -> Twins: ...
@overload
def timing_model(cfg: ArchConfig | dict | str, head: DenseHead) -> TwinsSegmentation: ...
@overload
def timing_model(cfg: ArchConfig | dict | str, head: DenseHead | None = None) -> Twins | TwinsSegmentation: ...
def timing_model(cfg: ArchConfig | dict | str, head: DenseHead | None = None) -> Twins | TwinsSegmentation:
    """The network for timing only (`build_model(cfg, head=head)`): built on the meta device
    (no truncated-normal initialisation, which is slow for the large models on a CPU),
    then given real CPU storage filled with small uniform noise, which runs exactly the same
    kernels at the same speed (no zeros or denormals); BatchNorm statistics start at mean 0,
    variance 1. Never train or evaluate this model."""
    with torch.device("meta"):
        model = build_model(cfg, head=head)
    return fill_for_timing(model.to_empty(device="cpu"))


M = TypeVar("M", bound=nn.Module)


def fill_for_timing(model: M) -> M:
    """`model` with every floating-point parameter and buffer filled with small uniform noise
    (the same kernels at the same speed as trained weights: no zeros or denormals) and its
    BatchNorm statistics at mean 0, variance 1; returned for chaining."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.uniform_(-0.02, 0.02)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
    return model
