"""Replicates of an architecture and the uncertainty of its proxy accuracy.

A sampler may propose a network it proposed before (TPE in a discrete space often does); each
proposal trains the proxy with its own seed and is a trial of its own. The report counts the
COMPLETE trials whose configs build the same network (`space.network_key`) as *replicates* of
one *architecture* and lists each architecture once, with the mean of its replicates. The
trainings the search schedules for the front (`twins_nas.search.run.replication`) are
replicates too (``extra``), without a trial of their own. Pure functions on plain data:

* `group_replicates(trials)`: the trials grouped by network, groups in order of their lowest
  trial number; `Architecture.id` is ``a`` + that number (``a77``), stable as trials are added.
* `estimate_noise(groups, val_samples)`: the SD of one proxy training's accuracy in this study:
  the pooled within-architecture SD over the architectures with at least two replicates, when
  there are at least `MIN_GROUPS` of them (``source: "replicates"``); else the binomial floor
  ``sqrt(p (1 - p) / val_samples)`` of a validation split of `val_samples` images, with p the
  mean accuracy of every replicate (``source: "binomial"``; a lower bound: it leaves out the
  seed's effect on training); else none (``source: "none"``: no accuracy, or the split size
  was not recorded).
* `summarize(replicates, noise_sd, pooled)`: an architecture's metrics (see `summarize`) and
  the standard error of each accuracy-like metric (`standard_error`: the pooled noise SD / √n
  when the noise was pooled from replicates, else the architecture's own sample SD / √n).
* `indistinguishable(rows, se, objectives)`: which members of a front cannot be told apart
  from a neighbour on the front (see there).
* `near_front(rows, se, objectives)`: the front and the architectures within `Z` standard
  errors of it on accuracy, closest first: where more replicates matter (see there).
"""
from __future__ import annotations

import math
import re
import statistics
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .pareto import pareto_mask

MIN_GROUPS = 3  # architectures with >= 2 replicates needed for the pooled SD
Z = 2.0         # accuracies within Z combined standard errors cannot be told apart
CLOSED_FORM = ("params", "params_m", "gmacs", "proxy_params")  # the same for every replicate
_ACCURACY = re.compile(r"accuracy(_rung\d+)?")


def is_accuracy_like(metric: str) -> bool:
    """Whether a metric is a proxy accuracy (``accuracy`` or a rung's ``accuracy_rungR``),
    i.e. noisy from one training to the next."""
    return _ACCURACY.fullmatch(metric) is not None


@dataclass(frozen=True)
class Replicate:
    """One COMPLETE trial as the report sees it: its number, the key of the network its config
    builds, its metrics (`rungs.effective_metrics`), its constraint values (<= 0: satisfied) and
    whether it was scored (status ``ok``). An `extra` replicate is a further training of trial
    `number`'s network with another seed, scheduled by the search: its metrics are the trial's
    with that training's accuracy."""

    number: int
    key: Hashable
    metrics: Mapping[str, Any]
    constraints: Mapping[str, float]
    scored: bool
    extra: bool = False


@dataclass(frozen=True)
class Noise:
    """The study's estimate of the SD of one proxy training's accuracy (see the module
    docstring): `sd` (None: no estimate), its `source`, the number of architectures with at
    least two replicates (`groups`), and for the binomial floor the split size and the p used."""

    sd: float | None
    source: str
    groups: int
    val_samples: int | None = None
    accuracy: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sd": None if self.sd is None else round(self.sd, 6), "source": self.source,
                               "groups": self.groups}
        if self.source == "binomial":
            out.update(val_samples=self.val_samples, accuracy=round(self.accuracy or 0.0, 6))
        return out


@dataclass(frozen=True)
class Architecture:
    """One network of a study: `trials` (the numbers of the trials that built it, ascending),
    the summarized `metrics` and the standard error `se` of each accuracy-like metric (None: no
    estimate), whether it is `feasible`: at least one replicate was scored and the mean of every
    constraint over the replicates is <= 0 (the constraints are linear in their metric, so this
    is the bound checked on the mean), and `extra`: how many of its replicates are scheduled
    trainings without a trial of their own."""

    trials: tuple[int, ...]
    metrics: dict[str, Any]
    se: dict[str, float | None]
    feasible: bool
    extra: int = 0
    trainings: int | None = None  # when its accuracy is not its trials' (`run.standalone`): the trainings it averages

    @property
    def id(self) -> str:
        return f"a{self.trials[0]}"

    @property
    def first(self) -> int:
        """The lowest trial number: the trial whose config, parameters and timings stand for it."""
        return self.trials[0]

    @property
    def replicates(self) -> int:
        """Trainings its metrics average: its trials and the extra replicates (or `trainings`)."""
        return self.trainings if self.trainings is not None else len(self.trials) + self.extra


def group_replicates(trials: Sequence[Replicate]) -> list[list[Replicate]]:
    """The trials grouped by `key`, each group in trial order (a trial before its extra
    replicates), groups by their lowest number."""
    groups: dict[Hashable, list[Replicate]] = {}
    for t in sorted(trials, key=lambda t: (t.number, t.extra)):
        groups.setdefault(t.key, []).append(t)
    return list(groups.values())


def pooled_sd(groups: Sequence[Sequence[float]]) -> tuple[float | None, int]:
    """(pooled within-group SD, number of groups with >= 2 values): the square root of the sum
    of squared deviations from each group's mean over the sum of (n - 1); None without such a
    group."""
    multi = [g for g in groups if len(g) >= 2]
    dof = sum(len(g) - 1 for g in multi)
    if not dof:
        return None, 0
    ss = math.fsum((x - statistics.fmean(g)) ** 2 for g in multi for x in g)
    return math.sqrt(ss / dof), len(multi)


def estimate_noise(groups: Sequence[Sequence[float]], val_samples: int | None,
                   min_groups: int = MIN_GROUPS) -> Noise:
    """The study's noise estimate from each architecture's replicate accuracies (see the module
    docstring)."""
    sd, n = pooled_sd(groups)
    if sd is not None and n >= min_groups:
        return Noise(sd=sd, source="replicates", groups=n)
    values = [x for g in groups for x in g]
    if values and val_samples:
        p = statistics.fmean(values)
        return Noise(sd=math.sqrt(max(p * (1.0 - p), 0.0) / val_samples), source="binomial", groups=n,
                     val_samples=int(val_samples), accuracy=p)
    return Noise(sd=None, source="none", groups=n)


def standard_error(values: Sequence[float], noise_sd: float | None, pooled: bool = False) -> float | None:
    """Standard error of the mean of `values`. With a `pooled` noise SD (estimated from many
    architectures' replicates, `estimate_noise` source ``replicates``): noise SD / sqrt(n) for
    any n, since one seed's noise is much the same for every architecture and an SD from 2 or 3
    values of one architecture is itself very noisy (one or two degrees of freedom). Otherwise:
    sample SD / sqrt(n) for n >= 2 (the binomial floor leaves seed noise out), the noise SD for
    one value. None for no value, or one value and no noise SD."""
    if not values:
        return None
    if pooled and noise_sd is not None:
        return noise_sd / math.sqrt(len(values))
    if len(values) >= 2:
        return statistics.stdev(values) / math.sqrt(len(values))
    return noise_sd if values else None


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def summarize(replicates: Sequence[Replicate], noise_sd: float | None, pooled: bool = False) -> Architecture:
    """One architecture from its replicates (trial order). Each metric is taken over the
    replicates that recorded it: accuracy-like ones and measured ones (throughput, latency,
    memory, zero-cost scores) are the mean; closed-form ones (`CLOSED_FORM`) and non-numbers
    the first replicate's; ``rung`` the highest any replicate reached, and ``accuracy`` the
    mean accuracy at that rung (without promotions: the mean accuracy)."""
    metrics: dict[str, Any] = {}
    se: dict[str, float | None] = {}
    keys = list(dict.fromkeys(k for r in replicates for k in r.metrics))
    for k in keys:
        vals = [r.metrics[k] for r in replicates if r.metrics.get(k) is not None]
        if not vals:
            metrics[k] = None
        elif k == "rung":
            metrics[k] = max(vals)
        elif k in CLOSED_FORM or not all(_numeric(v) for v in vals):
            metrics[k] = vals[0]
        else:
            metrics[k] = math.fsum(vals) / len(vals)
            if is_accuracy_like(k):
                se[k] = standard_error(vals, noise_sd, pooled)
    top = f"accuracy_rung{metrics['rung']}" if metrics.get("rung") is not None else None
    if "accuracy" in metrics and top in metrics:
        metrics["accuracy"], se["accuracy"] = metrics[top], se.get(top)
    means: dict[str, list[float]] = {}
    for r in replicates:
        for c, v in r.constraints.items():
            means.setdefault(c, []).append(v)
    feasible = any(r.scored for r in replicates) and all(math.fsum(v) / len(v) <= 0 for v in means.values())
    return Architecture(trials=tuple(sorted({r.number for r in replicates if not r.extra})), metrics=metrics, se=se,
                        feasible=feasible, extra=sum(1 for r in replicates if r.extra))


def indistinguishable(rows: Sequence[Mapping[str, Any]], se: Sequence[float | None],
                      objectives: Mapping[str, str], metric: str = "accuracy", z: float = Z) -> list[list[int]]:
    """For each row of a Pareto front (`rows`: its members' mean metrics, `se`: the standard
    error of each one's `metric`), the indices of the neighbours it cannot be told apart from.

    Neighbours are adjacent members once the front is ordered by `metric`, best first (ties:
    the earlier row first); on a two-objective front that is the order along the front. Member
    a is indistinguishable from a neighbour b when

    * ``|m_a - m_b| <= z * sqrt(se_a**2 + se_b**2)`` (their `metric`s are within z combined
      standard errors), and
    * a is not strictly better than b on every other objective (so a's place on the front
      rests on a lead in `metric` that noise can explain: b may in truth be as good or better
      everywhere).

    A member without a standard error is told apart from every other; every list is empty when
    `metric` is not an objective."""
    out: list[list[int]] = [[] for _ in rows]
    if metric not in objectives:
        return out
    sign = 1.0 if objectives[metric] == "maximize" else -1.0
    others = [(m, 1.0 if d == "maximize" else -1.0) for m, d in objectives.items() if m != metric]
    order = sorted(range(len(rows)), key=lambda i: (-sign * float(rows[i][metric]), i))

    def ahead(a: int, b: int) -> bool:
        return all(s * float(rows[a][m]) > s * float(rows[b][m]) for m, s in others)

    for a, b in zip(order, order[1:]):
        sa, sb = se[a], se[b]
        if sa is None or sb is None or math.isnan(sa) or math.isnan(sb):
            continue
        if abs(float(rows[a][metric]) - float(rows[b][metric])) <= z * math.sqrt(sa ** 2 + sb ** 2):
            if not ahead(a, b):
                out[a].append(b)
            if not ahead(b, a):
                out[b].append(a)
    return out


def near_front(rows: Sequence[Mapping[str, Any]], se: Sequence[float | None], objectives: Mapping[str, str],
               metric: str = "accuracy", z: float = Z) -> list[tuple[int, float]]:
    """Where more replicates can change the front: (index, gap) for every row (`rows`: the
    feasible architectures' mean metrics, `se`: the standard error of each one's `metric`) that
    is on the front (gap 0) or that noise could put there, closest first (ties: lower index).

    A row off the front is *near* when no row that dominates it leads it on `metric` by more
    than z combined standard errors (``m_d - m_a > z * sqrt(se_d**2 + se_a**2)``); its gap is
    the largest such lead in combined standard errors (<= z). A row without a standard error
    is near only when on the front; nothing is near when `metric` is not an objective."""
    if metric not in objectives or not rows:
        return []
    sign = 1.0 if objectives[metric] == "maximize" else -1.0
    mask = pareto_mask(rows, objectives)
    signs = {m: 1.0 if d == "maximize" else -1.0 for m, d in objectives.items()}

    def dominates(d: int, a: int) -> bool:
        better = [signs[m] * float(rows[d][m]) - signs[m] * float(rows[a][m]) for m in objectives]
        return all(b >= 0 for b in better) and any(b > 0 for b in better)

    out: list[tuple[int, float]] = []
    for a in range(len(rows)):
        if mask[a]:
            out.append((a, 0.0))
            continue
        sa = se[a]
        if sa is None or math.isnan(sa):
            continue
        gap = 0.0
        for d in range(len(rows)):
            if d == a or not dominates(d, a):
                continue
            se_d = se[d]
            sd = 0.0 if se_d is None or math.isnan(se_d) else se_d
            lead = sign * (float(rows[d][metric]) - float(rows[a][metric]))
            combined = math.sqrt(sa ** 2 + sd ** 2)
            gap = max(gap, lead / combined if combined > 0 else math.inf)
            if gap > z:
                break
        if gap <= z:
            out.append((a, gap))
    return sorted(out, key=lambda p: (p[1], p[0]))
