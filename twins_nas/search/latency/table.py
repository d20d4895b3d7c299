"""A latency table as a file: what was timed where, per block, and the whole-model fit.

The JSON (format `FORMAT`, `VERSION`) records the space it was built for (name, hash), the
machine (device label, CPU model), the runtime (timing backend), device, threads, dtype,
batch, input size and head, the library versions, when it was made and how each block was
timed; per block (keyed by `BlockKey.id`) its latency (ms), across-round spread and timed
passes; the calibration models (config, measured latency, sum of their blocks) and the fit
``measured = a * sum_of_blocks + b``.

`read_table` checks all of that and raises a one-line `ConfigError` naming the file and what
is wrong (not JSON, another format or version, a missing or malformed field); `write_table`
writes it atomically.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...atomic import write_text
from ...errors import ConfigError
from ...models.head_config import DenseHead, head_config
from ...sizes import Size

FORMAT = "twins-nas latency table"
VERSION = 1


@dataclass(frozen=True)
class BlockTime:
    """One block's timing: the reported figure, its across-round spread and the timed passes."""

    latency_ms: float
    spread: float
    repeats: int


@dataclass(frozen=True)
class Fit:
    """measured whole-model latency = a * (sum of its blocks) + b, in ms; `method` says how it was fitted."""

    a: float = 1.0
    b: float = 0.0
    method: str = "none"

    def __call__(self, blocks_ms: float) -> float:
        return self.a * blocks_ms + self.b


@dataclass
class LatencyTable:
    """The contents of a latency table file (see the module doc)."""

    space: dict[str, str]  # name, hash, source
    machine: dict[str, str]  # device (label), cpu
    runtime: str
    device: str
    threads: int
    dtype: str
    batch: int
    size: Size
    head: DenseHead | None
    blocks: dict[str, BlockTime]
    fit: Fit = field(default_factory=Fit)
    calibration: list[dict[str, Any]] = field(default_factory=list)
    libraries: dict[str, str] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    build_s: float = 0.0

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "created": self.created, "space": self.space,
                "machine": self.machine, "runtime": self.runtime, "device": self.device, "threads": self.threads,
                "dtype": self.dtype, "batch": self.batch, "size": list(self.size),
                "head": self.head.to_dict() if self.head is not None else None, "libraries": self.libraries,
                "timing": self.timing, "build_s": round(self.build_s, 1),
                "fit": {"a": self.fit.a, "b": self.fit.b, "method": self.fit.method},
                "calibration": self.calibration,
                "blocks": {k: {"latency_ms": v.latency_ms, "spread": v.spread, "repeats": v.repeats}
                           for k, v in sorted(self.blocks.items())}}


def write_table(table: LatencyTable, path: str | Path) -> Path:
    """Write `table` to `path` as JSON, atomically."""
    return write_text(path, json.dumps(table.to_dict(), indent=1) + "\n")


def _need(d: dict, key: str, kind: type | tuple[type, ...], where: str, path: Path) -> Any:
    if key not in d:
        raise ConfigError(f"latency table {path}: missing field {where}{key}; rebuild it with twins-nas latency-table")
    v = d[key]
    if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"latency table {path}: {where}{key}={json.dumps(v)[:40]} must be {names}")
    return v


def _number(d: dict, key: str, where: str, path: Path) -> float:
    v = float(_need(d, key, (int, float), where, path))
    if not math.isfinite(v):
        raise ConfigError(f"latency table {path}: {where}{key}={v} must be a finite number")
    return v


def read_table(path: str | Path) -> LatencyTable:
    """The table in `path`; a one-line ConfigError naming the file and the problem otherwise."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"latency table {p}: no such file; build one with twins-nas latency-table")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"latency table {p}: not valid JSON ({e.msg} at line {e.lineno}); the file is corrupt or "
                          f"truncated: rebuild it with twins-nas latency-table") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"latency table {p}: cannot read ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"latency table {p}: not a latency table (no \"format\": \"{FORMAT}\")")
    version = data.get("version")
    if version != VERSION:
        raise ConfigError(f"latency table {p}: version {json.dumps(version)} is not the version this twins-nas reads "
                          f"({VERSION}); rebuild it with twins-nas latency-table")
    size = _need(data, "size", list, "", p)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise ConfigError(f"latency table {p}: size={json.dumps(size)} must be [H, W], positive integers")
    try:
        head = head_config(_need(data, "head", (dict, type(None)), "", p))
    except ConfigError as e:
        raise ConfigError(f"latency table {p}: {e}") from None
    blocks: dict[str, BlockTime] = {}
    for key, entry in _need(data, "blocks", dict, "", p).items():
        if not isinstance(entry, dict):
            raise ConfigError(f"latency table {p}: blocks[{key!r}] must be an object")
        where = f"blocks[{key!r}]."
        ms = _number(entry, "latency_ms", where, p)
        if ms < 0:
            raise ConfigError(f"latency table {p}: {where}latency_ms={ms} must be >= 0")
        blocks[key] = BlockTime(ms, _number(entry, "spread", where, p), int(_number(entry, "repeats", where, p)))
    fit = _need(data, "fit", dict, "", p)
    calibration = _need(data, "calibration", list, "", p)
    return LatencyTable(
        space=_need(data, "space", dict, "", p), machine=_need(data, "machine", dict, "", p),
        runtime=_need(data, "runtime", str, "", p), device=_need(data, "device", str, "", p),
        threads=int(_number(data, "threads", "", p)), dtype=_need(data, "dtype", str, "", p),
        batch=int(_number(data, "batch", "", p)), size=(size[0], size[1]), head=head, blocks=blocks,
        fit=Fit(_number(fit, "a", "fit.", p), _number(fit, "b", "fit.", p), str(fit.get("method", ""))),
        calibration=calibration, libraries=data.get("libraries") or {}, timing=data.get("timing") or {},
        created=str(data.get("created", "")), build_s=float(data.get("build_s") or 0.0))
