"""Replicates in the report: trials of the same network are one architecture (its mean, its
standard error), the noise estimate (pooled replicates, binomial floor), the front and knee on
the means, which front members noise cannot tell apart, and trials.csv keeping every trial.
Studies are synthetic: `optuna.trial.create_trial` + `study.add_trial` in memory."""
from __future__ import annotations

import base64
import json
import math
import re

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from twins_nas.search.replicates import Replicate, estimate_noise, indistinguishable, standard_error, summarize
from twins_nas.search.report.export import (
    architecture_frame,
    export_study,
    pareto_figure,
    study_architectures,
    trials_frame,
)

OBJECTIVES = [["accuracy", "maximize"], ["throughput", "maximize"]]


def config(depth: int, dim: int = 16, name: str = "x", num_classes: int = 10, window: list | None = None,
           pattern: str = "LG") -> dict:
    """A one-stage config; `depth` and `dim` tell networks apart."""
    return {"name": name, "num_classes": num_classes, "in_chans": 1, "stages": [
        {"patch_size": 4, "embed_dim": dim, "depth": depth, "num_heads": 2, "mlp_ratio": 2.0,
         "window": window or [4, 4], "sr_ratio": 2, "subsample": "conv", "pattern": pattern}]}


def make_study(val_samples: int | None = 1000) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="syn", directions=["maximize", "maximize"])
    study.set_user_attr("objectives", OBJECTIVES)
    study.set_user_attr("space_name", "syn")
    proxy = {"val_samples": val_samples} if val_samples else {}
    study.set_user_attr("space", {"proxy": proxy})
    return study


def add(study: optuna.Study, cfg: dict, acc: float | None, thr: float, gmacs: float = 1.0, status: str = "ok",
        constraints: dict | None = None, state: TrialState = TrialState.COMPLETE) -> None:
    metrics = {"params_m": 1.0, "gmacs": gmacs, "throughput": thr}
    if acc is not None:
        metrics["accuracy"] = acc
    values = [acc if acc is not None else 0.0, thr] if state == TrialState.COMPLETE else None
    study.add_trial(optuna.trial.create_trial(
        state=state, values=values, user_attrs={"config": cfg, "status": status, "metrics": metrics},
        constraints=constraints or {"params_m<=5": -0.8}))


def front_of(out) -> list[dict]:
    return [c["meta"] for c in json.loads((out / "pareto.json").read_text())["configs"]]


# ---- one architecture, one entry ----------------------------------------------------------------
def test_a_repeated_config_is_a_replicate_not_a_second_front_entry(tmp_path):
    study = make_study()
    add(study, config(1), 0.70, 100.0)                                   # 0: a0
    # 1: the same network under another name and classifier size
    add(study, config(1, name="y", num_classes=3), 0.74, 110.0)
    add(study, config(2), 0.60, 200.0)                                   # 2: a2
    add(study, config(3), 0.65, 90.0)                                    # 3: a3, dominated
    add(study, config(4), 0.99, 999.0, status="infeasible", constraints={"params_m<=5": 0.5})  # 4
    add(study, config(5), None, 1.0, state=TrialState.FAIL)              # 5: failed, no architecture
    export_study(study, tmp_path, png=False)
    front = front_of(tmp_path)
    assert [m["architecture"] for m in front] == ["a0", "a2"]
    a0 = front[0]
    assert a0["replicates"] == 2 and a0["replicate_trials"] == [0, 1] and a0["trial"] == 0
    assert a0["metrics"]["accuracy"] == pytest.approx(0.72) and a0["metrics"]["throughput"] == pytest.approx(105.0)
    assert a0["accuracy_se"] == pytest.approx(0.02)  # stdev(0.70, 0.74) / sqrt(2) = |0.74 - 0.70| / 2
    df = pd.read_csv(tmp_path / "trials.csv")
    assert df["number"].tolist() == [0, 1, 2, 3, 4, 5]                      # every trial kept
    assert df["architecture"].fillna("").tolist() == ["a0", "a0", "a2", "a3", "a4", ""]
    assert df["replicates"].tolist()[:5] == [2, 2, 1, 1, 1] and pd.isna(df["replicates"][5])
    assert df["accuracy"].tolist()[:2] == [0.70, 0.74]                        # the trial's own value
    assert df["accuracy_mean"].tolist()[:2] == pytest.approx([0.72, 0.72])
    assert df["on_front"].tolist() == [True, True, True, False, False, False]
    best = json.loads((tmp_path / "best_config.json").read_text())["meta"]
    # the knee of a two-point front is the first (a tie); the study's trial counts stay in `trials`
    assert best["trials"]["complete"] == 5 and best["architecture"] == "a0" and best["replicates"] == 2
    assert best["replicate_trials"] == [0, 1] and best["metrics"]["accuracy"] == pytest.approx(0.72)


def test_the_figure_draws_the_front_at_the_means_with_standard_error_bars():
    study = make_study()
    for acc, thr, cfg in ((0.70, 100.0, config(1)), (0.74, 100.0, config(1)), (0.60, 200.0, config(2))):
        add(study, cfg, acc, thr)
    archs, noise = study_architectures(study)
    ids = {a.id for a in archs}
    df = trials_frame(study, archs, ids, "a0", "a0")
    frame = architecture_frame(archs, {t.number: t.user_attrs["config"] for t in study.trials}, ids, "a0", "a0", {})
    fig = pareto_figure(df, dict(OBJECTIVES), {}, [0.0] * 3, "t", archs=frame)
    (front,) = [t for t in fig.data if t.name.startswith("Pareto front")]
    assert list(front.x) == [100.0, 200.0] and list(front.y) == pytest.approx([72.0, 60.0])
    # a0: |0.74 - 0.70| / 2; a2 has one replicate: the binomial floor (2 groups < 3 with replicates)
    p = (0.70 + 0.74 + 0.60) / 3
    assert noise.source == "binomial"
    assert list(front.error_y.array) == pytest.approx([2.0, 100 * math.sqrt(p * (1 - p) / 1000)])
    assert "2 replicates" in front.hovertext[0] and "± 2 (SE)" in front.hovertext[0]


def _values(v) -> list[float]:
    """A trace's array as the HTML holds it: a list, or plotly's typed-array encoding."""
    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return list(v)


def test_the_figure_draws_each_architecture_once_at_its_mean(tmp_path):
    study = make_study()
    for acc, thr, cfg in ((0.70, 100.0, config(1)), (0.74, 100.0, config(1)), (0.66, 100.0, config(1)),
                          (0.60, 200.0, config(2)), (0.50, 50.0, config(3))):
        add(study, cfg, acc, thr)
    export_study(study, tmp_path, png=False)
    fig = json.loads(re.search(r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*(\[.*?\])\s*,\s*\{",
                               (tmp_path / "pareto.html").read_text(), re.S).group(1))
    (dots,) = [t for t in fig if t.get("name", "").startswith("architectures")]
    # three trainings of one network are one dot at their mean; five trials, three architectures
    points = sorted(zip(_values(dots["x"]), _values(dots["y"])))
    assert [p[0] for p in points] == [50.0, 100.0, 200.0]
    assert [p[1] for p in points] == pytest.approx([50.0, 70.0, 60.0])
    assert not [t for t in fig if t.get("name") == "trials"]


# ---- the noise estimate and the standard errors ---------------------------------------------------
def test_pooled_sd_recovers_a_known_noise_and_each_se_is_it_over_sqrt_n(tmp_path):
    rng = np.random.default_rng(7)
    sigma, n_arch = 0.02, 40
    study = make_study()
    draws = {}
    for a in range(n_arch):
        mu, n = rng.uniform(0.5, 0.8), int(rng.integers(2, 7))
        draws[a] = rng.normal(mu, sigma, size=n)
        for acc in draws[a]:
            add(study, config(1 + a % 4, dim=8 * (1 + a // 4)), float(acc), 100.0 + 10 * a)
    archs, noise = study_architectures(study)
    assert noise.source == "replicates" and noise.groups == n_arch
    assert abs(noise.sd - sigma) / sigma < 0.15
    assert len(archs) == n_arch
    for a, arch in zip(range(n_arch), archs):
        x = draws[a]
        assert arch.replicates == len(x)
        assert arch.metrics["accuracy"] == pytest.approx(x.mean())
        assert arch.se["accuracy"] == pytest.approx(noise.sd / math.sqrt(len(x)))  # the pooled SD, not x's own
        assert abs(arch.se["accuracy"] * math.sqrt(len(x)) - sigma) / sigma < 0.15    # near the true sigma / sqrt(n)
    export_study(study, tmp_path, png=False)
    meta = json.loads((tmp_path / "pareto.json").read_text())["meta"]
    assert meta["noise"]["source"] == "replicates" and meta["noise"]["groups"] == n_arch
    assert meta["noise"]["sd"] == pytest.approx(noise.sd, abs=1e-6)
    df = pd.read_csv(tmp_path / "trials.csv")
    assert len(df) == sum(len(x) for x in draws.values())


def test_without_replicates_the_standard_error_is_the_binomial_floor(tmp_path):
    study = make_study(val_samples=500)
    accs = [0.62, 0.70, 0.55]
    for i, acc in enumerate(accs):
        add(study, config(i + 1), acc, 100.0 * (3 - i))
    archs, noise = study_architectures(study)
    p = sum(accs) / 3
    floor = math.sqrt(p * (1 - p) / 500)
    assert noise.source == "binomial" and noise.groups == 0 and noise.sd == pytest.approx(floor)
    assert [a.se["accuracy"] for a in archs] == pytest.approx([floor] * 3)
    export_study(study, tmp_path, png=False)
    meta = json.loads((tmp_path / "pareto.json").read_text())["meta"]
    assert meta["noise"]["source"] == "binomial" and meta["noise"]["sd"] == pytest.approx(floor, abs=1e-6)
    assert all(m["accuracy_se"] == pytest.approx(floor, abs=1e-6) and m["replicates"] == 1
               for m in front_of(tmp_path))
    # no split size recorded: no estimate, and no standard error for a single training
    bare = make_study(val_samples=None)
    add(bare, config(1), 0.6, 1.0)
    archs, noise = study_architectures(bare)
    assert noise.source == "none" and noise.sd is None and archs[0].se["accuracy"] is None


def test_noise_needs_three_architectures_with_replicates_for_the_pooled_sd():
    two = [[0.60, 0.64], [0.70, 0.66], [0.5]]
    assert estimate_noise(two, 100).source == "binomial"
    three = two[:2] + [[0.50, 0.52]]
    got = estimate_noise(three, 100)
    # squared deviations 2 * 0.02**2 + 2 * 0.02**2 + 2 * 0.01**2 over 3 degrees of freedom
    assert got.source == "replicates" and got.groups == 3
    assert got.sd == pytest.approx(math.sqrt((4 * 0.02 ** 2 + 2 * 0.01 ** 2) / 3))


def test_two_lucky_agreeing_seeds_do_not_make_an_architecture_look_precise():
    # three architectures with replicates pool a seed SD of about 0.02; a fourth's two seeds
    # agree to 0.0002 by luck: its SE is the pooled SD / sqrt(2), not its own 0.0001
    groups = [[0.60, 0.64], [0.70, 0.66], [0.50, 0.54], [0.7000, 0.7002]]
    noise = estimate_noise(groups, 1000)
    assert noise.source == "replicates" and noise.groups == 4
    assert standard_error(groups[3], noise.sd, pooled=True) == pytest.approx(noise.sd / math.sqrt(2))
    assert standard_error(groups[3], noise.sd, pooled=True) > 0.01
    # the binomial floor leaves seed noise out: there the architecture's own SD is kept
    assert standard_error(groups[3], 0.015, pooled=False) == pytest.approx(0.0001)
    assert standard_error([0.7], 0.015) == 0.015 and standard_error([], 0.015) is None


# ---- the front and the knee on the means ------------------------------------------------------------
def test_front_knee_and_pick_are_computed_on_the_means(tmp_path):
    study = make_study()
    add(study, config(1), 0.80, 100.0)              # a0: a lucky seed ...
    add(study, config(1), 0.60, 100.0)              # ... and an unlucky one: mean 0.70
    add(study, config(2), 0.75, 100.0)              # a2 dominates a0's mean
    add(study, config(3), 0.65, 200.0)              # a3
    add(study, config(4), 0.55, 290.0, gmacs=2.0)   # a4: mean (0.56, 300)
    add(study, config(4), 0.57, 310.0, gmacs=2.5)
    export_study(study, tmp_path, png=False)
    front = front_of(tmp_path)
    # front on the means: a2 (0.75, 100), a3 (0.65, 200), a4 (0.56, 300); a0 (0.70, 100) is dominated.
    # knee: scaled to the front (accuracy over 0.56..0.75, throughput over 100..300), distance to
    # (1, 1): a2 1, a3 sqrt((1 - 0.09/0.19)**2 + 0.5**2) = 0.726, a4 1 -> a3
    assert [m["architecture"] for m in front] == ["a2", "a3", "a4"]
    assert [m["knee"] for m in front] == [False, True, False]
    a4 = front[2]
    assert a4["metrics"]["accuracy"] == pytest.approx(0.56) and a4["metrics"]["throughput"] == pytest.approx(300.0)
    assert a4["metrics"]["gmacs"] == 2.0 and a4["replicate_trials"] == [4, 5]   # closed form: the first's
    meta = json.loads((tmp_path / "pareto.json").read_text())["meta"]
    assert meta["knee_architecture"] == "a3" and meta["knee_trial"] == 3 and meta["count"] == 3
    # best accuracy on the means is a2 (0.75), not a0's lucky 0.80
    res = export_study(study, tmp_path / "max", pick="max accuracy", png=False)
    assert res.best is not None and res.best.architecture == "a2" and res.best.trial == 2
    assert res.best.metrics["accuracy"] == pytest.approx(0.75)


# ---- indistinguishable front members -----------------------------------------------------------
def test_indistinguishable_members_are_within_two_se_and_not_ahead_elsewhere():
    obj = {"accuracy": "maximize", "throughput": "maximize"}
    rows = [{"accuracy": 0.69, "throughput": 150.0}, {"accuracy": 0.70, "throughput": 100.0},
            {"accuracy": 0.60, "throughput": 200.0}]
    # 0.70 vs 0.69: 0.01 <= 2 * sqrt(2) * 0.01; row 1 is slower, so its lead is noise; row 0 is
    # ahead on throughput. 0.69 vs 0.60: 0.09 > 2 * sqrt(2) * 0.01.
    assert indistinguishable(rows, [0.01, 0.01, 0.01], obj) == [[], [0], []]
    # larger errors: 0.69 vs 0.60 within 2 * sqrt(2) * 0.04 = 0.113 too, and row 0 is slower than row 2
    assert indistinguishable(rows, [0.04, 0.04, 0.04], obj) == [[2], [0], []]
    # just outside: 0.01 > 2 * sqrt(0.003**2 + 0.003**2) = 0.0085
    assert indistinguishable(rows, [0.003, 0.003, 0.003], obj) == [[], [], []]
    assert indistinguishable(rows, [None, 0.01, 0.01], obj) == [[], [], []]
    assert indistinguishable(rows, [0.01] * 3, {"throughput": "maximize", "params_m": "minimize"}) == [[]] * 3
    # three objectives: ahead on one of two others is not ahead on every other
    obj3 = dict(obj, params_m="minimize")
    rows3 = [dict(r, params_m=p) for r, p in zip(rows, (5.0, 4.0, 3.0))]
    assert indistinguishable(rows3, [0.01] * 3, obj3) == [[1], [0], []]


def test_the_report_names_indistinguishable_neighbours(tmp_path):
    study = make_study()
    add(study, config(1), 0.700, 100.0)
    add(study, config(2), 0.695, 150.0)
    add(study, config(3), 0.500, 300.0)
    export_study(study, tmp_path, png=False)
    front = {m["architecture"]: m["indistinguishable_from"] for m in front_of(tmp_path)}
    # binomial floor ~0.0152 per member: 0.005 apart is within noise, 0.195 is not
    assert front == {"a0": ["a1"], "a1": [], "a2": []}


def test_an_architecture_promoted_once_takes_its_accuracy_from_the_highest_rung():
    promoted = Replicate(0, "k", {"accuracy": 0.70, "accuracy_rung0": 0.60, "accuracy_rung1": 0.70, "rung": 1},
                         {}, True)
    plain = Replicate(1, "k", {"accuracy": 0.62, "accuracy_rung0": 0.62, "rung": 0}, {}, True)
    a = summarize([promoted, plain], noise_sd=0.01)
    # rung 1: one training (the noise SD); rung 0: two, |0.62 - 0.60| / 2
    assert a.metrics["rung"] == 1 and a.metrics["accuracy"] == pytest.approx(0.70)
    assert a.se["accuracy"] == pytest.approx(0.01) and a.se["accuracy_rung1"] == pytest.approx(0.01)
    assert a.metrics["accuracy_rung0"] == pytest.approx(0.61) and a.se["accuracy_rung0"] == pytest.approx(0.01)
    # a replicate breaking a constraint on its own: feasible when the mean satisfies it
    scored = Replicate(1, "k", {}, {"c": -0.3}, True)
    assert summarize([Replicate(0, "k", {}, {"c": 0.2}, False), scored], None).feasible
    assert not summarize([Replicate(0, "k", {}, {"c": 0.4}, False), scored], None).feasible


@pytest.mark.parametrize("objectives", [[["accuracy", "maximize"]], OBJECTIVES])
def test_a_study_without_a_feasible_architecture_still_exports(tmp_path, objectives):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="syn", directions=[d for _, d in objectives])
    study.set_user_attr("objectives", objectives)
    study.set_user_attr("space_name", "syn")
    study.set_user_attr("space", {"proxy": {"val_samples": 1000}})
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.COMPLETE, values=[0.0] * len(objectives), constraints={"params_m<=5": 4.0},
        user_attrs={"config": config(1), "status": "infeasible",
                    "metrics": {"params_m": 9.0, "gmacs": 1.0, "throughput": 5.0}}))
    result = export_study(study, tmp_path, png=False)
    assert "no finished feasible trial yet" in result.notes[0]
    assert (tmp_path / "pareto.html").is_file() and not (tmp_path / "pareto.json").exists()
