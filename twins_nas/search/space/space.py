"""Search spaces: a YAML file -> a validated `SearchSpace` -> `ArchConfig`s.

A space lists, per stage, the values every `StageConfig` field may take: a scalar is fixed,
a non-empty list is a choice. Windows and sub-sample ratios are written as an int `7` (7x7),
a pair `[7, 14]` or a string `'7x14'`; because a list is always a choice list, a fixed
non-square window is `'7x14'` or `[[7, 14]]` (and `window: [7, 14]` means "7x7 or 14x14").

`SearchSpace.sample(trial)` turns an Optuna trial into a full-size `ArchConfig`. A field is
suggested only when it has more than one choice *and* it changes the network: the window of
a stage only when the stage has local (L) blocks, the sub-sample ratio only when it has
global (G) blocks, the sub-sampling function only when some G block sub-samples (k > 1).
An unused field takes its first choice (a stage without L blocks gets no window at all).
Parameter names are `s{i}.{field}` (e.g. `s0.depth`, `s2.window`) and `subsample` for a
model-wide sub-sampling function; pairs are encoded as strings (`'7x14'`) so that every
categorical choice is a JSON primitive, and decoded by `config_from_params`.

The top-level ``resolution`` is the input size of the full-size model: one number for a square
(``224``), ``'512x1024'`` or ``[512, 1024]`` for H x W. A square one is stored (and dumped) as
the int it always was, so a square space hashes as before; a non-square one is dumped as
``[H, W]``. `SearchSpace.input_size` is it as (H, W); `SearchSpace.measure_size` is where the
full-size model is timed and its GMACs counted (``measure.size``, default the resolution).

Every error is a one-line `ConfigError` naming the file, the key path, the bad value and
what would be valid, e.g. ``x.yaml: stages[1].pattern='LXG': letters must be L or G``.

Metric names (objectives, constraints) are those of `twins_nas.search.space.metrics`; the legacy
``gflops`` is accepted for ``gmacs`` (in the file and in overrides) with a
DeprecationWarning. The ``measure:`` and ``proxy:`` sections are `MeasureSettings` and
`ProxySettings` (`twins_nas.search.settings`).
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import random
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from ...config import SUBSAMPLE_CHOICES, ArchConfig, ConfigError, block_types
from ...errors import RenamedWarning, loc_str, one_line
from ...numbers import Number
from ...sizes import CompactSizeField, Size, as_size, format_pair
from ..proxy.network import StageChoices
from ..proxy.settings import ProxySettings
from .halving import HalvingSettings
from .measure import MeasureSettings
from .metrics import CURRENT_TO_LEGACY, LEGACY_NAMES, METRICS, Metric, canonical_metric
from .replication import ReplicateSettings

Direction = Literal["maximize", "minimize"]
Subsample = Literal["conv", "dwconv", "avgpool"]
Pair = tuple[int, int]

_PAIR_RE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


# ---- choice lists -------------------------------------------------------------------------
def _as_list(v: Any) -> Any:
    """A scalar is a fixed value: wrap it as a one-element choice list."""
    return v if isinstance(v, (list, tuple)) else [v]


def _fmt(v: Any) -> str:
    if isinstance(v, tuple) and len(v) == 2:
        return f"{v[0]}x{v[1]}"
    return json.dumps(v) if isinstance(v, (str, int, float, bool, list, type(None))) else repr(v)


def _parse_pair(item: Any, what: str) -> Pair:
    """7 -> (7, 7); [7, 14] -> (7, 14); '7x14' -> (7, 14)."""
    if isinstance(item, bool):
        pass
    elif isinstance(item, int) and item > 0:
        return (item, item)
    elif isinstance(item, (list, tuple)) and len(item) == 2 and all(
            isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in item):
        return (int(item[0]), int(item[1]))
    elif isinstance(item, str) and (match := _PAIR_RE.match(item)):
        m, n = (int(x) for x in match.groups())
        if m > 0 and n > 0:
            return (m, n)
    raise ValueError(f"={_fmt(item)}: a {what} is a positive int n (n x n), a pair [m, n] or a string 'mxn'")


def _pair_choices(v: Any, what: str) -> list[Pair]:
    return [_parse_pair(item, what) for item in _as_list(v)]


def _encode_sr(p: Pair) -> int | str:
    return p[0] if p[0] == p[1] else format_pair(p)


def heads_of(embed_dim: int, head_dim: int) -> int:
    """Heads for a `head_dim` choice: embed_dim // head_dim, at least 1. A head_dim that does
    not divide embed_dim gives wider heads (48 with head_dim 32: one head of 48), valid as long
    as the head count divides embed_dim (100 with head_dim 32 is not: 3 heads)."""
    return max(1, embed_dim // head_dim)


def _kinds(pattern: str, depth: int) -> tuple[str, ...]:
    """The block sequence of a pattern at a depth, hashable (see `config.block_types`)."""
    return tuple(block_types(pattern, depth))


def _canonical_metric_keys(mapping: Any, where: str) -> Any:
    """A metric-keyed mapping with legacy metric names renamed (each with a warning); a
    ValueError when both spellings of one metric are given."""
    if not isinstance(mapping, dict):
        return mapping
    out: dict = {}
    for key, value in mapping.items():
        name = canonical_metric(key)
        if name in out:
            old, new = (key, name) if key in LEGACY_NAMES else (CURRENT_TO_LEGACY[name], name)
            raise ValueError(f"{where}: {old!r} and {new!r} are the same metric; keep {new!r}")
        out[name] = value
    return out


# ---- the space ----------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StageSpace(_Strict):
    """Choices for one stage. Each field is a scalar (fixed) or a non-empty list (a choice);
    after validation every field is stored as its list of choices. Give `head_dim` (heads =
    embed_dim // head_dim, at least 1; see `heads_of`) or `num_heads`, not both. `subsample`
    here overrides the model-wide choice for this stage (and is then suggested per stage as `s{i}.subsample`)."""

    patch_size: list[StrictInt] = Field(description="patch-embedding stride of the stage")
    depth: list[StrictInt] = Field(description="number of blocks")
    embed_dim: list[StrictInt]
    head_dim: list[StrictInt] | None = None
    num_heads: list[StrictInt] | None = None
    mlp_ratio: list[Number]
    window: list[Pair] | None = Field(default=None, description="LSA window m x n")
    sr_ratio: list[Pair] = Field(default=[(1, 1)], description="GSA sub-sample ratio k or (k1, k2)")
    pattern: list[str] = Field(default=["G"], description="L/G block pattern, repeated over the depth")
    subsample: list[Subsample] | None = None

    @field_validator("patch_size", "depth", "embed_dim", "head_dim", "num_heads", "mlp_ratio",
                     "pattern", "subsample", mode="before")
    @classmethod
    def _wrap(cls, v: Any) -> Any:
        return v if v is None else _as_list(v)

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, v: Any) -> Any:
        return v if v is None else _pair_choices(v, "window")

    @field_validator("sr_ratio", mode="before")
    @classmethod
    def _sr(cls, v: Any) -> Any:
        return _pair_choices(v, "sub-sample ratio")

    def _problems(self, p: str) -> list[str]:
        """Rule violations of this stage, each a message starting with its key path `p...`."""
        out = []
        for name in type(self).model_fields:
            choices = getattr(self, name)
            if choices is None:
                continue
            if not choices:
                out.append(f"{p}.{name}=[]: empty choice list; give a value or a non-empty list")
                continue
            seen = set()
            for c in choices:
                if c in seen:
                    hint = (" (a list is a choice list: write a fixed pair as 'mxn' or [[m, n]])"
                            if name in ("window", "sr_ratio") else "")
                    out.append(f"{p}.{name}: duplicate choice {_fmt(c)}{hint}")
                seen.add(c)
        for name in ("patch_size", "depth", "embed_dim", "head_dim", "num_heads"):
            for c in getattr(self, name) or ():
                if c < 1:
                    out.append(f"{p}.{name}={c}: must be a positive integer")
        for c in self.mlp_ratio:
            if not c > 0:
                out.append(f"{p}.mlp_ratio={_fmt(c)}: must be > 0")
        if (self.head_dim is None) == (self.num_heads is None):
            out.append(f"{p}: give exactly one of head_dim (heads = embed_dim // head_dim) or num_heads")
        elif self.head_dim is not None:
            for d, h in itertools.product(self.embed_dim, self.head_dim):
                if h > 0 and d > 0 and d % heads_of(d, h):
                    out.append(f"{p}.embed_dim={d}: not divisible by head_dim={h} (nor into "
                               f"{heads_of(d, h)} equal heads); use a multiple of {h}")
        else:
            assert self.num_heads is not None  # exactly one of head_dim / num_heads (checked above)
            for d, h in itertools.product(self.embed_dim, self.num_heads):
                if h > 0 and d % h:
                    out.append(f"{p}.embed_dim={d}: not divisible by num_heads={h} "
                               f"(every embed_dim choice must be a multiple of every num_heads choice)")
        for pat in self.pattern:
            if not pat or set(pat) - {"L", "G"}:
                out.append(f"{p}.pattern={_fmt(pat)}: letters must be L (local) or G (global), "
                           f"e.g. LG, LLG, G")
        local = [pat for pat in self.pattern if "L" in pat and not set(pat) - {"L", "G"}]
        if local and self.window is None:
            out.append(f"{p}.window: required because pattern choice {', '.join(local)} has local (L) "
                       f"blocks; e.g. window: 7")
        return out


class Bound(_Strict):
    """A constraint on one metric: `min <= value <= max` (either side may be left out)."""

    min: Number | None = None
    max: Number | None = None

    @model_validator(mode="after")
    def _some(self) -> Bound:
        if self.min is None and self.max is None:
            raise ValueError("give min and/or max, e.g. {max: 30}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min={self.min} is larger than max={self.max}")
        return self


class SearchSpace(_Strict):
    """A validated search space. Build one with `load_space(path, overrides)`."""

    name: str
    description: str = ""
    resolution: CompactSizeField = Field(
        description="input size of the full-size model: n (n x n), 'HxW' or [H, W]; stored as n when square")
    num_classes: StrictInt = Field(default=1000, ge=0, description="classifier size of the measured model")
    in_chans: StrictInt = Field(default=3, ge=1)
    stages: list[StageSpace] = Field(min_length=1)
    subsample: list[Subsample] = Field(default=["conv"], description="model-wide GSA sub-sampling choice")
    objectives: dict[Metric, Direction]
    constraints: dict[Metric, Bound] = {}
    measure: MeasureSettings = MeasureSettings()
    proxy: ProxySettings = ProxySettings()
    halving: HalvingSettings = HalvingSettings()
    replicates: ReplicateSettings = ReplicateSettings()

    _source: str = PrivateAttr(default="<memory>")

    @model_validator(mode="before")
    @classmethod
    def _legacy_names(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = _renamed_sections(data)
            for key in ("objectives", "constraints"):
                if key in data:
                    data[key] = _canonical_metric_keys(data[key], key)
        return data

    @field_validator("subsample", mode="before")
    @classmethod
    def _wrap(cls, v: Any) -> Any:
        return _as_list(v)

    @model_validator(mode="after")
    def _rules(self) -> SearchSpace:
        problems = []
        for i, st in enumerate(self.stages):
            problems += st._problems(f"stages[{i}]")
        if not self.subsample:
            problems.append("subsample=[]: empty choice list; valid: " + ", ".join(SUBSAMPLE_CHOICES))
        elif len(set(self.subsample)) < len(self.subsample):
            problems.append(f"subsample={self.subsample}: duplicate choice")
        if not self.objectives:
            problems.append("objectives: give at least one, e.g. {accuracy: maximize, throughput: maximize}")
        if not problems:
            shrink = math.prod(max(st.patch_size) for st in self.stages)
            for name, size in (("resolution", self.resolution), ("measure.size", self.measure.size)):
                if size is not None and min(as_size(size)) // shrink < 1:
                    problems.append(f"{name}={_fmt(size)}: too small for the largest patch sizes "
                                    f"(stages[*].patch_size multiply to {shrink}); a feature map would be empty")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def geometry_choices(self) -> list[StageChoices]:
        """Per stage, the window sides and GSA ratios k the space allows, per axis: what the
        faithful proxy geometry keeps distinct (see `twins_nas.search.proxy.network`)."""
        out = []
        for st in self.stages:
            win = st.window or []
            out.append(StageChoices(window_rows=tuple(sorted({w[0] for w in win})),
                                    window_cols=tuple(sorted({w[1] for w in win})),
                                    k_rows=tuple(sorted({k[0] for k in st.sr_ratio})),
                                    k_cols=tuple(sorted({k[1] for k in st.sr_ratio}))))
        return out

    # ---- input sizes ---------------------------------------------------------------------
    @property
    def input_size(self) -> Size:
        """`resolution` as (H, W) (`size()` counts the networks of the space)."""
        return as_size(self.resolution)

    @property
    def measure_size(self) -> Size:
        """(H, W) at which the full-size model is timed, its memory measured and its GMACs
        counted: ``measure.size``, or the space's resolution when unset."""
        return self.measure.size if self.measure.size is not None else self.input_size

    @property
    def predictor_path(self) -> Path | None:
        """The latency table ``measure.predictor`` names, a relative path taken from the space
        file's folder (from the working directory for a space built in code); None when unset."""
        if self.measure.predictor is None:
            return None
        path = Path(self.measure.predictor).expanduser()
        if path.is_absolute() or self._source == "<memory>":
            return path
        return Path(self._source).parent / path

    # ---- identity ------------------------------------------------------------------------
    @property
    def source(self) -> str:
        """The file this space was read from ('<memory>' when built in code)."""
        return self._source

    @property
    def hash(self) -> str:
        """sha256 (hex) of the canonical JSON of the validated space, overrides included;
        `proxy.data_root` and the ``replicates:`` section are left out (neither changes a trial:
        where the data lives, how many further trainings the front gets)."""
        return _digest(_as_hashed(self.model_dump(mode="json", exclude={"proxy": {"data_root"}, "replicates": True})))

    @property
    def legacy_hash(self) -> str:
        """`hash` as it was before metrics were renamed (``gmacs`` was ``gflops``) and before the
        proxy had a geometry: what a study made then recorded. Such a study continues only with
        the proxy it was trained with (``proxy.geometry: clamp``, ``proxy.patch_size: null``)."""
        d = self.model_dump(mode="json", exclude={"proxy": {"data_root"}, "replicates": True})
        if (d["proxy"].get("geometry"), d["proxy"].get("patch_size")) != ("clamp", None):
            return "no legacy study: the proxy geometry is newer"
        del d["proxy"]["geometry"], d["proxy"]["patch_size"]
        if d.pop("halving") != HalvingSettings().model_dump(mode="json"):
            return "no legacy study: the space has rungs"
        for key in ("objectives", "constraints"):
            d[key] = {CURRENT_TO_LEGACY.get(m, m): v for m, v in d[key].items()}
        return _digest(d)

    # ---- sampling ------------------------------------------------------------------------
    def _assign(self, pick: Callable[[str, list], Any]) -> ArchConfig:
        """Build a config, asking `pick(param_name, choices)` for every choice that matters."""
        def choose(name: str, choices: list) -> Any:
            return choices[0] if len(choices) == 1 else pick(name, choices)

        stages, wide = [], []
        for i, st in enumerate(self.stages):
            p = f"s{i}."
            patch = choose(p + "patch_size", st.patch_size)
            depth = choose(p + "depth", st.depth)
            dim = choose(p + "embed_dim", st.embed_dim)
            if st.head_dim is not None:
                heads = heads_of(dim, choose(p + "head_dim", st.head_dim))
            else:
                assert st.num_heads is not None  # exactly one of head_dim / num_heads (validated)
                heads = choose(p + "num_heads", st.num_heads)
            mlp = choose(p + "mlp_ratio", st.mlp_ratio)
            pattern = choose(p + "pattern", st.pattern)
            kinds = set(block_types(pattern, depth))
            window = None
            if "L" in pattern:
                assert st.window is not None  # validated: required by a pattern choice with L
                window = choose(p + "window", st.window) if "L" in kinds else st.window[0]
            sr = choose(p + "sr_ratio", st.sr_ratio) if "G" in kinds else st.sr_ratio[0]
            needs_subsample = "G" in kinds and sr != (1, 1)
            if st.subsample is not None:
                sub = choose(p + "subsample", st.subsample) if needs_subsample else st.subsample[0]
            else:
                sub = None
                if needs_subsample:
                    wide.append(i)
            stages.append(dict(patch_size=patch, depth=depth, embed_dim=dim, num_heads=heads,
                               mlp_ratio=float(mlp), window=window,
                               sr_ratio=sr[0] if sr[0] == sr[1] else sr, subsample=sub, pattern=pattern))
        common = choose("subsample", self.subsample) if wide else self.subsample[0]
        for s in stages:
            if s["subsample"] is None:
                s["subsample"] = common
        return ArchConfig(name=None, stages=stages, num_classes=self.num_classes, in_chans=self.in_chans)

    def sample(self, trial: Any) -> ArchConfig:
        """A full-size config from an Optuna trial (`trial.suggest_categorical` per choice)."""
        def pick(name: str, choices: list) -> Any:
            enc = [_encode_param(name, c) for c in choices]
            return choices[enc.index(trial.suggest_categorical(name, enc))]
        return self._assign(pick)

    def config_from_params(self, params: dict) -> ArchConfig:
        """Rebuild the config of a finished trial from its `trial.params` (extra keys ignored)."""
        def pick(name: str, choices: list) -> Any:
            if name not in params:
                raise ConfigError(f"params: missing {name!r} (space {self.name!r} needs it)")
            enc = [_encode_param(name, c) for c in choices]
            v = params[name]
            if v not in enc:
                raise ConfigError(f"params: {name}={_fmt(v)} is not a choice of space {self.name!r}; "
                                  f"valid: {', '.join(_fmt(e) for e in enc)}")
            return choices[enc.index(v)]
        return self._assign(pick)

    def random_config(self, rng: random.Random) -> ArchConfig:
        """A uniformly drawn config (each relevant choice drawn with `rng.choice`)."""
        return self._assign(lambda name, choices: rng.choice(choices))

    def params_of(self, cfg: ArchConfig) -> dict | None:
        """The trial params that make `sample` return `cfg` (for `study.enqueue_trial`), or
        None when `cfg` is not in the space. Name and classifier size are not compared."""
        want: dict[str, Any] = {}
        if len(cfg.stages) != len(self.stages) or cfg.in_chans != self.in_chans:
            return None
        wide = None
        for i, s in enumerate(cfg.stages):
            p = f"s{i}."
            want.update({p + "patch_size": s.patch_size, p + "depth": s.depth, p + "embed_dim": s.embed_dim,
                         p + "num_heads": s.num_heads, p + "mlp_ratio": s.mlp_ratio,
                         p + "head_dim": (s.embed_dim, s.num_heads),
                         p + "window": tuple(s.window) if s.window else None, p + "sr_ratio": s.sr_pair,
                         p + "subsample": s.subsample, p + "pattern": s.pattern})
            if wide is None and "G" in s.block_types and s.sr_pair != (1, 1):
                wide = s.subsample
        want["subsample"] = wide
        params: dict[str, Any] = {}

        class _Miss(Exception):
            pass

        def pick(name: str, choices: list) -> Any:
            w = want[name]
            if name.endswith(".head_dim"):  # any head_dim giving the same head count
                w = next((c for c in choices if heads_of(w[0], c) == w[1]), None)
            elif name.endswith(".pattern") and w not in choices:  # same blocks, other spelling
                depth = want[name.split(".")[0] + ".depth"]
                w = next((c for c in choices if _kinds(c, depth) == _kinds(w, depth)), None)
            if w not in choices:
                raise _Miss
            w = choices[choices.index(w)]
            params[name] = _encode_param(name, w)
            return w
        try:
            got = self._assign(pick)
        except (_Miss, ConfigError):
            return None
        return params if network_key(got) == network_key(cfg) else None

    def contains(self, cfg: ArchConfig) -> bool:
        """Whether the space can produce a network identical to `cfg` (name, classifier size
        and training-only fields are not compared; fields the network does not use either)."""
        return self.params_of(cfg) is not None

    def size(self) -> int:
        """Number of distinct networks in the space: configurations that differ only in a field
        the network does not use (e.g. the window of a stage without L blocks, or patterns
        LG / LGG at depth 2) count once."""
        def stage_keys(st: StageSpace, subs: list) -> set:
            keys = set()
            heads = st.head_dim if st.head_dim is not None else st.num_heads
            assert heads is not None  # exactly one of head_dim / num_heads (validated)
            for patch, depth, dim, h, mlp, pat in itertools.product(
                    st.patch_size, st.depth, st.embed_dim, heads, st.mlp_ratio, st.pattern):
                nh = heads_of(dim, h) if st.head_dim is not None else h
                kinds = _kinds(pat, depth)
                windows = st.window if "L" in kinds and st.window is not None else [None]
                srs = st.sr_ratio if "G" in kinds else [None]
                for w, sr in itertools.product(windows, srs):
                    for sub in (subs if sr not in (None, (1, 1)) else [None]):
                        keys.add((patch, depth, dim, nh, float(mlp), kinds, w, sr, sub))
            return keys

        per_stage = [stage_keys(st, st.subsample or self.subsample) for st in self.stages]
        if all(st.subsample is not None for st in self.stages):
            return math.prod(len(k) for k in per_stage)
        # model-wide sub-sampling couples the stages without their own choices: a network where
        # none of them sub-samples is the same for every choice; one where some does is distinct
        # per choice. Stages with their own choices are independent of it.
        own = math.prod(len(keys) for keys, st in zip(per_stage, self.stages) if st.subsample is not None)
        coupled = [keys for keys, st in zip(per_stage, self.stages) if st.subsample is None]
        free = [len({k for k in keys if k[-1] is None}) for keys in coupled]
        total = math.prod(free)
        for s in self.subsample:
            with_s = [f + len({k for k in keys if k[-1] == s}) for f, keys in zip(free, coupled)]
            total += math.prod(with_s) - math.prod(free)
        return own * total


def _renamed_sections(data: dict) -> dict:
    """A raw space mapping with the sections of their current names: ``fidelity:`` (successive
    halving) is ``halving:`` now; the old name is read with a note (`RenamedWarning`)."""
    if "fidelity" not in data:
        return data
    data = dict(data)
    if "halving" in data:
        raise ConfigError("fidelity and halving: the same section twice (fidelity is the old name of halving); "
                         "keep halving")
    warnings.warn("the section 'fidelity:' is now called 'halving:' (successive halving); 'fidelity:' still "
                  "reads the same", RenamedWarning, stacklevel=4)
    data["halving"] = data.pop("fidelity")
    return data


def _as_hashed(d: dict) -> dict:
    """A dumped space under the section names its hash has always used (``fidelity`` for
    ``halving``), so studies made before the rename continue."""
    d = dict(d)
    d["fidelity"] = d.pop("halving")
    return d


def _digest(d: dict) -> str:
    """sha256 (hex) of the canonical JSON of a dumped space."""
    return hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _encode_param(name: str, value: Any) -> Any:
    """JSON-primitive categorical value for a choice: windows '7x14', ratios 4 or '2x4'."""
    if name.endswith(".window"):
        return format_pair(value)
    if name.endswith(".sr_ratio"):
        return _encode_sr(value)
    return value


def network_key(cfg: ArchConfig) -> tuple:
    """What makes two configs the same network (ignoring name and classifier size): equal keys
    build the same network, so the report counts their trials as replicates of one architecture."""
    key: list[object] = [cfg.in_chans, cfg.qkv_bias, cfg.peg]
    for s in cfg.stages:
        kinds = tuple(s.block_types)
        sr = s.sr_pair if "G" in kinds else None
        key.append((s.patch_size, s.depth, s.embed_dim, s.num_heads, float(s.mlp_ratio), kinds,
                    s.window if "L" in kinds else None, sr,
                    s.subsample if sr not in (None, (1, 1)) else None))
    return tuple(key)


# ---- loading ------------------------------------------------------------------------------
def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class that validates the mapping at `loc` (for 'valid keys')."""
    if not loc:
        return SearchSpace
    if loc[0] == "stages" and len(loc) == 2:
        return StageSpace
    if loc[0] == "constraints" and len(loc) == 2:
        return Bound
    if len(loc) == 1:
        return SECTIONS.get(loc[0])
    return None


SECTIONS: dict[str, type[BaseModel]] = {"measure": MeasureSettings, "proxy": ProxySettings, "halving": HalvingSettings,
                                        "replicates": ReplicateSettings}


def format_space_error(err: ValidationError) -> str:
    """pydantic's report on a space as one line (see `errors.one_line`): `key.path=value:
    problem; valid ...`; a bad key of `objectives` / `constraints` lists the metrics."""
    def special(e: Mapping[str, Any], loc: tuple, rule: str) -> str | None:
        if "[key]" in loc:  # a bad dict key: objectives / constraints name metrics
            return f"{loc_str(loc[:loc.index('[key]')])}: unknown metric; valid metrics: {', '.join(METRICS)}"
        return None

    def valid_at(loc: tuple) -> list | None:
        model = _model_at(loc)
        return list(model.model_fields) if model else None

    return one_line(err, valid_at, special, noun="key")


def _schema_child(schema: Any, key: str, path: str) -> tuple[Any, Any]:
    """For an override path: the schema of child `key` and how to address it."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        if key not in schema.model_fields:
            raise ConfigError(f"{path}: unknown key; valid keys: {', '.join(schema.model_fields)}")
        if schema is SearchSpace and key == "stages":
            return ("list", StageSpace), key
        if schema is SearchSpace and key == "constraints":
            return ("dict", Bound), key
        if schema is SearchSpace and key == "objectives":
            return ("dict", None), key
        return SECTIONS.get(key) if schema is SearchSpace else None, key
    if isinstance(schema, tuple) and schema[0] == "dict":
        key = canonical_metric(key)
        if key not in METRICS:
            raise ConfigError(f"{path}: unknown metric; valid metrics: {', '.join(METRICS)}")
        return schema[1], key
    if isinstance(schema, tuple) and schema[0] == "list":
        if not key.lstrip("-").isdigit():
            raise ConfigError(f"{path}: expected a stage index")
        return schema[1], int(key)
    raise ConfigError(f"{path}: cannot set a key inside a value")


def apply_override(data: dict, override: str) -> None:
    """Apply one `key.path=value` (value parsed as YAML) to the raw space mapping in place;
    `stages.2.depth=[6,8]` and `stages[2].depth=[6,8]` are the same."""
    if "=" not in override:
        raise ConfigError(f"override {override!r}: expected key.path=value, e.g. proxy.epochs=1")
    key, _, raw = override.partition("=")
    parts = [p for p in re.split(r"[.\[\]]+", key.strip()) if p]
    if parts and parts[0] == "fidelity":  # the old name of the section
        parts[0] = "halving"
    if not parts:
        raise ConfigError(f"override {override!r}: empty key path")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        problem = " ".join(str(getattr(e, "problem", None) or e).split())  # one line, whatever YAML says
        raise ConfigError(f"override {override!r}: value is not valid YAML ({problem})") from None
    schema: Any = SearchSpace
    node: Any = data
    done: list = []
    for n, part in enumerate(parts):
        path = f"override {override!r}: " + loc_str(done + [int(part) if part.lstrip('-').isdigit() else part])
        if isinstance(schema, tuple) and schema[0] == "dict" and isinstance(node, dict):
            try:  # metric names: the file may use a legacy one that this override names anew
                renamed = _canonical_metric_keys(node, loc_str(done))
            except ValueError as e:
                raise ConfigError(str(e)) from None
            node.clear()
            node.update(renamed)
        schema, addr = _schema_child(schema, part, path)
        last = n == len(parts) - 1
        if isinstance(addr, int):
            if not isinstance(node, list) or not -len(node) <= addr < len(node):
                size = len(node) if isinstance(node, list) else 0
                raise ConfigError(f"{path}: no such stage; the space has {size} stages")
        elif not isinstance(node, dict):
            raise ConfigError(f"{path}: the parent is not a mapping")
        if last:
            node[addr] = value
        else:
            if isinstance(addr, str) and not isinstance(node.get(addr), (dict, list)):
                node[addr] = {}
            node = node[addr]
        done.append(addr)


def space_from_dict(data: Any, source: str = "<memory>", overrides: Sequence[str] = ()) -> SearchSpace:
    """Validate a raw mapping (as read from YAML) into a `SearchSpace`; errors are one-line
    `ConfigError`s prefixed with `source`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a search space must be a YAML mapping, got {type(data).__name__}")
    data = copy.deepcopy(data)  # a private copy for the overrides
    try:
        data = _renamed_sections(data)
        for o in overrides:
            apply_override(data, o)
        space = SearchSpace(**data)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    except ValidationError as e:
        raise ConfigError(f"{source}: {format_space_error(e)}") from None
    space._source = source
    return space


def load_space(path: str | Path, overrides: Sequence[str] = (), data_root: str | Path | None = None) -> SearchSpace:
    """Read and validate a search-space YAML file; `overrides` are `key.path=value` strings
    (value parsed as YAML): `proxy.epochs=1`, `stages.2.depth=[6,8]`, `constraints.gmacs.max=3`;
    `data_root` (where the proxy data set lives) sets `proxy.data_root` after them.
    Every problem raises a one-line `ConfigError` naming the file and the key path."""
    if data_root is not None:
        overrides = [*overrides, f"proxy.data_root={json.dumps(str(data_root))}"]
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ConfigError(f"{path}: not valid YAML ({problem}{where})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    return space_from_dict(data, source=str(path), overrides=overrides)
