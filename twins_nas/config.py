"""`ArchConfig`: plain, validated, versioned data describing one Twins-like architecture.

A config is the only thing that flows between the parts of twins-nas: the search samples
one, the model builder and the cost model read one, reports write one to JSON.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from .atomic import write_text
from .errors import ConfigError, loc_str, one_line, show_value
from .numbers import Number, PositiveInt
from .published import PRESETS
from .sizes import (  # noqa: F401  (re-exported: twins_nas.config is where users found them)
    MIN_RESOLUTION,
    SIZE_FORM,
    CompactSizeField,
    Size,
    SizeField,
    as_size,
    compact_size,
    format_size,
    parse_size,
)

SCHEMA_VERSION = 1
SUBSAMPLE_CHOICES = ("conv", "dwconv", "avgpool")
_PATTERN_RE = re.compile(r"^[LG]+$")

Pair = tuple[PositiveInt, PositiveInt]

_PAIR_RULES = {  # one rule per field instead of pydantic's report for every union member
    "window": "must be a pair [m, n] of positive integers (window rows, cols)",
    "sr_ratio": "must be a positive integer k or a pair [k1, k2] of positive integers",
}
_MISSING = object()


def _lookup(data: Any, loc: tuple) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return data


def _fields_at(loc: tuple) -> list | None:
    """The valid field names of the mapping at `loc` (for 'unknown field' errors)."""
    if not loc:
        return list(ArchConfig.model_fields)
    if len(loc) == 2 and loc[0] == "stages":
        return list(StageConfig.model_fields)
    return None


def format_validation_error(err: ValidationError, prefix: str = "", data: Any = None) -> str:
    """pydantic's report on a config as one line (see `errors.one_line`). `data` (the
    validated input) lets a pair field such as `window` be reported with its whole value."""
    locs = [tuple(e["loc"]) for e in err.errors()]

    def special(e: Mapping[str, Any], loc: tuple, rule: str) -> str | None:
        if any(len(o) > len(loc) and o[:len(loc)] == loc for o in locs):
            return ""  # a container whose item has its own error (pydantic adds e.g. 'too short' after dropping it)
        kind = e["type"]
        pair = len(loc) > 2 and loc[0] == "stages" and loc[2] in _PAIR_RULES and kind != "value_error"
        if pair:
            loc = loc[:3]  # stages[i].window / sr_ratio reported as a whole
        path = loc_str(loc)
        if prefix:
            path = prefix + ("." + path if path and not path.startswith("[") else path)
        if pair:
            value = _lookup(data, loc) if data is not None else _MISSING
            given = "" if value is _MISSING else "=" + show_value(value)
            return f"{path}{given}: {_PAIR_RULES[loc[2]]}"
        given = f"={show_value(e['input'])}" if "input" in e and not isinstance(e["input"], dict) else ""
        if kind == "too_short" and loc == ("stages",):
            return f"{path}{given}: at least one stage is required"
        if kind == "tuple_type":
            return f"{path}{given}: must be a list"
        if kind in ("model_type", "dict_type"):
            return f"{path}{given}: must be an object (a mapping of field names to values)"
        return None

    return one_line(err, _fields_at, special, prefix=prefix, noun="field")


def block_types(pattern: str, depth: int) -> list[str]:
    """The block sequence of `depth` blocks of an L/G `pattern` repeated, e.g. ['L', 'G', 'L']."""
    return [pattern[j % len(pattern)] for j in range(depth)]


def clamp_window(window: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """An LSA window (m, n) clamped to a map of `size` (H, W)."""
    return min(window[0], size[0]), min(window[1], size[1])


class StageConfig(BaseModel):
    """One pyramid stage: a patch embedding followed by `depth` blocks (+ PEG after block 0)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    patch_size: PositiveInt = Field(description="stride (= kernel) of the patch-embedding conv")
    embed_dim: PositiveInt
    depth: PositiveInt
    num_heads: PositiveInt
    mlp_ratio: Number = Field(gt=0, description="MLP hidden = int(embed_dim * mlp_ratio)")
    window: Pair | None = Field(
        default=None, description="LSA window (m rows, n cols); required when pattern has an L")
    sr_ratio: PositiveInt | Pair = Field(
        default=1, description="GSA sub-sample ratio k (or (k1, k2)); 1 = full global attention")
    subsample: Literal["conv", "dwconv", "avgpool"] = Field(
        default="conv", description="GSA sub-sampling function (used when sr_ratio > 1)")
    pattern: str = Field(default="G", description="L/G string repeated cyclically over the blocks")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        if not _PATTERN_RE.match(v):
            raise ValueError(f"must be a non-empty string of 'L' (local) and 'G' (global) letters, got {v!r}")
        return v

    @property
    def sr_pair(self) -> tuple[int, int]:
        return (self.sr_ratio, self.sr_ratio) if isinstance(self.sr_ratio, int) else self.sr_ratio

    @property
    def block_types(self) -> list[str]:
        """The block sequence spelled out, e.g. ['L', 'G', 'L'] for pattern LG and depth 3."""
        return block_types(self.pattern, self.depth)

    def lsa_window(self, size: tuple[int, int]) -> tuple[int, int]:
        """The LSA window used on a map of `size` (H, W): the configured (m, n), clamped to
        the map (a window larger than the map is the whole map)."""
        assert self.window is not None  # validated: a stage with L blocks has a window
        return clamp_window(self.window, size)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)


class ArchConfig(BaseModel):
    """A whole Twins-like network. Build it with `twins_nas.build_model(cfg)`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: StrictInt = SCHEMA_VERSION
    name: str | None = None
    stages: tuple[StageConfig, ...] = Field(min_length=1)
    in_chans: PositiveInt = 3
    num_classes: StrictInt = Field(default=1000, ge=0, description="0 = no classifier (features only)")
    qkv_bias: bool = True
    drop_path_rate: Number = Field(default=0.0, ge=0.0, lt=1.0)
    peg: bool = Field(default=True, description="conditional position encoding after each stage's first block")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, data=data)) from None

    @model_validator(mode="after")
    def _cross_field(self) -> ArchConfig:
        if self.schema_version > SCHEMA_VERSION:
            raise ValueError(f"schema_version={self.schema_version} is newer than this twins-nas "
                             f"supports ({SCHEMA_VERSION}); upgrade twins-nas")
        for i, s in enumerate(self.stages):
            p = f"stages[{i}]"
            if s.embed_dim % s.num_heads:
                raise ValueError(f"{p}.embed_dim={s.embed_dim} is not divisible by num_heads={s.num_heads}")
            if "L" in s.pattern and s.window is None:
                raise ValueError(f"{p}.window is required because pattern={s.pattern!r} has local (L) blocks")
        return self

    # ---- convenience -------------------------------------------------------------------
    @property
    def depths(self) -> list[int]:
        return [s.depth for s in self.stages]

    @property
    def embed_dims(self) -> list[int]:
        return [s.embed_dim for s in self.stages]

    def stage_sizes(self, resolution: int | tuple[int, int]) -> list[tuple[int, int]]:
        """Feature-map size (H_i, W_i) of every stage: each patch embedding floors (as timm)."""
        h, w = as_size(resolution)
        sizes: list[tuple[int, int]] = []
        for s in self.stages:
            h, w = h // s.patch_size, w // s.patch_size
            if h < 1 or w < 1:
                raise ConfigError(f"resolution {resolution} is too small: stage {len(sizes)} "
                                  f"(patch_size={s.patch_size}) would have an empty feature map")
            sizes.append((h, w))
        return sizes

    def replace(self, **changes: Any) -> ArchConfig:
        d = self.to_dict()
        d.update(changes)
        return ArchConfig.from_dict(d)

    # ---- (de)serialisation ------------------------------------------------------------
    @classmethod
    def preset(cls, name: str) -> ArchConfig:
        """A published model by name (`twins-svt-s`; `twins_svt_s` and upper case work too)."""
        key = name.lower().replace("_", "-")
        if key not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
        return cls.from_dict(PRESETS[key])

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict, index: int | None = None) -> ArchConfig:
        """Build from a dict. Accepts an ArchConfig dict, optionally with a free-form `meta`
        entry (ignored), or a collection `{"configs": [...]}` (e.g. pareto.json), from which
        entry `index` (default 0) is taken."""
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a JSON object, got {type(data).__name__}")
        if "configs" in data and "stages" not in data:
            configs = data["configs"]
            i = 0 if index is None else index
            if not isinstance(configs, list) or not configs:
                raise ConfigError("configs: expected a non-empty list of architectures")
            if not -len(configs) <= i < len(configs):
                raise ConfigError(f"index={i} is out of range: the file holds {len(configs)} configs")
            return cls.from_dict(configs[i])
        data = {k: v for k, v in data.items() if k != "meta"}
        if "arch" in data and "stages" not in data:  # tolerate {"arch": {...}, ...} wrappers
            data = data["arch"]
        return cls(**data)

    def to_json(self, path: str | Path | None = None, meta: dict | None = None, indent: int = 2) -> str:
        d = self.to_dict()
        if meta:
            d["meta"] = meta
        text = json.dumps(d, indent=indent)
        if path is not None:
            write_text(path, text + "\n")
        return text

    @classmethod
    def from_json(cls, path: str | Path, index: int | None = None) -> ArchConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        try:
            return cls.from_dict(data, index=index)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None


def load_config(name_or_path: str, index: int | None = None) -> ArchConfig:
    """A preset name (`twins-svt-s`) or a path to a JSON file."""
    if name_or_path in PRESETS:
        return ArchConfig.preset(name_or_path)
    p = Path(name_or_path)
    if p.suffix == ".json" or p.exists():
        return ArchConfig.from_json(p, index=index)
    raise ConfigError(f"{name_or_path!r} is neither a preset ({', '.join(PRESETS)}) nor a JSON file")
