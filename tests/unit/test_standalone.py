"""Stand-alone trainings after a search with inherited accuracies: which architectures are
trained (the top of the inherited front, by non-dominated rank), in what order and how many
seeds, and the architectures the report ranks: their stand-alone means and standard errors
against hand-computed values."""
from __future__ import annotations

import math
import statistics

import optuna
import pytest

from twins_nas.search.replicates import Architecture
from twins_nas.search.run.replication import study_architectures
from twins_nas.search.run.standalone import PREFIX, StandaloneTrainer, standalone_architectures, top_architectures

OBJ = {"accuracy": "maximize", "throughput": "maximize"}


def arch(number: int, acc: float, thr: float) -> Architecture:
    return Architecture(trials=(number,), metrics={"accuracy": acc, "throughput": thr}, se={"accuracy": None},
                        feasible=True)


def test_top_architectures_front_first_then_the_next_front():
    archs = [arch(0, 0.60, 50), arch(1, 0.80, 100), arch(2, 0.70, 200), arch(3, 0.75, 90),  # front: 1, 2
             arch(4, 0.55, 10), arch(5, 0.90, 20)]                                        # front too: 5
    infeasible = Architecture(trials=(6,), metrics={"accuracy": 0.99, "throughput": 999}, se={}, feasible=False)
    top = [a.first for a in top_architectures([*archs, infeasible], OBJ, 4)]
    assert set(top[:3]) == {1, 2, 5} and top[3] == 3   # 3 is on the second front (dominated by 1 only)
    assert top_architectures(archs, OBJ, 0) == []


def _cfg(depth: int) -> dict:
    return {"schema_version": 1, "stages": [{"patch_size": 4, "embed_dim": 32, "depth": depth, "num_heads": 2,
                                              "mlp_ratio": 2.0, "window": [2, 2], "sr_ratio": 1,
                                              "subsample": "conv", "pattern": "LG"}],
            "num_classes": 10, "in_chans": 3}


@pytest.fixture
def study() -> optuna.Study:
    """Three inherited trials (depths 1, 2, 3; accuracy falls as throughput rises: all on the front)."""
    s = optuna.create_study(directions=["maximize", "maximize"])
    s.set_user_attr("space", {"proxy": {"val_samples": 1000}})
    for depth, acc, thr in [(1, 0.50, 300.0), (2, 0.60, 200.0), (3, 0.70, 100.0)]:
        t = s.ask()
        t.set_user_attr("config", _cfg(depth))
        t.set_user_attr("status", "ok")
        t.set_user_attr("metrics", {"accuracy": acc, "throughput": thr, "params_m": 1.0})
        s.tell(t, [acc, thr])
    return s


def test_trainer_schedules_seeds_of_the_top_in_order(study, tmp_path):
    class Space:  # what the trainer reads of a space
        objectives = OBJ
        replicates = type("R", (), {"budget": 1.0, "count": 1, "z": 2.0})()

        def geometry_choices(self):
            return None

    trainer = StandaloneTrainer(Space(), seed=0, device="cpu", lock=tmp_path / "lock", top=2, seeds=2)
    assert trainer.active
    first = trainer.next_job(study, {})
    assert first is not None and first[1:] == (0, 0)
    records = {first[0]: {"results": {"0": {"accuracy": 0.5}, "1": {"accuracy": 0.5}}}}
    second = trainer.next_job(study, records)
    assert second is not None and second[0] != first[0] and second[1] == 0
    records[second[0]] = {"results": {"0": {"accuracy": 0.5}}, "claims": {}}
    assert trainer.next_job(study, records) == (second[0], 1, 0)
    records[second[0]]["results"]["1"] = {"accuracy": 0.5}
    assert trainer.next_job(study, records) is None          # the top 2, 2 seeds each: done
    assert not StandaloneTrainer(Space(), 0, "cpu", tmp_path / "lock", top=0, seeds=2).active


def test_standalone_architectures_means_and_standard_errors(study):
    study.set_user_attr(f"{PREFIX}0", {"results": {"0": {"accuracy": 0.62}, "1": {"accuracy": 0.66}}})
    study.set_user_attr(f"{PREFIX}2", {"results": {"0": {"accuracy": 0.75}, "1": {"accuracy": None, "error": "x"}}})
    archs, _ = study_architectures(study)
    ranked, noise = standalone_architectures(study, archs)
    assert [a.id for a in ranked] == ["a0", "a2"]  # only those trained stand-alone, in order
    a0, a2 = ranked
    assert a0.metrics["accuracy"] == pytest.approx(0.64) and a0.metrics["accuracy_inherited"] == pytest.approx(0.50)
    assert a0.se["accuracy"] == pytest.approx(statistics.stdev([0.62, 0.66]) / math.sqrt(2))
    assert a0.replicates == 2 and a0.metrics["throughput"] == pytest.approx(300.0)
    # one stand-alone result: the SE is the noise estimate; with one pair of seeds (fewer than 3
    # architectures with two), the binomial floor of the 1000 validation images at the mean accuracy
    p = statistics.fmean([0.62, 0.66, 0.75])
    assert noise.source == "binomial" and noise.sd == pytest.approx(math.sqrt(p * (1 - p) / 1000))
    assert a2.replicates == 1 and a2.metrics["accuracy"] == pytest.approx(0.75)
    assert a2.se["accuracy"] == pytest.approx(noise.sd)
