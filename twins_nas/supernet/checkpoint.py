"""The supernet's checkpoint: everything a training needs to continue exactly where it
stopped (weights, AdamW's state, the step, every random state, the epoch's image order, the
curve so far), tied to the space by the digest of what its supernet depends on. Written
atomically (`twins_nas.atomic`): a kill leaves the previous checkpoint or the new one, never
half of one."""
from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_path, write_text
from ..errors import ConfigError
from ..search.space.space import SearchSpace

CHECKPOINT = "supernet.pt"
CURVE = "curve.csv"
FORMAT = "twins-nas supernet"
VERSION = 1
CURVE_COLUMNS = ("step", "lr", "loss", "loss_largest", "loss_smallest", "acc_largest", "acc_smallest", "seconds")


# The space's keys a supernet depends on: its networks (stages, sub-sampling, input size, channels) and
# how it is trained (the proxy's data and recipe). Objectives, constraints, measuring, halving and
# replicates do not change it; nor do the proxy's data_root (where the images are) and epochs (the
# proxy training's length: the supernet's is its own).
_SUPERNET_KEYS = ("resolution", "in_chans", "stages", "subsample", "proxy")
_PROXY_EXCLUDED = {"data_root", "epochs"}


def space_digest(space: SearchSpace) -> str:
    """sha256 (hex) of what the supernet of `space` depends on (see `_SUPERNET_KEYS`): two spaces
    with one digest have one supernet."""
    d = space.model_dump(mode="json", include=set(_SUPERNET_KEYS), exclude={"proxy": _PROXY_EXCLUDED})
    return hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class Checkpoint:
    """A supernet training at the end of step `step` of `total_steps`."""

    space_digest: str      # `space_digest` of the space it was trained for
    space_name: str
    proxy: dict            # the space's proxy settings (plain data)
    settings: dict         # the SupernetSettings (plain data)
    seed: int
    step: int
    total_steps: int
    model: dict            # the supernet's state dict
    optimizer: dict        # AdamW's state dict
    rng: dict              # torch (global), python (subnet draws), data (image order) generator states
    perm: torch.Tensor | None = None  # the image order of the current epoch
    curve: list[dict] = field(default_factory=list)  # one row per step (CURVE_COLUMNS; None: not measured)
    threads: int = 1       # torch threads of the run that wrote it (the same count gives the same result)


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write `ckpt` to `path` atomically."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "version": VERSION, **asdict(ckpt)}, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, space: SearchSpace) -> Checkpoint:
    """The checkpoint at `path`, made for `space` (`space_digest`); a missing, unreadable or
    foreign file, or one of another space, raises a one-line `ConfigError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no supernet checkpoint there; train one with `twins-nas supernet --space "
                          f"{space.source} --out {path.parent}`")
    try:
        raw: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: pickle, zip and torch errors alike
        raise ConfigError(f"{path}: not a readable supernet checkpoint ({type(e).__name__}); delete it to start "
                          "again") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a twins-nas supernet checkpoint")
    if raw.get("version") != VERSION:
        raise ConfigError(f"{path}: supernet checkpoint version {raw.get('version')!r}; this twins-nas reads "
                          f"version {VERSION}")
    if raw.get("space_digest") != space_digest(space):
        raise ConfigError(lambda name: f"{path}: the supernet of another space ({raw.get('space_name')!r}): its "
                                       f"stages, resolution, sub-sampling or proxy differ from {space.source}'s "
                                       f"(overrides count); use another {name('out_dir')}")
    names = {f.name for f in fields(Checkpoint)}
    try:
        return Checkpoint(**{k: v for k, v in raw.items() if k in names})
    except TypeError:
        raise ConfigError(f"{path}: an incomplete supernet checkpoint; delete it to start again") from None


def curve_csv(rows: list[dict]) -> str:
    """The training curve as CSV: one row per step, empty cells where nothing was measured."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CURVE_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r[k] for k in CURVE_COLUMNS})
    return buf.getvalue()


def write_curve(path: str | Path, rows: list[dict]) -> Path:
    """Write the curve to `path` atomically."""
    return write_text(path, curve_csv(rows))
