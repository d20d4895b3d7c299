"""The metrics a trial can measure: their names, how costly each is, the direction each
naturally has, and the names they had before.

* ``params_m`` (parameters, millions) and ``gmacs`` (analytic GMACs at the space's
  resolution, attention matmuls included): closed form, always computed (microseconds);
* ``throughput`` (images/s) and ``latency_ms`` (median forward pass of a batch): the
  full-size model built and timed;
* ``peak_mem_mb``: peak inference memory beyond the weights;
* ``naswot`` and ``synflow``: training-free scores of the full-size model at its
  initialisation (`twins_nas.search.evaluate.zero_cost`): NASWOT's log|det K| of the activation
  patterns over a minibatch of proxy images, and SynFlow's log saliency; higher is better;
* ``accuracy``: validation top-1 of the proxy training.

``accuracy`` and ``naswot`` read the proxy data set (`DATA_METRICS`): a space that names
either has it loaded.

``gmacs`` used to be called ``gflops`` (it always held GMACs). A space file or a ``pick``
rule may still say ``gflops`` (`canonical_metric` renames it, with a DeprecationWarning), and
studies made before the rename recorded ``gflops``: whatever reads a trial's metrics goes
through `trial_metrics`, which renames them.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Literal, get_args

from ...errors import RenamedWarning

Metric = Literal["accuracy", "throughput", "latency_ms", "gmacs", "params_m", "peak_mem_mb", "naswot", "synflow"]
METRICS: tuple[str, ...] = get_args(Metric)

CHEAP_METRICS = ("params_m", "gmacs")
TIMED_METRICS = ("throughput", "latency_ms")
MEMORY_METRICS = ("peak_mem_mb",)
ZERO_COST_METRICS = ("naswot", "synflow")
PROXY_METRICS = ("accuracy",)
DATA_METRICS = ("accuracy", "naswot")  # what needs the proxy data set in memory

# the direction a metric naturally has, for `best METRIC` on a metric that is not an objective
NATURAL = {"accuracy": "maximize", "throughput": "maximize", "latency_ms": "minimize", "gmacs": "minimize",
           "params_m": "minimize", "peak_mem_mb": "minimize", "naswot": "maximize", "synflow": "maximize"}

LEGACY_NAMES = {"gflops": "gmacs"}  # old name -> current name
CURRENT_TO_LEGACY = {new: old for old, new in LEGACY_NAMES.items()}


def canonical_metric(name: str, warn: bool = True) -> str:
    """The current name of a metric: `name` itself, or the new name of a legacy one (with a
    DeprecationWarning when `warn`)."""
    new = LEGACY_NAMES.get(name) if isinstance(name, str) else None
    if new is None:
        return name
    if warn:
        warnings.warn(f"metric {name!r} is now called {new!r} (it holds GMACs); {name!r} will be removed",
                      RenamedWarning, stacklevel=3)
    return new


def rename_legacy(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a recorded mapping keyed by metric (metrics, constraints, objectives) with the
    legacy names renamed, silently: what an old study recorded is not the user's typo."""
    return {LEGACY_NAMES.get(k, k): v for k, v in mapping.items()}


def trial_metrics(trial: Any) -> dict[str, Any]:
    """The metrics a trial recorded (its user attribute ``metrics``), under the current names.
    Every reader (report, progress display, penalties) goes through here."""
    return rename_legacy(trial.user_attrs.get("metrics") or {})


def recorded_spellings(recorded: Mapping[str, Any]) -> dict[str, str]:
    """metric -> the legacy name a study's records use for it (from the study's recorded
    constraints; empty for a study made after the rename). A continued study keeps its
    constraint keys as they were, so that every trial of it has the same keys."""
    return {LEGACY_NAMES[k]: k for k in recorded if k in LEGACY_NAMES}
