"""What a study's numbers were measured on and with: the device and its label (the GPU's
name, or the CPU model), and the library versions; both go into the study and its reports."""
from __future__ import annotations

import contextlib
import platform

import numpy
import optuna
import torch

from ... import __version__
from ...config import ConfigError
from ...hardware import cpu_model
from ...profile.latency import resolve_device


def resolve_search_device(device: str) -> tuple[str, str]:
    """('cpu' | 'cuda:0' | ..., a label naming the hardware, e.g. 'cpu (AMD EPYC)' or
    'NVIDIA H100 80GB HBM3'); a one-line ConfigError for a device that is not there."""
    try:
        dev = resolve_device(device)
    except (ValueError, RuntimeError) as e:
        raise ConfigError(f"device={device!r}: {e}", field="device") from None
    if dev.type == "cuda":
        idx = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{idx}", torch.cuda.get_device_name(idx)
    if dev.type == "cpu":
        return "cpu", f"cpu ({cpu_model()})"
    return str(dev), str(dev)


def library_versions() -> dict[str, str]:
    """Versions of twins-nas, Python and the libraries that shape the numbers."""
    v = {"twins_nas": __version__, "python": platform.python_version(), "torch": torch.__version__,
         "optuna": optuna.__version__, "numpy": numpy.__version__}
    with contextlib.suppress(Exception):
        import timm  # heavy import (timm): see README
        v["timm"] = timm.__version__
    return v
