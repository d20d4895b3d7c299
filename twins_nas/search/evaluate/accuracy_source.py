"""Where a trial's accuracy comes from when it is not a proxy training of its own: a named
*accuracy source* that scores a config without training it (today ``supernet``: the weights a
config's subnet inherits from a trained weight-sharing supernet, `twins_nas.supernet`).

A source is anything with ``score(cfg) -> accuracy in [0, 1]``, made by a loader
``loader(path, space, **options)`` (for a supernet: ``samples``, the validation images it
scores on) that `ACCURACY_SOURCES` names as ``"module:attribute"``: the module is
imported when the source is first used (in every worker process too), so the search does not
import the packages built on top of it.
"""
from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

from ...config import ArchConfig, ConfigError
from ..space.space import SearchSpace

ACCURACY_SOURCES: dict[str, str] = {"supernet": "twins_nas.supernet.score:SupernetScorer.load"}
INHERITED, STANDALONE = "inherited", "stand-alone"  # how trials.csv names an accuracy's origin


@runtime_checkable
class AccuracySource(Protocol):
    """Scores a config of the space it was loaded for (anything else: a one-line ConfigError)."""

    def score(self, cfg: ArchConfig) -> float: ...


def load_accuracy_source(name: str, path: str, space: SearchSpace, **options: Any) -> AccuracySource:
    """The source `name` of `ACCURACY_SOURCES` loaded from `path` for `space` with the loader's
    `options`; an unknown name is a one-line ConfigError naming the valid ones (the loader
    raises its own for a bad path)."""
    try:
        target = ACCURACY_SOURCES[name]
    except KeyError:
        raise ConfigError(f"accuracy source {name!r}: valid sources are {', '.join(ACCURACY_SOURCES)}") from None
    module, attr = target.split(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj(path, space, **options)
