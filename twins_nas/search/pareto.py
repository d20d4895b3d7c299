"""The Pareto front of a study, its knee, pick rules and the hypervolume curve.

Pure functions on plain data: a *row* is a dict of metric values of one finished, feasible
trial (`{"accuracy": 0.81, "throughput": 412.0, ...}`) and `objectives` maps metric names to
"maximize" / "minimize" (the order of a study's objectives).

* `pareto_mask(rows, objectives)`: which rows no other row dominates.
* `knee_index(rows, objectives)`: the front point closest to the ideal point once every
  objective is scaled to [0, 1] over the front (1 = the best value on the front): a balanced
  trade-off that needs no weights and works for any number of objectives.
* `parse_pick(text)` / `select(rule, rows, objectives)`: a pick rule such as
  ``knee``, ``max accuracy where throughput>=500``, ``min latency_ms where accuracy>=0.8 and
  params_m<=20`` or ``best accuracy`` (best = the objective's direction, else the metric's
  natural one). Errors are one-line `ConfigError`s.
* `hypervolume_history(points, objectives)`: the hypervolume after each trial, objectives
  scaled to [0, 1] (0 = best, 1 = worst value among all the points) with the reference point
  fixed at 1.1 in every objective, so the curve rises as the front improves and the last
  value is comparable between exports of the same study.
"""
from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..config import ConfigError
from .optuna_compat import hypervolume
from .space.metrics import METRICS, NATURAL, canonical_metric

REFERENCE = 1.1  # hypervolume reference point in scaled objective space (worst seen = 1)

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq, "=": operator.eq,
}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_COND_RE = re.compile(rf"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|=|>|<)\s*({_NUMBER})\s*$")
PICK_HELP = ("knee | max METRIC | min METRIC | best METRIC, optionally followed by "
             "'where METRIC>=X [and METRIC<=Y ...]'")


# ---- dominance -------------------------------------------------------------------------------
def _losses(rows: Sequence[Mapping[str, float]], objectives: Mapping[str, str]) -> np.ndarray:
    """(n, k) array to minimise: maximised objectives are negated."""
    cols = []
    for metric, direction in objectives.items():
        sign = -1.0 if direction == "maximize" else 1.0
        cols.append([sign * float(r[metric]) for r in rows])
    return np.array(cols, dtype=float).T.reshape(len(rows), len(objectives))


def _mask_from_losses(loss: np.ndarray) -> np.ndarray:
    n = len(loss)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        if not mask[i]:
            continue
        dominated = np.all(loss <= loss[i], axis=1) & np.any(loss < loss[i], axis=1)
        if dominated.any():
            mask[i] = False
    return mask


def pareto_mask(rows: Sequence[Mapping[str, float]], objectives: Mapping[str, str]) -> np.ndarray:
    """Boolean mask of the non-dominated rows (duplicates of a front point are all kept)."""
    if not rows:
        return np.zeros(0, dtype=bool)
    return _mask_from_losses(_losses(rows, objectives))


def nondominated_ranks(rows: Sequence[Mapping[str, float]], objectives: Mapping[str, str]) -> np.ndarray:
    """Front number of each row (0 = non-dominated, 1 = non-dominated once front 0 is removed,
    ...), as NSGA-II's non-dominated sorting."""
    loss = _losses(rows, objectives)
    ranks = np.full(len(rows), -1)
    left = np.arange(len(rows))
    r = 0
    while len(left):
        mask = _mask_from_losses(loss[left])
        ranks[left[mask]] = r
        left = left[~mask]
        r += 1
    return ranks


def crowding_distances(rows: Sequence[Mapping[str, float]], objectives: Mapping[str, str]) -> np.ndarray:
    """NSGA-II crowding distance of each row within `rows` (one front): per objective, the
    gap between the two neighbours divided by the objective's range; the ends are infinite."""
    loss = _losses(rows, objectives)
    n, k = loss.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(k):
        order = np.argsort(loss[:, j], kind="stable")
        span = loss[order[-1], j] - loss[order[0], j]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (loss[order[2:], j] - loss[order[:-2], j]) / span
    return dist


def promotion_order(rows: Sequence[Mapping[str, float]], objectives: Mapping[str, str]) -> list[int]:
    """Row indices best first: by non-dominated rank, then by crowding distance (larger first),
    then by row index (earlier first)."""
    if not rows:
        return []
    ranks = nondominated_ranks(rows, objectives)
    crowd = np.zeros(len(rows))
    for r in set(ranks.tolist()):
        idx = np.flatnonzero(ranks == r)
        crowd[idx] = crowding_distances([rows[int(i)] for i in idx], objectives)
    return sorted(range(len(rows)), key=lambda i: (ranks[i], -crowd[i], i))


def _scaled_goodness(rows: Sequence[Mapping[str, float]], objectives: Mapping[str, str]) -> np.ndarray:
    """Each objective scaled to [0, 1] over `rows`, 1 = best (a constant objective gives 1)."""
    loss = _losses(rows, objectives)
    lo, hi = loss.min(axis=0), loss.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.where(hi > lo, (hi - loss) / span, 1.0)


def knee_index(rows: Sequence[Mapping[str, float]], objectives: Mapping[str, str]) -> int:
    """Index (into `rows`) of the knee of their Pareto front (see the module docstring).
    Ties go to the earlier row."""
    if not rows:
        raise ValueError("knee of an empty set")
    front = np.flatnonzero(pareto_mask(rows, objectives))
    good = _scaled_goodness([rows[int(i)] for i in front], objectives)
    dist = np.sqrt(((1.0 - good) ** 2).sum(axis=1))
    return int(front[int(np.argmin(dist))])


# ---- pick rules ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    metric: str
    op: str
    value: float

    def holds(self, row: Mapping[str, float]) -> bool:
        v = row.get(self.metric)
        return v is not None and not (isinstance(v, float) and math.isnan(v)) and _OPS[self.op](float(v), self.value)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


@dataclass(frozen=True)
class PickRule:
    """`kind` is 'knee', 'max', 'min' or 'best'; `metric` is None for the knee."""

    kind: str
    metric: str | None = None
    conditions: tuple[Condition, ...] = field(default_factory=tuple)
    text: str = "knee"

    def metrics(self) -> set[str]:
        return ({self.metric} if self.metric else set()) | {c.metric for c in self.conditions}


def _check_metric(name: str, text: str) -> str:
    name = canonical_metric(name)
    if name not in METRICS:
        raise ConfigError(f"pick={text!r}: unknown metric {name!r}; valid metrics: {', '.join(METRICS)}", field="pick")
    return name


def parse_pick(text: str) -> PickRule:
    """Parse a pick rule (see the module docstring); raises a one-line ConfigError."""
    raw = (text or "").strip()
    if not raw:
        raise ConfigError(f"pick is empty; expected {PICK_HELP}", field="pick")
    parts = re.split(r"\s+where(?:\s+|$)", raw, maxsplit=1, flags=re.I)
    head = parts[0].strip()
    tail = parts[1] if len(parts) > 1 else None
    if tail is None and re.search(r"(>=|<=|==|=|>|<)", head):
        raise ConfigError(f"pick={raw!r}: conditions go after 'where', e.g. "
                          f"'max accuracy where throughput>=500'", field="pick")
    words = head.split()
    if not words:
        raise ConfigError(f"pick={raw!r}: expected {PICK_HELP}", field="pick")
    kind = words[0].lower()
    metric = None
    if kind == "knee":
        if len(words) != 1:
            raise ConfigError(f"pick={raw!r}: 'knee' takes no metric (use 'max METRIC' to maximise one)", field="pick")
    elif kind in ("max", "min", "best"):
        if len(words) != 2:
            raise ConfigError(f"pick={raw!r}: expected '{kind} METRIC', e.g. '{kind} accuracy'", field="pick")
        metric = _check_metric(words[1], raw)
    else:
        raise ConfigError(f"pick={raw!r}: unknown rule {words[0]!r}; expected {PICK_HELP}", field="pick")
    conds: list[Condition] = []
    if tail is not None:
        pieces = [p for p in re.split(r"\s+and\s+|\s*,\s*", tail.strip(), flags=re.I)]
        if not any(p.strip() for p in pieces):
            raise ConfigError(f"pick={raw!r}: 'where' needs a condition such as throughput>=500", field="pick")
        for p in pieces:
            m = _COND_RE.match(p)
            if not m:
                raise ConfigError(f"pick={raw!r}: cannot read condition {p.strip()!r}; write METRIC OP NUMBER "
                                  f"with OP one of >=, <=, >, <, == (e.g. throughput>=500)", field="pick")
            conds.append(Condition(_check_metric(m.group(1), raw), m.group(2), float(m.group(3))))
    return PickRule(kind=kind, metric=metric, conditions=tuple(conds), text=raw)


class NoMatch(ConfigError):
    """No finished trial satisfies a pick rule's conditions."""


def select(rule: PickRule, rows: Sequence[Mapping[str, float]], objectives: Mapping[str, str]) -> int:
    """Index into `rows` of the config the rule picks. Raises ConfigError when a metric of the
    rule was not measured in these rows, NoMatch when no row satisfies the conditions."""
    if not rows:
        raise NoMatch("no finished feasible trial to pick from")
    measured = {k for r in rows for k, v in r.items() if v is not None}
    for m in sorted(rule.metrics()):
        if m not in measured:
            raise ConfigError(f"pick={rule.text!r}: {m} was not measured in this study "
                              f"(measured: {', '.join(k for k in METRICS if k in measured)})", field="pick")
    idx = [i for i, r in enumerate(rows) if all(c.holds(r) for c in rule.conditions)]
    if not idx:
        conds = " and ".join(str(c) for c in rule.conditions)
        ranges = "; ".join(
            f"{c.metric} ranges {min(r[c.metric] for r in rows):.4g}..{max(r[c.metric] for r in rows):.4g}"
            for c in dict((c.metric, c) for c in rule.conditions).values())
        raise NoMatch(f"pick={rule.text!r}: no finished feasible trial has {conds} ({ranges})", field="pick")
    sub = [rows[i] for i in idx]
    if rule.kind == "knee":
        return idx[knee_index(sub, objectives)]
    metric = rule.metric
    assert metric is not None  # every rule but the knee names a metric
    direction = {"max": "maximize", "min": "minimize"}.get(rule.kind) or objectives.get(metric) \
        or NATURAL[metric]
    sign = 1.0 if direction == "maximize" else -1.0
    # best value; ties broken by the Pareto front (a dominated tie is never preferred), then order
    front = pareto_mask(sub, objectives) if all(m in measured for m in objectives) else np.ones(len(sub), bool)
    best = max(range(len(sub)), key=lambda j: (sign * float(sub[j][metric]), bool(front[j]), -j))
    return idx[best]


# ---- hypervolume -------------------------------------------------------------------------
def hypervolume_history(points: Sequence[Mapping[str, float] | None],
                        objectives: Mapping[str, str]) -> list[float]:
    """Hypervolume of the points seen so far, after each entry of `points` (trial order; None
    for a trial that gave no feasible point). See the module docstring for the scaling."""
    valid = [p for p in points if p is not None]
    if not valid:
        return [0.0] * len(points)
    loss_all = _losses(valid, objectives)
    lo, hi = loss_all.min(axis=0), loss_all.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    ref = np.full(len(objectives), REFERENCE)
    out, front = [], np.zeros((0, len(objectives)))
    hv = 0.0
    k = 0
    for p in points:
        if p is not None:
            scaled = (loss_all[k] - lo) / span
            k += 1
            if not np.any(np.all(front <= scaled, axis=1)):  # not weakly dominated: the HV grows
                keep = ~np.all(scaled <= front, axis=1)
                front = np.vstack([front[keep], scaled])
                hv = hypervolume(front, ref)
        out.append(hv)
    return out
