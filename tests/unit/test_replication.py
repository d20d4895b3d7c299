"""Replicates near the front: which architectures `near_front` keeps (against the definition
computed pair by pair), the order and limits of `next_replicate`, seeds that never collide with
a trial's, and a study's replicate trainings counted as replicates of their architecture."""
from __future__ import annotations

import math
import os
import socket
import statistics
import subprocess
import sys

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twins_nas.search.evaluate.objective import trial_seed
from twins_nas.search.replicates import Architecture, near_front
from twins_nas.search.run.replication import PREFIX, next_replicate, replicate_seed, study_architectures

OBJ = {"accuracy": "maximize", "throughput": "maximize"}


def arch(number: int, acc: float, thr: float, se: float | None, trials: int = 1) -> Architecture:
    return Architecture(trials=tuple(range(number, number + trials)), metrics={"accuracy": acc, "throughput": thr},
                        se={"accuracy": se}, feasible=True)


def test_near_front_by_hand():
    rows = [{"accuracy": 0.80, "throughput": 100}, {"accuracy": 0.70, "throughput": 200},  # the front
            {"accuracy": 0.78, "throughput": 90},   # 0.02 behind row 0 = 1.41 combined SE of 0.01: near
            {"accuracy": 0.60, "throughput": 150},  # 0.10 behind row 1: far
            {"accuracy": 0.77, "throughput": 50}]   # 0.03 behind row 0 and 0.01 behind row 2: 2.12 SE: far at z=2
    se = [0.01] * 5
    near = near_front(rows, se, OBJ, z=2.0)
    assert [i for i, _ in near] == [0, 1, 2]
    assert near[2][1] == pytest.approx(0.02 / math.sqrt(2 * 0.01 ** 2))
    assert [i for i, _ in near_front(rows, se, OBJ, z=2.2)] == [0, 1, 2, 4]
    assert near_front(rows, se, {"throughput": "maximize", "gmacs": "minimize"}) == []  # accuracy not an objective


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20), st.sampled_from([0.5, 1.0, 2.0, None])),
                min_size=1, max_size=12), st.sampled_from([1.0, 2.0, 3.0]))
def test_near_front_is_the_definition(points, z):
    rows = [{"accuracy": float(a), "throughput": float(t)} for a, t, _ in points]
    se = [s for _, _, s in points]

    def dominated_by(d, a):
        return (rows[d]["accuracy"] >= rows[a]["accuracy"] and rows[d]["throughput"] >= rows[a]["throughput"]
                and (rows[d]["accuracy"], rows[d]["throughput"]) != (rows[a]["accuracy"], rows[a]["throughput"]))

    expected = set()
    for a in range(len(rows)):
        doms = [d for d in range(len(rows)) if dominated_by(d, a)]
        if not doms:
            expected.add(a)
        elif se[a] is not None and all(rows[d]["accuracy"] - rows[a]["accuracy"]
                                       <= z * math.sqrt(se[a] ** 2 + (se[d] or 0.0) ** 2) for d in doms):
            expected.add(a)
    got = near_front(rows, se, OBJ, z=z)
    assert {i for i, _ in got} == expected
    assert [g for _, g in got] == sorted(g for _, g in got)


def test_next_replicate_front_first_then_closest_and_the_budget():
    archs = [arch(0, 0.80, 100, 0.01), arch(1, 0.70, 200, 0.01), arch(2, 0.785, 90, 0.01), arch(3, 0.50, 50, 0.01)]
    assert next_replicate(archs, {}, OBJ, count=3, z=2.0, limit=10) == (0, 1, 0)
    # trial 0 has a replicate: trial 1 (front, fewer) comes next
    records = {0: {"results": {"1": {"accuracy": 0.8, "seconds": 1.0}}}}
    archs[0] = Architecture(trials=(0,), metrics=archs[0].metrics, se=archs[0].se, feasible=True, extra=1)
    assert next_replicate(archs, records, OBJ, count=3, z=2.0, limit=10) == (1, 1, 0)
    # the front full at 3: the near architecture 2, never the far one 3
    full = {0: {"results": {"1": {}, "2": {}}}, 1: {"results": {"1": {}, "2": {}}}}
    assert next_replicate(archs, full, OBJ, count=3, z=2.0, limit=10) == (2, 1, 0)
    assert next_replicate(archs, full, OBJ, count=3, z=2.0, limit=4) is None      # 4 trainings done: the limit
    assert next_replicate(archs, {}, OBJ, count=1, z=2.0, limit=10) is None        # count 1: off


def test_next_replicate_counts_live_claims_not_dead_ones():
    archs = [arch(0, 0.80, 100, 0.01)]
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    dead_pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                  capture_output=True, text=True).stdout)
    dead = {"host": socket.gethostname(), "pid": dead_pid, "pid_start": "1"}
    live = {0: {"results": {}, "claims": {"1": {"owner": me}}}}
    assert next_replicate(archs, live, OBJ, count=3, z=2.0, limit=10) == (0, 2, 0)
    assert next_replicate(archs, live, OBJ, count=2, z=2.0, limit=10) is None
    gone = {0: {"results": {}, "claims": {"1": {"owner": dead}}}}
    assert next_replicate(archs, gone, OBJ, count=2, z=2.0, limit=10) == (0, 1, 0)   # taken over


def test_replicate_seeds_never_collide_with_trial_seeds():
    trial = {trial_seed(7, n) for n in range(2000)}
    reps = {replicate_seed(7, n, i) for n in range(2000) for i in range(1, 5)}
    assert len(reps) == 2000 * 4 and not trial & reps


def _cfg(depth: int) -> dict:
    return {"schema_version": 1, "stages": [{"patch_size": 4, "embed_dim": 32, "depth": depth, "num_heads": 2,
                                              "mlp_ratio": 2.0, "window": [2, 2], "sr_ratio": 1,
                                              "subsample": "conv", "pattern": "LG"}],
            "num_classes": 10, "in_chans": 3}


def test_study_counts_replicate_trainings_as_replicates():
    study = optuna.create_study(directions=["maximize", "maximize"])
    for n, (depth, acc) in enumerate([(1, 0.60), (2, 0.70), (1, 0.64)]):  # trials 0 and 2: one network
        t = study.ask()
        t.set_user_attr("config", _cfg(depth))
        t.set_user_attr("status", "ok")
        t.set_user_attr("metrics", {"accuracy": acc, "throughput": 100.0 + n, "params_m": 1.0})
        study.tell(t, [acc, 100.0 + n])
    study.set_user_attr(f"{PREFIX}0", {"results": {"1": {"accuracy": 0.68, "seed": 1, "rung": 0, "seconds": 2.0},
                                                   "2": {"accuracy": None, "error": "diverged", "seconds": 1.0}}})
    study.set_user_attr(f"{PREFIX}1", {"results": {"1": {"accuracy": 0.72, "seed": 2, "rung": 0, "seconds": 2.0}}})
    archs, noise = study_architectures(study)
    by_id = {a.id: a for a in archs}
    assert set(by_id) == {"a0", "a1"}
    a0, a1 = by_id["a0"], by_id["a1"]
    assert a0.trials == (0, 2) and a0.replicates == 3 and a0.extra == 1
    assert a0.metrics["accuracy"] == pytest.approx(statistics.fmean([0.60, 0.64, 0.68]))
    assert a0.se["accuracy"] == pytest.approx(statistics.stdev([0.60, 0.64, 0.68]) / math.sqrt(3))
    assert a0.metrics["throughput"] == pytest.approx(101.0)  # measured metrics: over the trials only
    assert a1.replicates == 2 and a1.metrics["accuracy"] == pytest.approx(0.71)
