"""Peak memory of one inference forward pass.

What is measured: the *increase* in memory that one forward pass (eval mode,
`torch.inference_mode`, input tensor included) needs on top of the built model, in MiB
(2**20 bytes). Weights are not counted; activations, attention buffers, workspaces and the
input are.

* CUDA: exact allocator statistics: `reset_peak_memory_stats`, then
  `max_memory_allocated() - memory_allocated()` around the forward.
* CPU: the operating system's peak resident set size (VmHWM in /proc/self/status) of a fresh
  Python process that builds the model from its config (`ArchConfig.to_json()`), returns
  freed heap to the OS (`malloc_trim`), resets the peak to the current RSS (writing 5 to
  /proc/self/clear_refs), then runs the forward. Reported: peak RSS after the forward minus
  the RSS just before it. A forward on the smallest input runs first, so the process's
  one-time costs (thread pools, kernel caches) are not charged to the measurement. Where
  clear_refs cannot be written, the peak since process start is used instead (the sizes run
  in increasing order, so each new peak is the current forward's). Linux only; else NaN.
"""
from __future__ import annotations

import ctypes
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from typing import cast

import torch
import torch.nn as nn

from ..config import ArchConfig, load_config
from ..models import build_model
from ..models.cost_model import analytic_params
from ..sizes import Size, as_size
from .latency import (
    Resolution,
    _as_model,
    arch_of,
    autocast_context,
    in_chans_of,
    resolve_device,
    resolve_dtype,
    size_key,
)

MIB = 2 ** 20
_STATUS = "/proc/self/status"


def _status_kib(field: str) -> int | None:
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _malloc_trim() -> None:
    """Give the heap's free pages back to the OS, so the next peak measures new allocations."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakRSS:
    """Context manager: `.mb` = peak RSS inside the block minus RSS at entry (MiB), or NaN
    when /proc is unavailable. `.exact` is False when the peak could not be reset."""

    def __enter__(self) -> PeakRSS:
        gc.collect()
        _malloc_trim()
        self.exact = _reset_peak_rss()
        self.base_kib = _status_kib("VmRSS")
        self.mb = math.nan
        return self

    def __exit__(self, *exc) -> None:
        peak = _status_kib("VmHWM")
        if peak is not None and self.base_kib is not None:
            self.mb = max(peak - self.base_kib, 0) / 1024


def _forward_input(model: nn.Module, resolution: Resolution, batch: int, device: torch.device) -> torch.Tensor:
    """(batch, C, H, W) noise; C from the model's config (or its backbone's), else 3."""
    return torch.randn(batch, in_chans_of(model), *as_size(resolution), device=device)


def cuda_forward_peak_mb(model: nn.Module, resolution: Resolution, batch: int, device: torch.device,
                         dtype: str = "fp32") -> float:
    """Allocator peak of one forward over what was allocated before it (MiB), on a CUDA device;
    `resolution` is n (n x n) or (H, W); the forward's output may be anything."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    with torch.inference_mode(), autocast_context(device, dtype):
        x = _forward_input(model, resolution, batch, device)
        model(x)
        del x
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / MIB


def cpu_forward_peak_mb(model: nn.Module, resolution: Resolution, batch: int, dtype: str = "fp32") -> float:
    """Peak-RSS increase of one forward at `resolution` (n or (H, W)) in *this* process (MiB).
    `measure_peak_memory` runs it in a fresh process; call it directly only where this
    process's history does not matter."""
    cpu = torch.device("cpu")
    with PeakRSS() as peak:
        with torch.inference_mode(), autocast_context(cpu, dtype):
            x = _forward_input(model, resolution, batch, cpu)
            model(x)
            del x
    return peak.mb


def smallest_input(model: nn.Module) -> int:
    """The smallest input size every stage of a Twins (or its backbone) accepts (product of
    the patch sizes); 32 when the model has no config."""
    cfg = arch_of(model)
    return math.prod(s.patch_size for s in cfg.stages) if cfg is not None else 32


def warm_up_cpu(model: nn.Module) -> None:
    """One forward on the smallest input: the one-time costs of a process's first forward
    (thread pools, kernel caches: ~15 MiB) are then not charged to the first measurement."""
    with torch.inference_mode():
        model(_forward_input(model, smallest_input(model), 1, torch.device("cpu")))


def _run_child(job: dict, timeout: float | None) -> dict:
    """Run `_child_main` in a fresh interpreter with `job` as JSON on stdin."""
    code = "from twins_nas.profile.memory import _child_main; _child_main()"
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(job), capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"memory measurement process failed (exit {proc.returncode}): {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _child_main() -> None:
    job = json.load(sys.stdin)
    torch.set_num_threads(job["threads"])
    if "config" in job:
        model = build_model(ArchConfig.from_dict(job["config"]), seed=0)
    else:
        model = torch.load(job["module_path"], weights_only=False)
    model.eval()
    warm_up_cpu(model)
    out = {}
    for h, w in job["sizes"]:  # smallest first
        out[f"{h}x{w}"] = cpu_forward_peak_mb(model, (h, w), job["batch"], job["dtype"])
    print(json.dumps(out), flush=True)


def measure_peak_memory_many(
    model_or_cfg: nn.Module | ArchConfig | dict | str,
    resolutions: Iterable[Resolution],
    batch: int = 1,
    device: str | torch.device = "auto",
    dtype: str = "fp32",
    timeout: float | None = None,
) -> dict[Resolution, float]:
    """`measure_peak_memory` at several resolutions (each n or (H, W)): on CPU in *one* fresh
    process that builds the model once and runs the sizes in increasing order of pixels. Keyed
    by an int n for a square input (n, n) and by (H, W) otherwise."""
    dev = resolve_device(device)
    resolve_dtype(dtype)
    res = sorted({size_key(r) for r in resolutions}, key=lambda r: (math.prod(as_size(r)), as_size(r)))
    if dev.type != "cpu":
        model = _as_model(model_or_cfg).to(dev)
        was_training = model.training
        model.eval()
        try:
            if dev.type == "cuda":
                return {r: cuda_forward_peak_mb(model, r, batch, dev, dtype) for r in res}
            return {r: math.nan for r in res}
        finally:
            model.train(was_training)
    if not os.path.exists(_STATUS):
        return {r: math.nan for r in res}
    job = dict(sizes=[as_size(r) for r in res], batch=batch, dtype=dtype, threads=torch.get_num_threads())
    cfg = model_or_cfg
    if isinstance(cfg, nn.Module) and isinstance(getattr(cfg, "cfg", None), ArchConfig):
        cfg = cast(ArchConfig, cfg.cfg)  # a Twins: weight values do not change the memory
    if isinstance(cfg, nn.Module):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "module.pt")
            torch.save(cfg, path)
            out = _run_child(dict(job, module_path=path), timeout)
    else:
        if not isinstance(cfg, ArchConfig):
            cfg = ArchConfig.from_dict(cfg) if isinstance(cfg, dict) else load_config(cfg)
        out = _run_child(dict(job, config=cfg.to_dict()), timeout)
    return {size_key(cast(Size, tuple(int(v) for v in k.split("x")))): float(mb) for k, mb in out.items()}


def measure_peak_memory(
    model_or_cfg: nn.Module | ArchConfig | dict | str,
    resolution: Resolution,
    batch: int = 1,
    device: str | torch.device = "auto",
    dtype: str = "fp32",
) -> float:
    """Peak memory (MiB) one inference forward at `resolution` (n or (H, W)) needs beyond the
    model's weights: CUDA allocator peak on a GPU, peak-RSS increase of a fresh process on CPU
    (see module doc)."""
    return measure_peak_memory_many(model_or_cfg, [resolution], batch, device, dtype)[size_key(resolution)]


# ---- closed-form bound, before anything is built ------------------------------------------------
def min_forward_bytes(cfg: ArchConfig, resolution: Resolution, batch: int, bytes_per_value: int = 4) -> int:
    """A lower bound of the memory one inference forward at `batch` needs, weights included,
    from the config alone: the weights, the input image, and, for the largest block, the two
    tensors that must coexist whatever the kernels do: the block's input (kept for the
    residual) and its MLP's hidden layer. A config whose bound exceeds the free memory
    cannot run, so it is rejected before it is built (attention scores, q/k/v and workspaces
    come on top, so the real need is larger)."""
    h, w = as_size(resolution)
    block = max(mh * mw * (st.embed_dim + st.mlp_hidden) for st, (mh, mw) in zip(cfg.stages, cfg.stage_sizes((h, w))))
    return (batch * (cfg.in_chans * h * w + block) + analytic_params(cfg)) * bytes_per_value


def available_bytes(device: str | torch.device = "cpu") -> int | None:
    """Memory free for a new model on `device`: CUDA's free memory, or MemAvailable of
    /proc/meminfo on CPU; None when it cannot be told."""
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def is_out_of_memory(e: BaseException) -> bool:
    """True for an allocation failure: CUDA's OutOfMemoryError, Python's MemoryError, or the
    CPU allocator's RuntimeError ("DefaultCPUAllocator: can't allocate memory")."""
    if isinstance(e, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                            or "not enough memory" in text)


def free_memory() -> None:
    """Give back what a failed allocation left: collect garbage, empty CUDA's cache."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

