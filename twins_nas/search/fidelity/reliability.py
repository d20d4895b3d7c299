"""How reliable a seed-dependent score is, and what that means for its agreement with the reference.

* `kendall_tau(x, y)`: Kendall tau-b, NaN when undefined (fewer than 3 values, or one side constant).
* `seed_tau(by_arch)`: Kendall tau between the orders two seeds give the architectures; with more
  than two seeds the mean over every pair of seeds (each pair over the architectures holding both).
* `seed_sd(by_arch)`: the mean over architectures of the standard deviation (ddof 1) across seeds,
  in the score's own units (an accuracy as the scores store it: a fraction in [0, 1]).
* `seed_snr(by_arch)`: the signal-to-noise ratio of one score: the variance of the
  architectures' true values (their means' variance less its seed-noise share) over the seed
  variance of a single score. Averaging n seeds multiplies it by n, so per second of scoring it
  is the exchange rate of separation for compute: what `fidelity` compares data sets and
  budgets by.
* `corrected_tau(tau, r_x, r_y)`: tau / sqrt(r_x * r_y), a correction for attenuation (Spearman's,
  with each side's seed tau as its reliability), not a measurement: the agreement the scorer would
  show with a reference free of seed noise if the noise only blurred the order. Clipped to
  [-1, 1]; NaN when tau or a reliability is unknown or a reliability is <= 0.
* `separation(reference_means, reference_seed_tau, reference_seed_sd)`: whether the reference
  tells the architectures apart at all (`Separation`, rule in its docstring).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

SEPARATES_TAU = 0.8      # the reference's seed tau needed for "separates"
SEPARATES_SPAN = 5.0     # ... with a span of its means at least this many seed SDs
WEAKLY_TAU = 0.5         # the reference's seed tau needed for "weakly"


def kendall_tau(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Kendall tau-b of `x` against `y`; NaN with fewer than 3 values or a constant side."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan
    return float(stats.kendalltau(x, y).statistic)


def seed_tau(by_arch: Mapping[str, Mapping[int, float]]) -> float:
    """The mean over seed pairs (s, t), s < t, of the Kendall tau between seed s's and seed t's
    values over the architectures that have both; pairs where tau is undefined are left out;
    NaN when none is defined. `by_arch`: architecture -> seed -> value."""
    seeds = sorted({s for v in by_arch.values() for s in v})
    taus = []
    for s, t in itertools.combinations(seeds, 2):
        both = [v for v in by_arch.values() if s in v and t in v]
        tau = kendall_tau([v[s] for v in both], [v[t] for v in both])
        if not math.isnan(tau):
            taus.append(tau)
    return float(np.mean(taus)) if taus else math.nan


def seed_sd(by_arch: Mapping[str, Mapping[int, float]]) -> float:
    """The mean over architectures with two or more seeds of the standard deviation (ddof 1)
    of their values across seeds; NaN when no architecture has two."""
    sds = [float(np.std(list(v.values()), ddof=1)) for v in by_arch.values() if len(v) > 1]
    return float(np.mean(sds)) if sds else math.nan


def seed_snr(by_arch: Mapping[str, Mapping[int, float]]) -> float:
    """Signal-to-noise ratio of a single score over the architectures with two or more seeds:
    ``max(0, var(means) - mean(s2_a / n_a)) / mean(s2_a)``, with ``s2_a`` the variance (ddof 1)
    of architecture a's ``n_a`` seeds and ``var(means)`` the variance (ddof 1) of their means
    (both unbiased estimates under score = true value + independent seed noise). NaN with fewer
    than 3 such architectures or no seed variance at all."""
    multi = [list(v.values()) for v in by_arch.values() if len(v) > 1]
    if len(multi) < 3:
        return math.nan
    noise = [float(np.var(v, ddof=1)) for v in multi]
    s2 = float(np.mean(noise))
    if s2 <= 0:
        return math.nan
    means = [float(np.mean(v)) for v in multi]
    true_var = float(np.var(means, ddof=1)) - float(np.mean([n / len(v) for n, v in zip(noise, multi)]))
    return max(0.0, true_var) / s2


def corrected_tau(tau: float, r_x: float, r_y: float) -> float:
    """`tau` corrected for attenuation: tau / sqrt(r_x * r_y) clipped to [-1, 1], with `r_x`,
    `r_y` the reliabilities (seed taus) of the two sides (1 for a score that depends on no seed).
    An estimate of the agreement without seed noise, not a measurement. NaN when `tau` or a
    reliability is NaN or a reliability is <= 0."""
    if any(math.isnan(v) for v in (tau, r_x, r_y)) or r_x <= 0 or r_y <= 0:
        return math.nan
    return float(min(1.0, max(-1.0, tau / math.sqrt(r_x * r_y))))


@dataclass(frozen=True)
class Separation:
    """Whether the reference tells the architectures apart, from its own seed noise:
    ``separates`` when its seed tau >= 0.8 and the span of its means (max - min over the
    random architectures) is >= 5 x its seed SD; else ``weakly`` when its seed tau >= 0.5;
    else ``does not separate``; ``unknown`` when its seed tau is undefined (one seed, or fewer
    than 3 architectures trained with two). The span and SD are in the reference's units (an
    accuracy as a fraction in [0, 1]; 0.01 is one accuracy point)."""

    reference_span_points: float
    reference_seed_sd: float
    verdict: str


def separation(reference_means: Sequence[float], reference_seed_tau: float, reference_seed_sd: float) -> Separation:
    """The `Separation` of a reference with these per-architecture means, seed tau and seed SD."""
    span = float(np.ptp(reference_means)) if len(reference_means) else math.nan
    if math.isnan(reference_seed_tau):
        verdict = "unknown"
    elif reference_seed_tau >= SEPARATES_TAU and not math.isnan(span) and not math.isnan(reference_seed_sd) \
            and span >= SEPARATES_SPAN * reference_seed_sd:
        verdict = "separates"
    elif reference_seed_tau >= WEAKLY_TAU:
        verdict = "weakly"
    else:
        verdict = "does not separate"
    return Separation(reference_span_points=span, reference_seed_sd=reference_seed_sd, verdict=verdict)
