"""The Optuna samplers a search names (`SearchSettings.sampler`), by name.

`SAMPLERS` maps each name to a factory `(seed, n_trials) -> optuna sampler`; `--sampler`,
`SearchSettings` and `make_sampler` accept exactly its names. Adding a sampler is one
`register_sampler(name, factory)`. Built in:

* `tpe`: multivariate grouped TPE (the space is conditional: windows only for L blocks, ...)
  with the constant liar, so parallel workers do not propose the same point;
* `nsga2` / `nsga3`: population max(8, min(50, N // 4)) for N trials;
* `gp`: Gaussian process (slow per trial, for small budgets);
* `random`: uniform.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable

import optuna

from ...errors import ConfigError

SamplerFactory = Callable[[int | None, int], optuna.samplers.BaseSampler]
"""(seed, number of trials of the study) -> the sampler; a seed of None: unseeded."""

SAMPLERS: dict[str, SamplerFactory] = {}


def register_sampler(name: str, factory: SamplerFactory) -> SamplerFactory:
    """Make `factory` selectable as `--sampler NAME` (replacing a sampler of that name)."""
    if not name or any(c.isspace() or c == "|" for c in name):
        raise ConfigError(f"sampler name {name!r}: must be non-empty, without spaces or '|'")
    SAMPLERS[name] = factory
    return factory


def check_sampler(name: str) -> None:
    """A one-line `ConfigError` listing the valid names unless `name` is a registered sampler."""
    if name not in SAMPLERS:
        raise ConfigError(f"sampler={name!r}: valid samplers are {', '.join(SAMPLERS)}", field="sampler")


def make_sampler(name: str, seed: int | None, n_trials: int) -> optuna.samplers.BaseSampler:
    """The sampler `name` for a study of `n_trials` trials, seeded with `seed` (Optuna's
    experimental-feature warnings silenced while it is made)."""
    check_sampler(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return SAMPLERS[name](seed, n_trials)


def population(n_trials: int) -> int:
    """Population of the genetic samplers: a quarter of the trials, 8 to 50."""
    return max(8, min(50, n_trials // 4))


def tpe(seed: int | None, n_trials: int) -> optuna.samplers.BaseSampler:
    """Multivariate grouped TPE with the constant liar."""
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)


def nsga2(seed: int | None, n_trials: int) -> optuna.samplers.BaseSampler:
    """NSGA-II, population `population(n_trials)`."""
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=population(n_trials))


def nsga3(seed: int | None, n_trials: int) -> optuna.samplers.BaseSampler:
    """NSGA-III, population `population(n_trials)`."""
    return optuna.samplers.NSGAIIISampler(seed=seed, population_size=population(n_trials))


def gp(seed: int | None, n_trials: int) -> optuna.samplers.BaseSampler:
    """Gaussian-process sampler."""
    return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)


def uniform(seed: int | None, n_trials: int) -> optuna.samplers.BaseSampler:
    """Uniform random sampling."""
    return optuna.samplers.RandomSampler(seed=seed)


for _name, _factory in (("tpe", tpe), ("nsga2", nsga2), ("nsga3", nsga3), ("gp", gp), ("random", uniform)):
    register_sampler(_name, _factory)
