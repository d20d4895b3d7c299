"""The seed-noise arithmetic of the fidelity report against Kendall tau counted by hand and
scipy.stats.kendalltau: tau between two seeds, the mean over seed pairs with more than two
seeds, the mean SD across seeds, the correction for attenuation and the separation rule."""
from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from scipy import stats

from twins_nas.search.fidelity.reliability import (
    corrected_tau,
    kendall_tau,
    seed_sd,
    seed_snr,
    seed_tau,
    separation,
)

# four architectures, three seeds; seed 1 swaps b and c of seed 0, seed 2 reverses seed 0
SEED0 = {"a": 0.50, "b": 0.60, "c": 0.70, "d": 0.80}
SEED1 = {"a": 0.52, "b": 0.71, "c": 0.61, "d": 0.83}
SEED2 = {"a": 0.90, "b": 0.85, "c": 0.55, "d": 0.40}


def by_arch(*seeds: dict[str, float]) -> dict[str, dict[int, float]]:
    return {a: {s: v[a] for s, v in enumerate(seeds)} for a in seeds[0]}


def scipy_tau(u: dict[str, float], v: dict[str, float]) -> float:
    keys = sorted(u.keys() & v.keys())
    return float(stats.kendalltau([u[k] for k in keys], [v[k] for k in keys]).statistic)


def test_kendall_tau_matches_a_count_by_hand_and_scipy():
    # 6 pairs; seed 1 orders (b, c) the other way: 5 concordant, 1 discordant -> (5 - 1) / 6
    assert kendall_tau(list(SEED0.values()), list(SEED1.values())) == pytest.approx(4 / 6)
    assert kendall_tau(list(SEED0.values()), list(SEED1.values())) == pytest.approx(scipy_tau(SEED0, SEED1))
    assert math.isnan(kendall_tau([1.0, 2.0], [1.0, 2.0]))              # fewer than 3 values
    assert math.isnan(kendall_tau([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))    # one side constant


def test_seed_tau_of_two_seeds_is_their_kendall_tau():
    assert seed_tau(by_arch(SEED0, SEED1)) == pytest.approx(4 / 6)
    assert seed_tau(by_arch(SEED0, SEED1)) == pytest.approx(scipy_tau(SEED0, SEED1))


def test_seed_tau_of_three_seeds_is_the_mean_over_the_three_pairs():
    # by hand: (0, 1) 4/6; (0, 2) a full reversal -1; (1, 2): seed 2 orders d < c < b < a, seed 1
    # a < c < b < d: pairs (a,b) (a,c) (a,d) (b,d) (c,d) discordant, (b,c) concordant -> -4/6
    want = (4 / 6 - 1 - 4 / 6) / 3
    got = seed_tau(by_arch(SEED0, SEED1, SEED2))
    assert got == pytest.approx(want)
    assert got == pytest.approx(statistics.mean([scipy_tau(SEED0, SEED1), scipy_tau(SEED0, SEED2),
                                                 scipy_tau(SEED1, SEED2)]))
    assert got != pytest.approx(scipy_tau(SEED0, SEED1))                 # not the first two seeds only


def test_seed_tau_pairs_use_the_archs_that_have_both_seeds_and_skip_undefined_pairs():
    data = by_arch(SEED0, SEED1, SEED2)
    data["e"] = {0: 0.95, 1: 0.99}            # no seed 2: in pair (0, 1) only
    want01 = scipy_tau(dict(SEED0, e=0.95), dict(SEED1, e=0.99))
    assert want01 == pytest.approx(8 / 10)     # 10 pairs, only (b, c) discordant
    assert seed_tau(data) == pytest.approx((want01 + scipy_tau(SEED0, SEED2) + scipy_tau(SEED1, SEED2)) / 3)
    # pair (0, 2) over two archs only is undefined: the mean is over the other pairs
    few = {"a": {0: 0.1, 1: 0.2, 2: 0.3}, "b": {0: 0.2, 1: 0.1, 2: 0.1}, "c": {0: 0.3, 1: 0.3}}
    assert seed_tau(few) == pytest.approx(1 / 3)  # (0, 1): a<b<c vs b<a<c -> (2 - 1) / 3; (1, 2), (0, 2): 2 archs
    assert math.isnan(seed_tau({"a": {0: 0.5}, "b": {0: 0.6}, "c": {0: 0.7}}))   # one seed


def test_seed_sd_is_the_mean_over_archs_of_the_sd_across_seeds():
    data = {"a": {0: 0.80, 1: 0.82}, "b": {0: 0.60, 1: 0.66, 2: 0.63}, "c": {0: 0.70}}
    # a: |0.82 - 0.80| / sqrt(2); b: deviations -0.03, 0.03, 0 -> sqrt(0.0018 / 2) = 0.03; c: one seed
    want = (0.02 / math.sqrt(2) + 0.03) / 2
    assert seed_sd(data) == pytest.approx(want)
    assert math.isnan(seed_sd({"c": {0: 0.70}}))


def test_seed_snr_by_hand():
    # a: 0.60, 0.62 (var 0.0002); b: 0.70, 0.70 (0); c: 0.80, 0.84 (0.0008); d: one seed (left out)
    data = {"a": {0: 0.60, 1: 0.62}, "b": {0: 0.70, 1: 0.70}, "c": {0: 0.80, 1: 0.84}, "d": {0: 0.5}}
    noise = (0.0002 + 0.0 + 0.0008) / 3
    means = [0.61, 0.70, 0.82]
    between = statistics.variance(means) - noise / 2       # each mean holds half a seed variance
    assert seed_snr(data) == pytest.approx(between / noise)
    # means closer than their noise explains: no separation, not a negative one
    assert seed_snr({"a": {0: 0.5, 1: 0.7}, "b": {0: 0.6, 1: 0.6}, "c": {0: 0.7, 1: 0.5}}) == 0.0
    assert math.isnan(seed_snr({"a": {0: 0.5, 1: 0.6}, "b": {0: 0.6, 1: 0.7}}))          # 2 architectures
    assert math.isnan(seed_snr({a: {0: 0.5, 1: 0.5} for a in "abc"}))                    # no seed noise


def test_seed_snr_recovers_a_known_ratio():
    rng = np.random.default_rng(3)
    true_sd, noise_sd, archs = 0.02, 0.01, 4000          # SNR 4
    data = {}
    for a in range(archs):
        mu = rng.normal(0.7, true_sd)
        n = int(rng.integers(2, 5))
        data[str(a)] = dict(enumerate(rng.normal(mu, noise_sd, size=n)))
    assert seed_snr(data) == pytest.approx(4.0, rel=0.1)


def test_corrected_tau_divides_by_the_root_of_both_reliabilities_and_clips():
    assert corrected_tau(0.4, 1.0, 0.64) == pytest.approx(0.5)          # 0.4 / 0.8
    assert corrected_tau(0.3, 0.5, 0.72) == pytest.approx(0.5)          # 0.3 / sqrt(0.36)
    assert corrected_tau(0.6, 0.5, 0.5) == 1.0                          # 1.2 clipped
    assert corrected_tau(-0.6, 0.5, 0.5) == -1.0
    for r_x, r_y in ((0.0, 0.8), (0.8, -0.1), (math.nan, 0.8), (1.0, math.nan)):
        assert math.isnan(corrected_tau(0.4, r_x, r_y)), (r_x, r_y)
    assert math.isnan(corrected_tau(math.nan, 1.0, 1.0))


@pytest.mark.parametrize(("tau", "means", "sd", "verdict"), [
    (0.9, [0.50, 0.55], 0.01, "separates"),           # span 0.05 = 5 SDs
    (0.9, [0.50, 0.549], 0.01, "weakly"),             # span 4.9 SDs
    (0.8, [0.1, 0.9, 0.5], 0.01, "separates"),
    (0.79, [0.1, 0.9], 0.01, "weakly"),
    (0.5, [0.1, 0.9], 0.01, "weakly"),
    (0.49, [0.1, 0.9], 0.01, "does not separate"),
    (-0.2, [0.1, 0.9], 0.01, "does not separate"),
    (math.nan, [0.1, 0.9], 0.01, "unknown"),
])
def test_separation_rule(tau, means, sd, verdict):
    sep = separation(means, tau, sd)
    assert sep.verdict == verdict
    assert sep.reference_span_points == pytest.approx(max(means) - min(means))
    assert sep.reference_seed_sd == sd
