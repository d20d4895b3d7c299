"""The Optuna sampler a search names (`SearchSettings.sampler`)."""
from __future__ import annotations

import warnings

import optuna

from ...config import ConfigError

SAMPLERS = ("tpe", "nsga2", "nsga3", "gp", "random")


def make_sampler(name: str, seed: int | None, n_trials: int) -> optuna.samplers.BaseSampler:
    """tpe: multivariate grouped TPE (the space is conditional: windows only for L blocks,
    ...); nsga2 / nsga3: population max(8, min(50, N // 4)); gp: Gaussian process (slow per
    trial, for small budgets); random: uniform."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        pop = max(8, min(50, n_trials // 4))
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=pop)
        if name == "nsga3":
            return optuna.samplers.NSGAIIISampler(seed=seed, population_size=pop)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"sampler={name!r}: valid samplers are {', '.join(SAMPLERS)}", field="sampler")
