"""Replicates where they matter: further trainings of the architectures near the front.

One proxy training is one draw of a noise about as large as the differences it ranks, so the
front of single trainings rewards lucky seeds. With the space's ``replicates: {count: r}``
(r > 1), once the search has its N trials, the architectures on the front of the *mean*
accuracies and those within ``z`` combined standard errors of it (`replicates.near_front`) are
trained again with further seeds until each has r replicates, its trials included: the front
first (fewest replicates first), then the rest, closest first; the front is recomputed after
every training, so an architecture that was lucky and falls back makes room for one that
rises. At most ``budget x N`` further trainings in all. Why at the end: a finished trial's
values cannot change in Optuna, so replicates would not steer the sampler; at the end the front
they refine is the one the report shows.

The trainings are extra work, not trials: the trial count stays exact. Replicate i (1, 2, ...)
of the architecture whose lowest trial is n trains trial n's config at the rung that
architecture reached (`rungs`), with seed `replicate_seed` (seed, n, i). Records live in the
study's user attributes, ``replicate:n`` -> ``{"results": {"i": {"accuracy", "seed", "rung",
"seconds"}}, "claims": {"i": {"owner", "since"}}}``, so they survive a resume and are shared by
every worker process; each training is claimed under the study's lock, and a claim left by a
dead process is taken over. The report (`study_architectures`) counts them as replicates.
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Hashable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ...config import ArchConfig
from ...errors import ConfigError
from ..evaluate.objective import trial_seed
from ..evaluate.status import TrialStatus
from ..proxy.data import load_proxy_data
from ..proxy.train import train_proxy
from ..replicates import Architecture, Noise, Replicate, estimate_noise, group_replicates, near_front, summarize
from ..space.space import SearchSpace, network_key
from .rungs import effective_metrics, promotions, rung_settings
from .storage import as_lock
from .trials import error_line, owner_alive, owner_attrs

PREFIX = "replicate:"
SEED_STRIDE = 1 << 20  # replicate seeds stay clear of every trial's seed (trial numbers < 2**20)


def replicate_seed(seed: int, number: int, index: int) -> int:
    """The proxy seed of replicate `index` (>= 1) of the architecture whose lowest trial is
    `number`, in a study seeded with `seed` (index 0 is that trial's own seed)."""
    return (trial_seed(seed, number) + int(index) * SEED_STRIDE) % (2 ** 31 - 1)


def replications(study: optuna.Study, prefix: str = PREFIX) -> dict[int, dict]:
    """Lowest trial number of an architecture -> its replicate record (module docstring); with
    another `prefix`, the records of another kind of further training (`standalone`)."""
    return {int(k[len(prefix):]): v for k, v in study.user_attrs.items() if k.startswith(prefix)}


def replicate_seconds(records: dict[int, dict]) -> float:
    return sum(r.get("seconds", 0.0) for rec in records.values() for r in (rec.get("results") or {}).values())


def replicate_trainings(records: dict[int, dict]) -> int:
    return sum(len(rec.get("results") or {}) for rec in records.values())


# ---- the study's architectures -----------------------------------------------------------------
def _network(t: optuna.trial.FrozenTrial) -> Hashable:
    """The key of the network a trial's config builds (`space.network_key`); the trial itself
    when it recorded no readable config."""
    cfg = t.user_attrs.get("config")
    if cfg:
        with contextlib.suppress(ConfigError, ValueError):
            return network_key(ArchConfig.from_dict(cfg))
    return ("trial", t.number)


def val_samples_of(study: optuna.Study) -> int | None:
    """The proxy's validation split size the study recorded (its space's ``proxy.val_samples``)."""
    v = ((study.user_attrs.get("space") or {}).get("proxy") or {}).get("val_samples")
    return int(v) if isinstance(v, (int, float)) and v > 0 else None


def _extra_metrics(result: dict) -> dict[str, Any]:
    """The metrics of one replicate training: its accuracy, at its rung."""
    rung = int(result.get("rung", 0))
    return {"accuracy": result["accuracy"], f"accuracy_rung{rung}": result["accuracy"], "rung": rung}


def study_architectures(study: optuna.Study) -> tuple[list[Architecture], Noise]:
    """Every architecture of the study's COMPLETE trials, in order of their lowest trial number,
    summarized over their replicates (trials and replicate trainings; `replicates.summarize`),
    and the study's noise estimate from the rung-0 accuracies (`replicates.estimate_noise`)."""
    records = promotions(study)
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    reps = [Replicate(number=t.number, key=_network(t), metrics=effective_metrics(t, records.get(t.number)),
                      constraints=dict(t.constraints), scored=t.user_attrs.get("status") == TrialStatus.OK)
            for t in trials]
    keys = {r.number: r.key for r in reps}
    for number, rec in sorted(replications(study).items()):
        if number not in keys:
            continue
        for _, res in sorted((rec.get("results") or {}).items(), key=lambda kv: int(kv[0])):
            if res.get("accuracy") is not None:
                reps.append(Replicate(number=number, key=keys[number], metrics=_extra_metrics(res), constraints={},
                                      scored=True, extra=True))
    groups = group_replicates(reps)
    noise = estimate_noise([[r.metrics["accuracy_rung0"] for r in g if r.metrics.get("accuracy_rung0") is not None]
                            for g in groups], val_samples_of(study))
    return [summarize(g, noise.sd, pooled=noise.source == "replicates") for g in groups], noise


# ---- what to train next ------------------------------------------------------------------------
def live_claims(rec: dict) -> set[int]:
    """Indices claimed by a process that is alive (or whose liveness cannot be told)."""
    return {int(i) for i, c in (rec.get("claims") or {}).items() if owner_alive(c.get("owner")) is not False}


def next_replicate(archs: list[Architecture], records: dict[int, dict], objectives: Mapping[str, str],
                   count: int, z: float, limit: int) -> tuple[int, int, int] | None:
    """(lowest trial number, replicate index, rung) of the next training, or None when every
    architecture near the front has `count` replicates (claimed ones included) or `limit`
    trainings are done or claimed (see the module docstring for the order)."""
    if count <= 1 or "accuracy" not in objectives:
        return None
    used = sum(len(rec.get("results") or {}) + len(live_claims(rec)) for rec in records.values())
    if used >= limit:
        return None
    feasible = [a for a in archs if a.feasible and a.metrics.get("accuracy") is not None
                and all(a.metrics.get(m) is not None for m in objectives)]
    rows = [a.metrics for a in feasible]
    near = near_front(rows, [a.se.get("accuracy") for a in feasible], objectives, z=z)
    candidates = []
    for i, gap in near:
        a = feasible[i]
        rec = records.get(a.first) or {}
        have = len(a.trials) + len(rec.get("results") or {}) + len(live_claims(rec))  # failed ones too
        if have < count:
            candidates.append(((gap > 0, have, gap, a.first), a, rec))
    if not candidates:
        return None
    _, a, rec = min(candidates, key=lambda c: c[0])
    taken = {int(i) for i in (rec.get("results") or {})} | live_claims(rec)
    index = next(i for i in range(1, count + len(taken) + 1) if i not in taken)
    return a.first, index, int(a.metrics.get("rung") or 0)


class Replicator:
    """Trains the replicates of one process (see the module docstring). Subclasses schedule
    other further trainings of the study's architectures the same way (claimed under the
    study's lock, recorded under their own `prefix`, a dead process's claims taken over) by
    overriding `active`, `next_job` and `seed_of`."""

    prefix = PREFIX

    def __init__(self, space: SearchSpace, seed: int, device: str, lock: str | Path | AbstractContextManager,
                 trials: int) -> None:
        self.space, self.seed, self.device = space, seed, device
        self.lock = as_lock(lock)  # the study's (storage.study_lock)
        self.settings = space.replicates
        self.objectives: dict[str, str] = {str(m): str(d) for m, d in space.objectives.items()}
        self.limit = math.floor(self.settings.budget * trials)
        self.choices = space.geometry_choices()

    @property
    def active(self) -> bool:
        return self.settings.count > 1 and "accuracy" in self.objectives and self.limit > 0

    def next_job(self, study: optuna.Study, records: dict[int, dict]) -> tuple[int, int, int] | None:
        """(lowest trial number, index, rung) of the next training, or None when none is due."""
        archs, _ = study_architectures(study)
        return next_replicate(archs, records, self.objectives, self.settings.count, self.settings.z, self.limit)

    def seed_of(self, number: int, index: int) -> int:
        return replicate_seed(self.seed, number, index)

    def _claim(self, study: optuna.Study) -> tuple[int, int, int] | None:
        with self.lock:
            records = replications(study, self.prefix)
            for number, rec in records.items():  # a dead process's claims are dropped: their trainings are due again
                live = {i: c for i, c in (rec.get("claims") or {}).items() if owner_alive(c.get("owner")) is not False}
                if live != (rec.get("claims") or {}):
                    records[number] = dict(rec, claims=live)
                    study.set_user_attr(f"{self.prefix}{number}", records[number])
            job = self.next_job(study, records)
            if job is not None:
                number, index, _ = job
                rec = dict(records.get(number) or {"results": {}})
                rec["claims"] = dict(rec.get("claims") or {})
                rec["claims"][str(index)] = {"owner": owner_attrs(),
                                             "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
                study.set_user_attr(f"{self.prefix}{number}", rec)
            return job

    def _train(self, study: optuna.Study, number: int, index: int, rung: int) -> None:
        t = study.get_trials(deepcopy=False)[number]
        settings = rung_settings(self.space.proxy, self.space.halving.eta, rung)
        data = load_proxy_data(settings, seed=self.seed)
        seed = self.seed_of(number, index)
        t0 = time.perf_counter()
        try:
            res = train_proxy(ArchConfig.from_dict(t.user_attrs["config"]), settings, data, seed=seed,
                              device=self.device, resolution=self.space.input_size, choices=self.choices,
                              every_epoch=False)
            result: dict[str, Any] = {"accuracy": float(res.accuracy)}
        except Exception as e:  # noqa: BLE001 (e.g. diverged: recorded, never retried, the study goes on)
            result = {"accuracy": None, "error": error_line(e)}
        result.update(seed=seed, rung=rung, seconds=round(time.perf_counter() - t0, 3))
        with self.lock:
            rec = dict(replications(study, self.prefix).get(number) or {"results": {}})
            rec["results"] = dict(rec.get("results") or {}, **{str(index): result})
            rec["claims"] = {i: c for i, c in (rec.get("claims") or {}).items() if i != str(index)}
            study.set_user_attr(f"{self.prefix}{number}", rec)

    def run(self, study: optuna.Study, deadline: float | None = None,
            on_training: Callable[[int], None] | None = None) -> int:
        """Train until none is due (module docstring) or the `deadline` (a `time.time()`) has
        passed; `on_training(done)` after each one. Returns how many this process trained."""
        if not self.active:
            return 0
        done = 0
        while (deadline is None or time.time() < deadline) and (job := self._claim(study)) is not None:
            self._train(study, *job)
            done += 1
            if on_training is not None:
                on_training(done)
        return done


def replication_summary(study: optuna.Study) -> str:
    """One line on a study's replicate trainings: how many, of how many architectures, seconds."""
    records = replications(study)
    done = {n: rec for n, rec in records.items() if rec.get("results")}
    return (f"replicates: {replicate_trainings(done)} further trainings of {len(done)} architectures near the "
            f"front, {replicate_seconds(done):.0f} s")
