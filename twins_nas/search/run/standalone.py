"""Stand-alone training of the best of a search that scored inherited weights.

A search with a supernet (`SearchSettings.supernet`) scores every trial by the weights its
subnet inherits: cheap, deterministic, and only a proxy of what the network reaches when it is
trained on its own. Once the search has its N trials, the top `retrain` architectures of its
inherited front (`pareto.promotion_order`: by non-dominated rank, then crowding distance, then
trial order) are trained stand-alone with the space's ordinary proxy, `retrain_seeds` seeds
each; the report then ranks by those stand-alone accuracies (`standalone_architectures`) and
says which accuracy is which.

The trainings are extra work, not trials (the trial count stays exact) and are scheduled like
the replicates (`replication.Replicator`): records in the study's user attributes,
``standalone:n`` -> ``{"results": {"i": {"accuracy", "seed", "rung", "seconds"}}, "claims": ...}``
for the architecture whose lowest trial is n, seed i (0, 1, ...) being
``replication.replicate_seed(seed, n, i)``; they survive a resume, and a claim left by a dead
process is taken over.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from contextlib import AbstractContextManager
from pathlib import Path

import optuna

from ..pareto import promotion_order
from ..replicates import Architecture, Noise, estimate_noise, standard_error
from ..space.space import SearchSpace
from .replication import (
    Replicator,
    live_claims,
    replicate_seconds,
    replicate_trainings,
    replications,
    study_architectures,
    val_samples_of,
)

PREFIX = "standalone:"


def standalone_records(study: optuna.Study) -> dict[int, dict]:
    """Lowest trial number of an architecture -> its stand-alone training record."""
    return replications(study, PREFIX)


def top_architectures(archs: list[Architecture], objectives: dict[str, str], top: int) -> list[Architecture]:
    """The `top` best feasible architectures (with every objective measured) by non-dominated
    rank, then crowding distance, then trial order."""
    ok = [a for a in archs if a.feasible and all(a.metrics.get(m) is not None for m in objectives)]
    return [ok[i] for i in promotion_order([a.metrics for a in ok], objectives)[:max(0, top)]]


class StandaloneTrainer(Replicator):
    """Trains the top of an inherited front stand-alone (see the module docstring)."""

    prefix = PREFIX

    def __init__(self, space: SearchSpace, seed: int, device: str, lock: str | Path | AbstractContextManager,
                 top: int, seeds: int) -> None:
        super().__init__(space, seed, device, lock, trials=0)
        self.top, self.seeds = top, seeds

    @property
    def active(self) -> bool:
        return self.top > 0 and self.seeds > 0 and "accuracy" in self.objectives

    def next_job(self, study: optuna.Study, records: dict[int, dict]) -> tuple[int, int, int] | None:
        """The first of the top architectures (in their order) with fewer than `seeds`
        trainings done or claimed, and its lowest free seed index."""
        archs, _ = study_architectures(study)
        for a in top_architectures(archs, self.objectives, self.top):
            rec = records.get(a.first) or {}
            taken = {int(i) for i in (rec.get("results") or {})} | live_claims(rec)
            if len(taken) < self.seeds:
                return a.first, next(i for i in range(self.seeds + len(taken)) if i not in taken), 0
        return None


def standalone_architectures(study: optuna.Study, archs: list[Architecture]) -> tuple[list[Architecture], Noise]:
    """The architectures of `archs` (inherited scores, `study_architectures`) that were trained
    stand-alone, in the same order, with ``accuracy`` (and ``accuracy_rung0``) the mean of
    their stand-alone trainings, ``accuracy_inherited`` the inherited score, the standard error
    (`replicates.standard_error` with the noise estimate of every stand-alone training) and
    `trainings` the number of stand-alone trainings; and that noise estimate."""
    records = standalone_records(study)
    results = {n: [float(r["accuracy"]) for r in (rec.get("results") or {}).values() if r.get("accuracy") is not None]
               for n, rec in records.items()}
    results = {n: v for n, v in results.items() if v}
    noise = estimate_noise(list(results.values()), val_samples_of(study))
    out = []
    for a in archs:
        vals = results.get(a.first)
        if not vals:
            continue
        mean = math.fsum(vals) / len(vals)
        metrics = dict(a.metrics, accuracy=mean, accuracy_inherited=a.metrics.get("accuracy"))
        if "accuracy_rung0" in metrics:
            metrics["accuracy_rung0"] = mean
        se = standard_error(vals, noise.sd, pooled=noise.source == "replicates")
        out.append(dataclasses.replace(a, metrics=metrics, se=dict(a.se, accuracy=se, accuracy_rung0=se),
                                       trainings=len(vals)))
    return out, noise


def standalone_summary(study: optuna.Study) -> str:
    """One line on a study's stand-alone trainings: how many, of how many architectures, seconds,
    and the mean gap between stand-alone and inherited accuracy."""
    records = {n: rec for n, rec in standalone_records(study).items() if rec.get("results")}
    archs, _ = study_architectures(study)
    retrained, _ = standalone_architectures(study, archs)
    gap = (statistics.fmean(a.metrics["accuracy"] - a.metrics["accuracy_inherited"] for a in retrained
                            if a.metrics.get("accuracy_inherited") is not None)
           if any(a.metrics.get("accuracy_inherited") is not None for a in retrained) else None)
    return (f"stand-alone: {replicate_trainings(records)} proxy trainings of the top {len(records)} architectures "
            f"of the inherited front, {replicate_seconds(records):.0f} s"
            + (f"; stand-alone minus inherited accuracy {100 * gap:+.1f} points on average" if gap is not None
               else ""))
