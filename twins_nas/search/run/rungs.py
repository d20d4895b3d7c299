"""Successive halving on a multi-objective front (the space's ``halving:`` section).

Optuna prunes single-objective studies only, so promotions happen beside the trials: every
trial is scored at rung 0 (the space's ``proxy:``, its accuracy is the value Optuna sees).
Whenever the study has `batch` more COMPLETE trials, a promotion round looks at each rung r
(below the top): of the n feasible trials that reached r, the best ``n // eta`` by
non-dominated rank on the space's objectives (with their rung-r accuracy), then crowding
distance, are trained again at rung r + 1 (``eta ** (r + 1)`` x the training images, same
network and seed) unless they already were. A last round runs when the search has its N
trials. Promotions are extra work, not extra trials: the trial count stays exact.

Results live in the study's user attributes, ``rung:NUMBER`` -> ``{"results": {"1":
{"accuracy", "seconds"}}, "claim": {...}}``, so they survive a resume and are seen by every
worker; a claim left by a dead process is taken over. The report (`effective_metrics`) gives
each trial the accuracy of the highest rung it reached and says which rung that is.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ...config import ArchConfig
from ..evaluate.status import TrialStatus
from ..pareto import promotion_order
from ..proxy.data import load_proxy_data
from ..proxy.settings import ProxySettings
from ..proxy.train import train_proxy
from ..space.metrics import trial_metrics
from .storage import as_lock
from .trials import error_line, owner_alive, owner_attrs

PREFIX = "rung:"
ROUNDS_KEY = "promotion_rounds"


def rung_settings(proxy: ProxySettings, eta: int, rung: int) -> ProxySettings:
    """The proxy settings of rung `rung` (0 = `proxy`): eta**rung x the training images."""
    return proxy.model_copy(update={"train_samples": proxy.train_samples * eta ** rung})


def promotions(study: optuna.Study) -> dict[int, dict]:
    """Trial number -> its promotion record (see the module docstring)."""
    return {int(k[len(PREFIX):]): v for k, v in study.user_attrs.items() if k.startswith(PREFIX)}


def reached(record: dict | None) -> int:
    """The highest rung a trial has an accuracy for (0 without promotions)."""
    return max((int(r) for r, res in (record or {}).get("results", {}).items() if res.get("accuracy") is not None),
               default=0)


def rung_accuracy(t: optuna.trial.FrozenTrial, record: dict | None, rung: int) -> float | None:
    if rung == 0:
        return trial_metrics(t).get("accuracy")
    res = (record or {}).get("results", {}).get(str(rung))
    return None if res is None else res["accuracy"]


def effective_metrics(t: optuna.trial.FrozenTrial, record: dict | None) -> dict[str, Any]:
    """The trial's metrics with ``accuracy`` from the highest rung it reached, that rung as
    ``rung``, and every rung's accuracy as ``accuracy_rungR`` (when the trial has one)."""
    m = dict(trial_metrics(t))
    if "accuracy" not in m:
        return m
    top = reached(record)
    m["accuracy_rung0"] = m["accuracy"]
    for r in range(1, top + 1):
        a = rung_accuracy(t, record, r)
        if a is not None:
            m[f"accuracy_rung{r}"] = a
    m["accuracy"] = m[f"accuracy_rung{top}"]
    m["rung"] = top
    return m


def rung_counts(records: dict[int, dict]) -> dict[int, int]:
    """How many trials reached each rung above 0."""
    out: dict[int, int] = {}
    for rec in records.values():
        for r in range(1, reached(rec) + 1):
            out[r] = out.get(r, 0) + 1
    return out


def promotion_summary(study: optuna.Study) -> str:
    """One line on the promotions of a study: trainings, trials per rung, seconds."""
    records = promotions(study)
    runs = sum(len(r.get("results", {})) for r in records.values())
    reached_by = ", ".join(f"rung {r}: {n} trials" for r, n in sorted(rung_counts(records).items()))
    seconds = sum(promotion_seconds(r) for r in records.values())
    return f"promotions: {runs} trainings at higher rungs ({reached_by or 'none yet'}), {seconds:.0f} s"


def promotion_seconds(record: dict | None) -> float:
    return sum(r.get("seconds", 0.0) for r in (record or {}).get("results", {}).values())


def select_promotions(trials: Sequence[optuna.trial.FrozenTrial], records: dict[int, dict],
                      objectives: dict[str, str], rungs: int, eta: int) -> list[tuple[int, int]]:
    """(trial number, target rung) of the trials to train at the next rung now (see the
    module docstring); trials with a live claim are left out."""
    feasible = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("status") == TrialStatus.OK
                and rung_accuracy(t, None, 0) is not None]
    out = []
    for r in range(rungs - 1):
        at_r = [t for t in feasible if reached(records.get(t.number)) >= r]
        quota = len(at_r) // eta
        if not quota:
            break
        rows = [dict(trial_metrics(t), accuracy=rung_accuracy(t, records.get(t.number), r)) for t in at_r]
        for i in promotion_order(rows, objectives)[:quota]:
            t = at_r[i]
            rec = records.get(t.number) or {}
            if reached(rec) == r and not rec.get("claim") and str(r + 1) not in rec.get("results", {}):
                out.append((t.number, r + 1))
    return out


class Promoter:
    """Runs the promotion rounds of one process (see the module docstring)."""

    def __init__(self, space: Any, seed: int, device: str, lock: str | Path | AbstractContextManager) -> None:
        self.space, self.seed, self.device = space, seed, device
        self.lock = as_lock(lock)  # the study's (storage.study_lock)
        self.halving = space.halving
        self.objectives = dict(space.objectives)
        self.choices = space.geometry_choices()

    @property
    def active(self) -> bool:
        return self.halving.rungs > 1 and "accuracy" in self.objectives

    def _claim(self, study: optuna.Study, final: bool) -> list[tuple[int, int]]:
        with self.lock:
            trials = study.get_trials(deepcopy=False)
            complete = sum(1 for t in trials if t.state == TrialState.COMPLETE)
            due = complete // self.halving.batch
            if not final and due <= study.user_attrs.get(ROUNDS_KEY, 0):
                return []
            study.set_user_attr(ROUNDS_KEY, due)
            records = promotions(study)
            orphans = [(number, rec["claim"]["rung"]) for number, rec in records.items()  # a dead process's
                       if rec.get("claim") and owner_alive(rec["claim"].get("owner")) is False]  # are taken over
            picked = orphans + select_promotions(trials, records, self.objectives, self.halving.rungs,
                                                 self.halving.eta)
            for number, rung in picked:
                rec = dict(records.get(number) or {"results": {}})
                rec["claim"] = {"rung": rung, "owner": owner_attrs(),
                                "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
                study.set_user_attr(f"{PREFIX}{number}", rec)
            return picked

    def _train(self, study: optuna.Study, number: int, rung: int) -> None:
        t = study.get_trials(deepcopy=False)[number]
        settings = rung_settings(self.space.proxy, self.halving.eta, rung)
        data = load_proxy_data(settings, seed=self.seed)
        t0 = time.perf_counter()
        try:
            res = train_proxy(ArchConfig.from_dict(t.user_attrs["config"]), settings, data,
                              seed=t.user_attrs.get("proxy_seed", 0), device=self.device,
                              resolution=self.space.input_size, choices=self.choices)
            result: dict[str, Any] = {"accuracy": float(res.accuracy)}
        except Exception as e:  # noqa: BLE001 (e.g. diverged: recorded, never retried, the study goes on)
            result = {"accuracy": None, "error": error_line(e)}
        result.update(seconds=round(time.perf_counter() - t0, 3), train_samples=settings.train_samples)
        rec = dict(promotions(study).get(number) or {"results": {}})
        rec["results"] = dict(rec.get("results", {}), **{str(rung): result})
        rec["claim"] = None
        study.set_user_attr(f"{PREFIX}{number}", rec)

    def run(self, study: optuna.Study, final: bool = False) -> int:
        """Run the promotion rounds that are due (with `final`, every one, until nothing is
        left to promote); returns how many trainings it ran."""
        if not self.active:
            return 0
        done = 0
        while True:
            picked = self._claim(study, final)
            if not picked:
                return done
            for number, rung in picked:
                self._train(study, number, rung)
                done += 1
            if not final:
                return done
