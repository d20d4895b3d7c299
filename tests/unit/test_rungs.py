"""Successive halving on the front: non-dominated ranks and crowding distance against brute
force, promotion order on a synthetic study, the report's highest-rung accuracy."""
from __future__ import annotations

import math

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twins_nas.search.evaluate.status import TrialStatus
from twins_nas.search.pareto import crowding_distances, nondominated_ranks, promotion_order
from twins_nas.search.proxy.settings import ProxySettings
from twins_nas.search.run.rungs import effective_metrics, rung_settings, select_promotions

OBJ = {"accuracy": "maximize", "throughput": "maximize"}


def dominates(a, b) -> bool:
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def brute_ranks(points: list[tuple]) -> list[int]:
    """Front number by definition: peel the non-dominated set off, again and again."""
    left, ranks, r = set(range(len(points))), [None] * len(points), 0
    while left:
        front = {i for i in left if not any(dominates(points[j], points[i]) for j in left if j != i)}
        for i in front:
            ranks[i] = r
        left -= front
        r += 1
    return ranks


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=12))
def test_nondominated_ranks_are_the_peeled_fronts(points):
    rows = [{"accuracy": a, "throughput": t} for a, t in points]
    assert nondominated_ranks(rows, OBJ).tolist() == brute_ranks(points)


def test_crowding_distance_by_hand():
    # one front of 4 points: accuracy 1, 2, 4, 8 (range 7) and throughput 8, 4, 2, 1 (range 7)
    rows = [{"accuracy": a, "throughput": t} for a, t in ((1, 8), (2, 4), (4, 2), (8, 1))]
    d = crowding_distances(rows, OBJ)
    assert math.isinf(d[0]) and math.isinf(d[3])
    assert d[1] == pytest.approx((4 - 1) / 7 + (8 - 2) / 7)
    assert d[2] == pytest.approx((8 - 2) / 7 + (4 - 1) / 7)
    # the order: front 0 first (ends, then the most isolated), then front 1
    rows.append({"accuracy": 1.5, "throughput": 3})          # dominated by (2, 4): front 1
    assert promotion_order(rows, OBJ)[-1] == 4
    assert set(promotion_order(rows, OBJ)[:2]) == {0, 3}


def _trial(number: int, acc: float, thr: float, status: str = TrialStatus.OK) -> optuna.trial.FrozenTrial:
    return optuna.trial.FrozenTrial(
        number=number, state=optuna.trial.TrialState.COMPLETE, value=None, values=[acc, thr],
        datetime_start=None, datetime_complete=None, params={}, distributions={},
        user_attrs={"status": status, "metrics": {"accuracy": acc, "throughput": thr}},
        system_attrs={}, intermediate_values={}, trial_id=number)


def test_promotion_picks_the_best_third_by_front_then_crowding():
    # 9 feasible trials + 1 infeasible; eta 3 -> 3 promoted to rung 1
    pts = [(0.50, 10), (0.60, 8), (0.70, 6), (0.80, 4), (0.55, 7), (0.65, 5), (0.40, 3), (0.45, 2), (0.30, 1)]
    trials = [_trial(i, a, t) for i, (a, t) in enumerate(pts)] + [_trial(9, 0.99, 99, TrialStatus.INFEASIBLE)]
    got = select_promotions(trials, {}, OBJ, rungs=2, eta=3)
    # front 0 = trials 0, 1, 2, 3 (a staircase); the ends 0 and 3 are infinitely crowded, then the
    # larger crowding distance of 1 and 2: (0.70-0.50)/0.5 + (10-6)/9 for 1 vs (0.80-0.60)/0.5 + (8-4)/9 for 2
    assert [n for n, _ in got][:2] in ([0, 3], [3, 0]) and len(got) == 3 and all(r == 1 for _, r in got)
    assert got[2][0] in (1, 2)
    # already promoted / claimed trials are not picked again; rung 2 uses the rung-1 accuracies
    records = {n: {"results": {"1": {"accuracy": acc}}} for n, acc in ((0, 0.9), (3, 0.1), (got[2][0], 0.5))}
    again = select_promotions(trials, records, OBJ, rungs=3, eta=3)
    assert again == [(0, 2)]                      # 3 at rung 1 -> one to rung 2: the best at rung 1
    records[5] = {"results": {}, "claim": {"rung": 1}}
    assert all(n != 5 for n, _ in select_promotions(trials, records, OBJ, rungs=2, eta=3))


def test_effective_metrics_take_the_highest_rung_and_say_which():
    t = _trial(0, 0.5, 10)
    assert effective_metrics(t, None)["accuracy"] == 0.5 and effective_metrics(t, None)["rung"] == 0
    m = effective_metrics(t, {"results": {"1": {"accuracy": 0.6}, "2": {"accuracy": 0.7}}})
    assert (m["accuracy"], m["rung"], m["accuracy_rung0"], m["accuracy_rung1"]) == (0.7, 2, 0.5, 0.6)
    failed = effective_metrics(t, {"results": {"1": {"accuracy": None, "error": "diverged"}}})
    assert (failed["accuracy"], failed["rung"]) == (0.5, 0)


def test_rung_settings_scale_the_images_by_eta():
    p = ProxySettings(train_samples=300)
    assert [rung_settings(p, 3, r).train_samples for r in range(3)] == [300, 900, 2700]
    assert rung_settings(p, 3, 2).epochs == p.epochs
