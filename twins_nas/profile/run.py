"""`twins-nas profile` as one call: `run_profile` checks its input, runs the resolution sweep
(`profile_sweep`), writes the report (profile.csv, complexity.html, optimality.csv / .json /
.html and, when asked for and a Chromium is found, PNGs) and returns what it measured and wrote
as a `ProfileResult`.

Bad input raises a one-line `ConfigError` whose message starts with the field's name
(``sizes``, ``head``, ``min_keys``, ``dtype``, ...); other fields it names are written in
backticks (`head`), so a front end can spell them its own way."""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch

from ..config import ArchConfig
from ..errors import ConfigError
from ..models import HEADS, DenseHead, head_config
from ..models.window_optimum import DEFAULT_MAX_ASPECT, DEFAULT_MIN_KEYS, check_rule
from ..presets import PRESETS, get_preset, global_reference
from ..sizes import Resolution, Size, format_size, parse_size
from .backends import MeasureSpec, torch_threads
from .latency import resolve_device
from .runtimes import check_runtime
from .sweep import SWEEP_SPEC, Progress, default_resolutions, profile_sweep, sizes_of

Predict = Callable[[ArchConfig, Size, int, DenseHead | None], float]
"""A latency predictor as `run_profile` calls it: (config, (H, W), batch, head or None for the
classifier) -> ms per forward pass; a one-line ConfigError for what it cannot answer."""

DEFAULT_BUDGET_S = 60.0  # seconds of forward passes of a whole profile
DEFAULT_MAX_SIZE = 1024  # the largest size of the default sweep (224 ... 1024)


@dataclass(frozen=True)
class ProfileResult:
    """What `run_profile` measured and wrote."""

    frame: pd.DataFrame  # one row per model x size: the rows of profile.csv (see `profile_sweep`)
    optimality: pd.DataFrame  # one row per model x size x stage: optimality.csv as written
    sizes: list[Size]  # the profiled sizes (H, W), by pixel count
    out_dir: Path
    files: list[Path]  # every file written, in order
    notes: list[str]  # what was not written and why (e.g. no Chromium for the PNGs)
    machine_note: str | None = None  # a busy machine: the timings are inflated

    @property
    def estimated_cells(self) -> int:
        """Cells whose latency is an estimate: they did not fit the time budget."""
        return int(self.frame["latency_est_ms"].notna().sum())


def profile_models(presets: Iterable[str] = (), configs: Iterable[str | Path] = ()) -> dict[str, ArchConfig]:
    """The models of a profile by name: the `presets` (published names), then the architecture
    JSON files `configs` (named by their config's name, else the file's stem); a repeated name
    gets ' (2)', ' (3)', ... Neither given: the six presets and the global-attention reference."""
    presets, configs = list(presets), list(configs)
    models: dict[str, ArchConfig] = {}

    def add(name: str, cfg: ArchConfig) -> None:
        key, i = name, 2
        while key in models:
            key, i = f"{name} ({i})", i + 1
        models[key] = cfg

    if not presets and not configs:
        for name in PRESETS:
            add(name, get_preset(name))
        ref = global_reference()
        assert ref.name is not None  # the reference is named (global-attn-s)
        add(ref.name, ref)
    for name in presets:
        add(name, get_preset(name))
    for path in configs:
        cfg = ArchConfig.from_json(path)
        add(cfg.name or Path(path).stem, cfg)
    return models


def default_out_dir(sizes: Iterable[Resolution]) -> Path:
    """reports/profile-<largest size>: 'profile-1024' for a square, 'profile-512x1024' otherwise."""
    h, w = sizes_of(sizes)[-1]
    return Path("reports") / f"profile-{h if h == w else format_size((h, w))}"


def busy_note(threads: int) -> str | None:
    """A note when other processes keep the CPU busy (timings then say little); None otherwise."""
    try:
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
    except (OSError, AttributeError):
        return None
    if load < 1.0 or load < 0.25 * cores:
        return None
    hint = (f"; with {threads} threads also erratic (OpenMP threads spin waiting for each other): "
            "OMP_WAIT_POLICY=PASSIVE in the environment or `threads` 1 give steadier numbers" if threads > 1 else "")
    return f"the machine is busy (load {load:.1f} on {cores} cores): timings will be inflated{hint}"


def _sizes(sizes: Iterable[Resolution] | None) -> list[Size]:
    if sizes is None:
        return sizes_of(default_resolutions(DEFAULT_MAX_SIZE))
    if isinstance(sizes, (int, str)):
        sizes = [sizes]  # one size
    out = sizes_of(parse_size(s, field="sizes") for s in sizes)
    if not out:
        raise ConfigError("sizes: no sizes given (e.g. [224, 512, (512, 1024)])")
    return out


def _head(head: DenseHead | str | None, num_classes: int | None) -> DenseHead | None:
    if num_classes is not None and head is None:
        raise ConfigError(f"num_classes={num_classes}: give `head` too (the classes of a segmentation head), "
                          f"one of {', '.join(HEADS)}")
    return head_config(head, num_classes)


def run_profile(
    models: Mapping[str, ArchConfig] | None = None,
    sizes: Iterable[Resolution] | None = None,
    spec: MeasureSpec | None = None,
    *,
    out_dir: str | Path | None = None,
    head: DenseHead | str | None = None,
    num_classes: int | None = None,
    latency: bool = True,
    memory: bool | None = None,
    budget_s: float | None = DEFAULT_BUDGET_S,
    fvcore: bool = False,
    png: bool | None = None,
    panels: bool | None = None,
    min_keys: int = DEFAULT_MIN_KEYS,
    max_aspect: float | None = DEFAULT_MAX_ASPECT,
    progress: Progress | None = None,
    on_note: Callable[[str], None] | None = None,
    predict: Predict | None = None,
) -> ProfileResult:
    """Profile `models` (name -> config; default `profile_models()`: the six presets and the
    global-attention reference) at `sizes` (ints n x n or (H, W); default 224 ... 1024) and
    write the report to `out_dir` (default `default_out_dir(sizes)`).

    * `spec`: how each cell is timed (default `SWEEP_SPEC`: device auto, fp32, batch 1, the
      threads as set, eager PyTorch; its `backend` is the runtime, see `runtimes`, named in
      the `runtime` column; see `profile_sweep`);
    * `head` (a name of `HEADS`, a HeadConfig or an UperNetConfig) and `num_classes`: profile the dense model;
    * `latency` / `memory` (default: `latency`): forward passes at all; without them the
      profile is closed form and takes about a second;
    * `budget_s`: seconds for all forward passes (cells that would not fit get an estimated
      latency); None: measure every cell;
    * `fvcore`: also count GMACs by tracing;
    * `png` (default: `latency`) and `panels` (default: `latency`): PNGs of the figures, and one
      per panel of complexity.html;
    * `min_keys`, `max_aspect`: the rule of the window / k optimality table;
    * `progress(done, total, text)`: called as the cells are done, and once before the report
      is written; `on_note(text)`: called before any forward pass with `machine_note`;
    * `predict`: a latency predictor (see `Predict`, e.g. a latency table's
      `LatencyPredictor.predict_at`): the latency and throughput columns are its predictions
      and no pass is timed for them. The ``latency_source`` column says ``predicted`` then,
      ``measured`` otherwise.

    Everything is checked before anything is measured or written; bad input raises a
    one-line ConfigError naming the field (see the module doc)."""
    res = _sizes(sizes)
    head_cfg = _head(head, num_classes)
    try:
        check_rule(min_keys, max_aspect)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if budget_s is not None and (isinstance(budget_s, bool) or not isinstance(budget_s, (int, float))
                                 or not budget_s >= 0):
        shown = f"{budget_s:g}" if isinstance(budget_s, (int, float)) else repr(budget_s)
        raise ConfigError(f"budget_s={shown}: must be at least 0 seconds")
    spec = spec or SWEEP_SPEC
    try:
        dev = resolve_device(spec.device)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    spec = replace(spec, device=str(dev))
    check_runtime(spec.backend, dev if latency else None)  # unknown, or not installed: one line before any work
    models = profile_models() if models is None else dict(models)
    if not models:
        raise ConfigError("models: no models given")
    for cfg in models.values():
        for r in res:
            cfg.stage_sizes(r)  # one line if a size is too small for a model
    predicted = {}
    if predict is not None:  # every cell answered (or one line) before anything is measured
        predicted = {(name, r): predict(cfg, r, spec.batch, head_cfg) for name, cfg in models.items() for r in res}
    out = Path(out_dir) if out_dir is not None else default_out_dir(res)
    png = latency if png is None else png
    panels = latency if panels is None else panels

    with torch_threads(spec.threads):
        note = busy_note(torch.get_num_threads()) if ((latency and predict is None) or memory) and dev.type == "cpu" \
            else None
        if note and on_note:
            on_note(note)
        from .plots import complexity_figure, write_report  # heavy import (plotly): see README
        from .window_optimality_plots import write_optimality
        last = [0, 0]

        def step(done: int, total: int, text: str) -> None:
            last[:] = done, total
            if progress:
                progress(done, total, text)

        df = profile_sweep(models, res, spec, latency=latency and predict is None, memory=memory, fvcore=fvcore,
                           budget_s=budget_s, progress=step, head=head_cfg, min_keys=min_keys, max_aspect=max_aspect)
        if predict is not None:
            ms = [predicted[(m, (h, w))] for m, h, w in zip(df["model"], df["height"], df["width"])]
            df["latency_ms"] = ms
            df["throughput"] = [spec.batch * 1e3 / t if t > 0 else math.inf for t in ms]
        df["latency_source"] = "predicted" if predict is not None else "measured"
        if progress:
            progress(last[0], last[1], "writing the report")
        report = write_report(df, complexity_figure(df), out, png=png, panels=panels)
        opt = write_optimality(models, res, out, min_keys, max_aspect, png=png)
    notes = report["notes"] + [n for n in opt["notes"] if n not in report["notes"]]
    return ProfileResult(frame=df, optimality=pd.read_csv(out / "optimality.csv"), sizes=res, out_dir=out,
                         files=[Path(f) for f in report["files"] + opt["files"]], notes=notes, machine_note=note)
