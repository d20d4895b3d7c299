"""The dry run of a search (`twins-nas search --dry-run`): what a search would do, checked
without writing anything. `preview_search(space, settings)` validates the storage and the
proxy data set, and samples configs of the space to show what its constraints accept."""
from __future__ import annotations

import random
from dataclasses import dataclass

from ...config import ArchConfig
from ..evaluate.objective import constraint_values, measured_metrics, needs_proxy_data
from ..proxy.data import load_proxy_data
from ..space.metrics import CHEAP_METRICS
from ..space.space import SearchSpace
from .settings import SearchSettings
from .storage import describe_storage

FEASIBILITY_DRAWS = 400  # random configs whose closed-form constraints are checked
SAMPLES = 3              # configs shown in full


@dataclass(frozen=True)
class SampledConfig:
    """A config of the space drawn as the search's first trials could be, its closed-form
    metrics (params_m, gmacs, ...) and the constraints it breaks (relative violation > 0)."""

    config: ArchConfig
    metrics: dict[str, float]
    violations: dict[str, float]


@dataclass(frozen=True)
class ProxyDataInfo:
    """The proxy data set a search trains on: its name, images per split and classes."""

    name: str
    train: int
    val: int
    num_classes: int


@dataclass(frozen=True)
class SearchPreview:
    """What `preview_search` found: the storage (as messages show it), the share of random configs
    whose closed-form constraints hold (None without constraints), whether every constraint is
    closed-form, sampled configs and the proxy data set (None when no trial trains)."""

    storage: str
    feasible_share: float | None
    draws: int
    closed_form_only: bool
    samples: list[SampledConfig]
    data: ProxyDataInfo | None


def preview_search(space: SearchSpace, settings: SearchSettings) -> SearchPreview:
    """Check a search's storage and proxy data set and sample its space; nothing is written."""
    storage = describe_storage(settings.storage_spec())
    rng = random.Random(settings.seed)
    ok = 0
    for _ in range(FEASIBILITY_DRAWS):
        m = measured_metrics(space.random_config(rng), space)
        ok += all(v <= 0 for v in constraint_values(m, space.constraints).values())
    rng = random.Random(settings.seed)
    samples = []
    for _ in range(SAMPLES):
        cfg = space.random_config(rng)
        m = measured_metrics(cfg, space)
        viol = {k: v for k, v in constraint_values(m, space.constraints).items() if v > 0}
        samples.append(SampledConfig(config=cfg, metrics=m, violations=viol))
    data = None
    if needs_proxy_data(space):  # the data set is checked before anything is written
        d = load_proxy_data(space.proxy, seed=settings.seed)
        data = ProxyDataInfo(name=d.name, train=len(d.train_x), val=len(d.val_x), num_classes=d.num_classes)
    return SearchPreview(storage=storage,
                         feasible_share=ok / FEASIBILITY_DRAWS if space.constraints else None,
                         draws=FEASIBILITY_DRAWS, closed_form_only=set(space.constraints) <= set(CHEAP_METRICS),
                         samples=samples, data=data)
