"""What `twins-nas search` asks for (`SearchSettings`, checked as it is made)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ...config import ConfigError
from ..pareto import parse_pick
from ..space.measure import MeasureBudget
from .samplers import check_sampler
from .storage import DEFAULT_HEARTBEAT_S


@dataclass
class SearchSettings:
    """What `twins-nas search` asks for (see its --help)."""

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

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if self.trials < 1:
            raise ConfigError(f"--trials={self.trials}: must be at least 1")
        if self.workers < 1:
            raise ConfigError(f"--workers={self.workers}: must be at least 1")
        check_sampler(self.sampler)
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads={self.threads}: must be at least 1")
        if not 1 <= self.heartbeat <= 3600:
            raise ConfigError(f"--heartbeat={self.heartbeat}: must be 1 to 3600 seconds")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"--timeout={self.timeout}: must be a positive number of seconds")
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", self.study_name):
            raise ConfigError(f"--study-name={self.study_name!r}: use letters, digits, '.', '_' and '-'")
        parse_pick(self.pick)
