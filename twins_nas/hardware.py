"""Names of the devices and precisions a model can be measured on, and what this machine
is, without importing torch (the YAML schema and the CLI check names before any model).

`profile.latency.resolve_device` turns a valid name into a `torch.device` and checks that
the hardware is really there; this module only knows the spelling and the host."""
from __future__ import annotations

import contextlib
import os
import platform
import re
from pathlib import Path

DTYPE_NAMES = ("fp32", "bf16", "fp16")
DEVICE_NAMES = "auto, cpu, cuda, cuda:N, mps"
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_name(name: str) -> str:
    """`name` itself when it spells a device (auto, cpu, cuda, cuda:N, mps); ValueError otherwise."""
    if not isinstance(name, str) or not _DEVICE_RE.match(name.strip().lower()):
        raise ValueError(f"device={name!r} is not a device: use {DEVICE_NAMES}")
    return name


def check_dtype_name(name: str) -> str:
    """`name` itself when it is a precision the timers support; ValueError otherwise."""
    if name not in DTYPE_NAMES:
        raise ValueError(f"dtype={name!r}: choose one of {', '.join(DTYPE_NAMES)}")
    return name


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
