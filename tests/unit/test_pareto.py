"""Pareto front, knee, --pick rules, hypervolume, and the constraint arithmetic of a trial."""
from __future__ import annotations

import math

import numpy as np
import pytest

from twins_nas.config import ConfigError
from twins_nas.search.evaluate.objective import constraint_keys, constraint_values, trial_seed
from twins_nas.search.pareto import NoMatch, hypervolume_history, knee_index, pareto_mask, parse_pick, select
from twins_nas.search.space.space import Bound

MAXMAX = {"accuracy": "maximize", "throughput": "maximize"}
ROWS = [dict(accuracy=a, throughput=t, params_m=p) for a, t, p in
        [(0.90, 100, 30), (0.80, 300, 20), (0.70, 500, 10), (0.60, 400, 12), (0.85, 250, 25), (0.80, 300, 21)]]


def test_pareto_mask_maximise_both_keeps_ties():
    assert pareto_mask(ROWS, MAXMAX).tolist() == [True, True, True, False, True, True]


def test_pareto_mask_mixed_directions_and_empty():
    obj = {"accuracy": "maximize", "params_m": "minimize"}
    # (0.8, 20) dominates (0.8, 21); (0.6, 12) is dominated by (0.7, 10)
    assert pareto_mask(ROWS, obj).tolist() == [True, True, True, False, True, False]
    assert pareto_mask([], obj).tolist() == []


def test_knee_is_the_balanced_point():
    rows = [dict(accuracy=a, throughput=t) for a, t in [(0.9, 100), (0.89, 400), (0.7, 500), (0.5, 510)]]
    assert knee_index(rows, MAXMAX) == 1
    assert knee_index(rows[:1], MAXMAX) == 0
    assert knee_index([dict(accuracy=0.3)], {"accuracy": "maximize"}) == 0
    one = [dict(accuracy=a) for a in (0.3, 0.9, 0.5)]
    assert knee_index(one, {"accuracy": "maximize"}) == 1
    with pytest.raises(ValueError):
        knee_index([], MAXMAX)


@pytest.mark.parametrize("text,kind,metric,conds", [
    ("knee", "knee", None, []),
    ("  KNEE ", "knee", None, []),
    ("max accuracy where throughput>=500", "max", "accuracy", [("throughput", ">=", 500.0)]),
    ("best accuracy where throughput >= 5e2 and params_m<20", "best", "accuracy",
     [("throughput", ">=", 500.0), ("params_m", "<", 20.0)]),
    ("min latency_ms where accuracy>=0.8, gmacs<=3", "min", "latency_ms",
     [("accuracy", ">=", 0.8), ("gmacs", "<=", 3.0)]),
    ("knee where accuracy>0.5", "knee", None, [("accuracy", ">", 0.5)]),
])
def test_parse_pick_valid(text, kind, metric, conds):
    r = parse_pick(text)
    assert (r.kind, r.metric) == (kind, metric)
    assert [(c.metric, c.op, c.value) for c in r.conditions] == conds


def test_parse_pick_takes_the_legacy_metric_name_with_a_warning():
    with pytest.warns(DeprecationWarning, match="'gflops' is now called 'gmacs'"):
        r = parse_pick("min gflops where gflops<=3")
    assert r.metric == "gmacs" and [c.metric for c in r.conditions] == ["gmacs"]


@pytest.mark.parametrize("text,needle", [
    ("", "empty"),
    ("foo", "unknown rule 'foo'"),
    ("max acc", "unknown metric 'acc'"),
    ("max accuracy where speed>3", "unknown metric 'speed'"),
    ("max accuracy throughput>=500", "after 'where'"),
    ("max accuracy where", "needs a condition"),
    ("max accuracy where throughput>>5", "cannot read condition"),
    ("knee accuracy", "takes no metric"),
    ("max", "expected 'max METRIC'"),
])
def test_parse_pick_errors_are_one_line(text, needle):
    with pytest.raises(ConfigError) as e:
        parse_pick(text)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_select_rules():
    assert select(parse_pick("max accuracy"), ROWS, MAXMAX) == 0
    assert select(parse_pick("max accuracy where throughput>=300"), ROWS, MAXMAX) == 1
    assert select(parse_pick("max throughput where accuracy>=0.8"), ROWS, MAXMAX) in (1, 5)
    assert select(parse_pick("best params_m"), ROWS, MAXMAX) == 2  # natural direction: minimise
    assert select(parse_pick("knee"), ROWS, MAXMAX) == knee_index(ROWS, MAXMAX)
    k = select(parse_pick("knee where throughput>=300"), ROWS, MAXMAX)
    assert ROWS[k]["throughput"] >= 300
    with pytest.raises(NoMatch, match="throughput ranges 100..500"):
        select(parse_pick("max accuracy where throughput>=3000"), ROWS, MAXMAX)
    with pytest.raises(ConfigError, match="peak_mem_mb was not measured"):
        select(parse_pick("max accuracy where peak_mem_mb<=100"), ROWS, MAXMAX)


def test_hypervolume_history_rises_and_has_the_known_value():
    pts = [dict(accuracy=0.9, throughput=100), None, dict(accuracy=0.8, throughput=300),
           dict(accuracy=0.6, throughput=200), dict(accuracy=0.7, throughput=500)]
    hv = hypervolume_history(pts, MAXMAX)
    assert len(hv) == 5 and all(b >= a for a, b in zip(hv, hv[1:]))
    # scaled over all points: accuracy 0.9 -> 0, 0.6 -> 1; throughput 500 -> 0, 100 -> 1; reference 1.1
    assert hv[0] == pytest.approx(1.1 * 0.1)
    assert hv[3] == hv[2]  # a dominated point adds nothing
    # front (scaled losses): (0, 1), (1/3, 0.5), (2/3, 0) -> three rectangles up to the reference
    rect = (1.1 - 0.0) * (1.1 - 1.0) + (1.1 - 1 / 3) * (1.0 - 0.5) + (1.1 - 2 / 3) * (0.5 - 0.0)
    assert hv[-1] == pytest.approx(rect)
    assert hypervolume_history([None, None], MAXMAX) == [0.0, 0.0]


def test_constraint_values_relative_violation():
    cons = {"params_m": Bound(max=30), "throughput": Bound(min=200, max=1000)}
    assert constraint_keys(cons) == ["params_m<=30", "throughput>=200", "throughput<=1000"]
    v = constraint_values({"params_m": 33.0, "throughput": 150.0}, cons)
    assert v["params_m<=30"] == pytest.approx(0.1)
    assert v["throughput>=200"] == pytest.approx(0.25)
    assert v["throughput<=1000"] < 0
    # a bound on a metric that was not measured (the trial stopped before timing) is not violated
    assert constraint_values({"params_m": 10.0}, cons) == {"params_m<=30": pytest.approx(-2 / 3),
                                                           "throughput>=200": 0.0, "throughput<=1000": 0.0}
    assert all(not math.isnan(x) for x in v.values())


def test_constraint_keys_keep_the_name_a_study_recorded():
    cons = {"gmacs": Bound(max=4), "params_m": Bound(max=30)}
    assert constraint_keys(cons) == ["gmacs<=4", "params_m<=30"]
    names = {"gmacs": "gflops"}  # a study made before the rename
    assert constraint_keys(cons, names) == ["gflops<=4", "params_m<=30"]
    assert list(constraint_values({"gmacs": 5.0, "params_m": 3.0}, cons, names)) == ["gflops<=4", "params_m<=30"]


def test_trial_seed_is_deterministic_and_differs():
    assert trial_seed(0, 3) == trial_seed(0, 3)
    assert len({trial_seed(s, n) for s in range(3) for n in range(50)}) == 150
    assert all(0 <= trial_seed(s, n) < 2 ** 31 for s in (0, 2 ** 40) for n in (0, 10 ** 6))
    assert np.isscalar(trial_seed(1, 1))
