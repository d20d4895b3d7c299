"""What `twins-nas search` asks for (`SearchSettings`, checked as it is made)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ...config import ConfigError
from ..pareto import parse_pick
from ..space.measure import MeasureBudget
from ..space.space import SearchSpace
from .samplers import check_sampler
from .storage import DEFAULT_HEARTBEAT_S, resolve_storage


@dataclass
class SearchSettings:
    """What a search asks for: how many finished trials, the study and its storage, the device,
    seeds, workers, sampler, pick rule and timing budget (checked as the settings are made)."""

    trials: int
    study_name: str
    out_dir: Path
    storage: str | None = None
    device: str = "auto"
    seed: int = 0
    workers: int = 1
    timeout: float | None = None
    sampler: str = "tpe"
    pick: str = "knee"
    budget: MeasureBudget = field(default_factory=MeasureBudget)
    early_stop: bool = True
    presets: bool = True
    png: bool = True
    threads: int | None = None  # torch CPU threads per worker (default: cores // workers)
    heartbeat: int = DEFAULT_HEARTBEAT_S  # seconds between a trial's heartbeats (database servers)
    supernet: str | None = None  # a trained supernet's folder: the accuracy of every trial is its inherited one
    supernet_samples: int | None = None  # with a supernet: score on a fixed class-balanced subset of this many images
    retrain: int = 8  # with a supernet: the top architectures of the inherited front trained stand-alone at the end
    retrain_seeds: int = 2  # ... with this many seeds each

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if self.trials < 1:
            raise ConfigError(f"trials={self.trials}: must be at least 1", field="trials")
        if self.workers < 1:
            raise ConfigError(f"workers={self.workers}: must be at least 1", field="workers")
        check_sampler(self.sampler)
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads={self.threads}: must be at least 1", field="threads")
        if not 1 <= self.heartbeat <= 3600:
            raise ConfigError(f"heartbeat={self.heartbeat}: must be 1 to 3600 seconds", field="heartbeat")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"timeout={self.timeout}: must be a positive number of seconds", field="timeout")
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", self.study_name):
            raise ConfigError(f"study_name={self.study_name!r}: use letters, digits, '.', '_' and '-'",
                              field="study_name")
        if self.supernet_samples is not None and self.supernet_samples < 1:
            raise ConfigError(f"supernet_samples={self.supernet_samples}: must be at least 1", field="supernet_samples")
        if self.retrain < 0:
            raise ConfigError(f"retrain={self.retrain}: must be 0 (none) or more architectures", field="retrain")
        if self.retrain_seeds < 1:
            raise ConfigError(f"retrain_seeds={self.retrain_seeds}: must be at least 1", field="retrain_seeds")
        parse_pick(self.pick)

    @classmethod
    def for_space(cls, space: SearchSpace, trials: int, study_name: str | None = None,
                  out_dir: str | Path | None = None, device: str | None = None, timing_budget: float = 1.0,
                  **options) -> SearchSettings:
        """The settings of a search of `space`: the study named after the space, its report in
        reports/STUDY-NAME and models timed on the space's `measure.device` unless given;
        `timing_budget` seconds of timing per full-size model; `options`: the other fields."""
        name = study_name or space.name
        return cls(trials=trials, study_name=name, out_dir=Path(out_dir) if out_dir else Path("reports") / name,
                   device=device or space.measure.device, budget=MeasureBudget(budget_s=timing_budget), **options)

    def storage_spec(self) -> str:
        """The storage this search opens (see `storage.resolve_storage`); ConfigError when invalid."""
        return resolve_storage(self.storage, self.out_dir, self.workers)
