"""The sampler registry: every built-in name builds the Optuna sampler it always did (same
class and arguments, seeded), a registered sampler is selectable by name, unknown names are one line."""
from __future__ import annotations

import warnings
from contextlib import nullcontext
from types import SimpleNamespace

import optuna
import pytest

from twins_nas.errors import ConfigError
from twins_nas.search.proxy.settings import ProxySettings
from twins_nas.search.run import samplers
from twins_nas.search.run.samplers import SAMPLERS, make_sampler, register_sampler
from twins_nas.search.run.settings import SearchSettings
from twins_nas.search.run.workers import run_worker_processes

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
N_TRIALS = 40  # population of the genetic samplers: max(8, min(50, 40 // 4)) = 10

# the samplers `--sampler` has always meant, written out independently of the registry
REFERENCE = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True),
    "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=10),
    "nsga3": lambda seed: optuna.samplers.NSGAIIISampler(seed=seed, population_size=10),
    "gp": lambda seed: optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
}


def proposals(sampler: optuna.samplers.BaseSampler, n: int, running: int = 0) -> list[dict]:
    """The params `sampler` proposes over `n` trials of a toy two-objective study whose space is
    conditional, as a Twins space is (a window only for L blocks), then for `running` more
    trials asked while the ones before are still running (as with parallel workers)."""
    def suggest(t: optuna.Trial) -> tuple[float, float]:
        x = t.suggest_float("x", -2.0, 2.0)
        k = t.suggest_int("k", 1, 8)
        c = t.suggest_categorical("c", ["L", "G"])
        w = t.suggest_int("window", 2, 14) if c == "L" else 0
        return (x - 1) ** 2 + k / 8 + (c == "G") + w / 14, (x + 1) ** 2 + (8 - k) / 8 + (14 - w) / 14

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
        study.optimize(suggest, n_trials=n)
        for _ in range(running):
            suggest(study.ask())
    return [t.params for t in study.trials]


@pytest.fixture
def registry():
    """The registry, restored after the test."""
    saved = dict(SAMPLERS)
    yield SAMPLERS
    SAMPLERS.clear()
    SAMPLERS.update(saved)


def test_the_built_in_names():
    assert list(SAMPLERS) == ["tpe", "nsga2", "nsga3", "gp", "random"]


@pytest.mark.parametrize("name", list(REFERENCE))
def test_each_name_builds_the_reference_sampler_seeded(name):
    # past the samplers' start-up trials (10 random ones; the genetic samplers' first generation of
    # 10), TPE far enough for its grouping to matter, two trials running (TPE's constant liar); GP is slow
    n = {"gp": 10, "tpe": 20}.get(name, 14)
    built = make_sampler(name, 5, N_TRIALS)
    assert type(built) is type(REFERENCE[name](5))
    ours = proposals(built, n, running=2)
    assert ours == proposals(REFERENCE[name](5), n, running=2)  # same class, same arguments, same seed
    assert ours[:3] == proposals(make_sampler(name, 5, N_TRIALS), 3)  # seeded: reproducible
    assert ours[:3] != proposals(make_sampler(name, 6, N_TRIALS), 3)  # and the seed is applied


def test_population_follows_the_trial_budget():
    # N // 4 within 8..50: a population of 8 (N = 12) starts its second generation at trial 9
    assert proposals(make_sampler("nsga2", 1, 12), 12) == proposals(
        optuna.samplers.NSGAIISampler(seed=1, population_size=8), 12)
    assert proposals(make_sampler("nsga2", 1, 12), 12) != proposals(make_sampler("nsga2", 1, N_TRIALS), 12)


def test_a_registered_sampler_is_selectable_by_name(registry, tmp_path):
    made = []

    def grid_like(seed: int | None, n_trials: int) -> optuna.samplers.BaseSampler:
        made.append((seed, n_trials))
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)

    register_sampler("qmc", grid_like)
    settings = SearchSettings(trials=7, study_name="s", out_dir=tmp_path, sampler="qmc")
    sampler = make_sampler(settings.sampler, 3, settings.trials)
    assert isinstance(sampler, optuna.samplers.QMCSampler) and made == [(3, 7)]
    assert proposals(sampler, 3) == proposals(optuna.samplers.QMCSampler(seed=3, scramble=True), 3)


def test_an_unknown_name_is_one_line_listing_the_valid_names(registry, tmp_path):
    register_sampler("mine", samplers.uniform)
    expected = "sampler='cmaes': valid samplers are tpe, nsga2, nsga3, gp, random, mine"
    with pytest.raises(ConfigError) as e:
        make_sampler("cmaes", 0, 10)
    assert str(e.value) == expected
    with pytest.raises(ConfigError) as e:
        SearchSettings(trials=1, study_name="s", out_dir=tmp_path, sampler="cmaes")
    assert str(e.value) == expected
    assert e.value.field == "sampler"  # the command line names it --sampler


@pytest.mark.parametrize("name", ["", "two words", "a|b", " tpe"])
def test_bad_names_are_refused(registry, name):
    with pytest.raises(ConfigError, match="sampler name"):
        register_sampler(name, samplers.uniform)
    assert name not in SAMPLERS


def test_a_sampler_that_cannot_reach_worker_processes_is_one_line(registry, tmp_path):
    register_sampler("closure", lambda seed, n_trials: optuna.samplers.RandomSampler(seed=seed))
    settings = SearchSettings(trials=2, study_name="s", out_dir=tmp_path, sampler="closure", workers=2)
    space = SimpleNamespace(proxy=ProxySettings(), source="s.yaml", model_dump=lambda mode: {})
    with pytest.raises(ConfigError, match=r"^workers=2: sampler 'closure' or data set 'fashion-mnist' cannot "
                                          r"be sent to worker processes \(.*\); register a module-level function"):
        run_worker_processes(space, settings, "unused", "cpu", 1, nullcontext(), None, None, {}, lambda: None)
