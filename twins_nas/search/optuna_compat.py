"""Every use of Optuna internals in twins-nas, in one place. Optuna has no public API for
these things; tests/unit/test_optuna_compat.py checks each against the installed Optuna
and fails loudly when a release changes them (tested with Optuna 5.0).

* `hypervolume(points, reference)`: Optuna's exact hypervolume (`optuna._hypervolume`);
* `fail_running_trial(study, trial, user_attrs)`: mark FAILED a RUNNING trial that another
  (dead) process asked for. `Study.tell(number, state=FAIL)` is public and accepts any
  RUNNING trial by number, but the user attributes saying why must be written first, and a
  trial that this process did not ask for is only reachable through the storage and the
  trial's storage id (`study._storage`, `FrozenTrial._trial_id`);
* `storage_url(study)`: the URL / journal file of a loaded study, for its report;
* `heartbeat_interval(study)` and `record_heartbeat(study, trial)`: the heartbeat that
  `Study.optimize` records from a thread of its own while a trial runs, for trials driven by
  ask-and-tell (the storage's public `record_heartbeat` needs the trial's storage id).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna
from optuna._hypervolume import compute_hypervolume
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """The hypervolume dominated by `points` (n, k), all minimised, up to `reference` (k,).
    The points must be mutually non-dominated (a Pareto front)."""
    return float(compute_hypervolume(np.asarray(points, dtype=float), np.asarray(reference, dtype=float),
                                     assume_pareto=True))


def fail_running_trial(study: optuna.Study, trial: FrozenTrial, user_attrs: Mapping[str, Any]) -> bool:
    """Write `user_attrs` to a RUNNING trial of `study`, then tell it FAILED. False (and
    nothing changed after the first write that failed) when the trial finished meanwhile,
    e.g. because another worker got there first."""
    storage = study._storage
    try:
        for key, value in user_attrs.items():
            storage.set_trial_user_attr(trial._trial_id, key, value)
        study.tell(trial.number, state=TrialState.FAIL)
    except (ValueError, RuntimeError):  # finished meanwhile (UpdateFinishedTrialError is a RuntimeError)
        return False
    return True


def storage_url(study: optuna.Study) -> str | None:
    """Best effort: the storage URL (RDB) or 'journal:PATH' (journal file) of a loaded study."""
    st = study._storage
    backend = getattr(st, "_backend", None)
    obj: Any  # a storage, its backend or the backend's: attributes read by name
    for obj in (st, backend, getattr(backend, "_backend", None)):
        if obj is None:
            continue
        if getattr(obj, "url", None):
            return str(obj.url)
        if getattr(obj, "_file_path", None):
            return f"journal:{obj._file_path}"
    return None


def _heartbeat_storage(study: optuna.Study) -> BaseHeartbeat | None:
    st = study._storage
    inner: BaseStorage = getattr(st, "_backend", st)  # RDB storages come wrapped in a cache
    for obj in (st, inner):
        if isinstance(obj, BaseHeartbeat) and is_heartbeat_enabled(obj):
            return obj
    return None


def heartbeat_interval(study: optuna.Study) -> int | None:
    """Seconds between heartbeats of the study's storage; None when it keeps none."""
    st = _heartbeat_storage(study)
    return st.get_heartbeat_interval() if st is not None else None


def record_heartbeat(study: optuna.Study, trial: optuna.Trial | FrozenTrial) -> None:
    """Record one heartbeat of a RUNNING trial (nothing on a storage without heartbeats)."""
    st = _heartbeat_storage(study)
    if st is not None:
        st.record_heartbeat(trial._trial_id)
