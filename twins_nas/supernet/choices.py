"""Configs of a space picked by a rule, and the subnet a config of the space is.

A space turns choices into a config through `SearchSpace.sample(trial)`, asking the trial
for each choice that changes the network. `config_by(space, choose)` answers those questions
with `choose(param_name, choices)` (choices in the space's order, encoded as the trial sees
them: windows '7x14', ratios 4 or '2x4'), so a rule never re-implements which choices matter.
The sandwich rule's two ends are such rules: `largest_config` and `smallest_config`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..config import ArchConfig
from ..errors import ConfigError
from ..search.proxy.network import proxy_of
from ..search.space.space import SearchSpace

Choose = Callable[[str, list], Any]

# The sub-sampling functions from the most to the least work (the largest subnet takes the first).
_SUBSAMPLE_ORDER = ("conv", "dwconv", "avgpool")


class _Asker:
    """Stands in for an Optuna trial: `suggest_categorical(name, choices)` asks `choose`."""

    def __init__(self, choose: Choose):
        self._choose = choose

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._choose(name, list(choices))


def config_by(space: SearchSpace, choose: Choose) -> ArchConfig:
    """The config of `space` whose every relevant choice is `choose(param_name, choices)`."""
    return space.sample(_Asker(choose))


def by_index(indices: dict[str, int]) -> Choose:
    """A rule that takes choice number `indices[name]` (clamped to the list), else the first."""
    return lambda name, choices: choices[min(indices.get(name, 0), len(choices) - 1)]


def _area(value: int | str) -> int:
    """The cells of an encoded window or ratio: 7 -> 49, '7x14' -> 98."""
    if isinstance(value, str):
        m, _, n = value.lower().partition("x")
        return int(m) * int(n)
    return value * value


def _global_share(pattern: str) -> float:
    return pattern.count("G") / len(pattern)


def _extreme(largest: bool) -> Choose:
    """The rule of the largest (most work) or smallest subnet: per choice, the value that
    gives the most (least) work. More blocks, channels, heads, MLP units and global blocks,
    larger windows, smaller sub-sampling ratios and a strided conv make more work."""
    def choose(name: str, choices: list) -> Any:
        field = name.rpartition(".")[2]
        if field in ("depth", "embed_dim", "num_heads", "mlp_ratio"):
            key: Callable[[Any], float] = float
        elif field in ("patch_size", "head_dim"):  # smaller patches: more tokens; narrower heads: more heads
            key = lambda v: -float(v)  # noqa: E731
        elif field == "window":
            key = _area
        elif field == "sr_ratio":
            key = lambda v: -_area(v)  # noqa: E731
        elif field == "pattern":
            key = _global_share
        elif field == "subsample":
            key = lambda v: -_SUBSAMPLE_ORDER.index(v)  # noqa: E731
        else:
            return choices[0]
        return (max if largest else min)(choices, key=key)
    return choose


def largest_config(space: SearchSpace) -> ArchConfig:
    """The sandwich rule's largest subnet: every choice at its most work (see `_extreme`)."""
    return config_by(space, _extreme(True))


def smallest_config(space: SearchSpace) -> ArchConfig:
    """The sandwich rule's smallest subnet: every choice at its least work."""
    return config_by(space, _extreme(False))


def subnet_of(space: SearchSpace, cfg: ArchConfig) -> ArchConfig:
    """The subnet of the full-size `cfg` in the supernet of `space`: its proxy config. A config
    the space cannot produce raises a one-line `ConfigError`."""
    if not space.contains(cfg):
        name = f" {cfg.name!r}" if cfg.name else ""
        raise ConfigError(f"config{name} is not a network of space {space.name!r} ({space.source}): the supernet "
                          "holds only the space's networks; check its stages against the space's choices",
                          field="config")
    return proxy_of(cfg, space)
