"""Closed-form cost model of `twins.py`: parameters and multiply-adds from the config alone.

No model is built, so a count takes microseconds (the search calls it for every trial).
The FLOP convention is fvcore's (what `twins_nas.profile.count_flops` measures by tracing),
so the two agree exactly, for any valid config and any input size (H and W independent):

* one fused multiply-add = 1; only the matmul-like ops count: linear, conv (bias ignored),
  and the two attention matmuls Q·Kᵀ and A·V (fvcore 0.1.5 skips attention; count_flops
  adds a handle for it). Softmax, the attention mask, GELU, residual adds, padding, average
  pooling and the final mean count 0.
* LayerNorm counts 5 per element (fvcore's `norm_flop_counter` with an affine weight).

Every function below mirrors one module of `twins.py`; B = batch, (H, W) = the module's
token map, C = channels, N = H * W tokens. Keep them in step with the model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, overload

from ..config import ArchConfig, StageConfig
from ..sizes import Resolution, Size, as_size

# The categories of `FlopReport.by_category`, in display order.
CATEGORIES = ("patch_embed", "peg", "attn_qkv", "attn_q", "attn_kv", "attn_proj", "lsa_matmul", "gsa_matmul",
              "gsa_subsample", "mlp", "norm", "head")

NORM_MACS_PER_ELEMENT = 5  # fvcore counts an affine LayerNorm as 5 ops per element


@dataclass(frozen=True)
class FlopReport:
    """Multiply-adds of one forward pass, split by what computes them.

    `by_category` holds the categories of the Twins network (every one present, zeros
    included): patch_embed (stem/patch convs), peg (position convs), attn_qkv (LSA qkv linear),
    attn_q / attn_kv (GSA q and kv linears), attn_proj (output projection, both kinds),
    lsa_matmul / gsa_matmul (Q·Kᵀ + A·V of LSA / GSA blocks; GSA with k = 1 is global
    attention), gsa_subsample (GSA's sub-sampling conv(s); average pooling counts 0),
    mlp (fc1 + fc2), norm (every LayerNorm: blocks, patch embeddings, after the
    sub-sampling, final) and head (classifier).

    `parts`: {part: {category: MACs}} of a model built from separately counted parts, a
    backbone with a dense head (`head_cost`): backbone (= `by_category`, without final norm and
    classifier), neck and head, with their own categories. The classifier is one network:
    `parts` is empty and `by_category` sums to `total`.
    """

    total: int
    by_category: dict[str, int]
    parts: dict[str, dict[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.parts:
            n = sum(v for part in self.parts.values() for v in part.values())
            if n != self.total:
                raise ValueError(f"parts sum to {n}, not total={self.total}")
        elif sum(self.by_category.values()) != self.total:
            raise ValueError(f"by_category sums to {sum(self.by_category.values())}, not total={self.total}")

    @property
    def gmacs(self) -> float:
        return self.total / 1e9

    @property
    def attention(self) -> int:
        """MACs of the attention matmuls (LSA + GSA)."""
        return self.by_category.get("lsa_matmul", 0) + self.by_category.get("gsa_matmul", 0)

    @property
    def part_totals(self) -> dict[str, int]:
        """MACs of each part, {part: MACs} ({} for the classifier: one network)."""
        return {name: sum(cats.values()) for name, cats in self.parts.items()}

    @property
    def backbone(self) -> FlopReport:
        """The Twins network alone (`by_category`) as a report without parts."""
        return FlopReport(total=sum(self.by_category.values()), by_category=dict(self.by_category))

    @property
    def neck(self) -> dict[str, int]:
        """{category: MACs} of the neck of a dense model ({} without one)."""
        return dict(self.parts.get("neck", {}))

    @property
    def head(self) -> dict[str, int]:
        """{category: MACs} of the dense head ({} for the classifier, counted in `by_category`)."""
        return dict(self.parts.get("head", {}))

    @property
    def neck_total(self) -> int:
        return sum(self.neck.values())

    @property
    def head_total(self) -> int:
        return sum(self.head.values())

    def to_dict(self) -> dict:
        return {"total": self.total, "by_category": dict(self.by_category),
                "parts": {name: dict(cats) for name, cats in self.parts.items()}}

    @classmethod
    def from_categories(cls, by_category: dict[str, int]) -> FlopReport:
        """A report without parts from {category: MACs}: unknown categories raise ValueError,
        missing ones count 0."""
        cats = {c: 0 for c in CATEGORIES}
        for c, v in by_category.items():
            if c not in cats:
                raise ValueError(f"unknown FLOP category {c!r}; expected one of {', '.join(CATEGORIES)}")
            cats[c] += int(v)
        return cls(total=sum(cats.values()), by_category=cats)


def _norm(B: int, tokens: int, C: int) -> int:
    return NORM_MACS_PER_ELEMENT * B * tokens * C


# ---- one function per module of twins.py ----------------------------------------------
# Each returns {category: MACs}.

def patch_embed_flops(B: int, in_size: Size, c_in: int, stage: StageConfig) -> dict[str, int]:
    """PatchEmbed: conv p x p stride p, (B, c_in, H, W) -> (B, C, H//p, W//p) (floors), then LN."""
    p, C = stage.patch_size, stage.embed_dim
    N = (in_size[0] // p) * (in_size[1] // p)
    return {"patch_embed": B * N * C * c_in * p * p, "norm": _norm(B, N, C)}


def lsa_flops(B: int, size: Size, stage: StageConfig) -> dict[str, int]:
    """LocallyGroupedAttn on (B, N, C) tokens of an H x W map.

    qkv linear on the N real tokens (it runs before padding): N*C*3C.
    The map is padded to Hp x Wp (multiples of the clamped m x n window) and every padded
    token takes part in the matmuls: per window and head, Q·Kᵀ and A·V are (mn x hd)·(hd x mn),
    so 2 * (Hp*Wp/mn windows) * h * (mn)^2 * hd = 2 * Hp*Wp * mn * C.
    proj on the N real tokens: N*C*C.
    """
    (H, W), C = size, stage.embed_dim
    m, n = stage.lsa_window(size)
    Hp, Wp = math.ceil(H / m) * m, math.ceil(W / n) * n
    N = H * W
    return {"attn_qkv": B * N * C * 3 * C,
            "lsa_matmul": 2 * B * Hp * Wp * m * n * C,
            "attn_proj": B * N * C * C}


def gsa_flops(B: int, size: Size, stage: StageConfig) -> dict[str, int]:
    """GlobalSubSampleAttn on (B, N, C) tokens of an H x W map, sub-sampled by k1 x k2.

    q linear: N*C*C. Sub-sampling (k != 1): the map is padded to multiples of k (for the
    convs), giving M = ceil(H/k1) * ceil(W/k2) key tokens:
      conv   (C, C, k1, k2): M*C*C*k1*k2
      dwconv depthwise (C, 1, k1, k2) + pointwise (C, C, 1, 1): M*C*k1*k2 + M*C*C
      avgpool (ceil_mode): 0
    then LayerNorm on (B, M, C). k = 1: M = N, no sub-sampling, no norm.
    kv linear: M*C*2C. Matmuls: Q·Kᵀ and A·V, each h * N*M*hd = N*M*C. proj: N*C*C.
    """
    (H, W), C = size, stage.embed_dim
    k1, k2 = stage.sr_pair
    N = H * W
    out = {"attn_q": B * N * C * C}
    if (k1, k2) == (1, 1):
        M = N
    else:
        M = math.ceil(H / k1) * math.ceil(W / k2)
        if stage.subsample == "conv":
            out["gsa_subsample"] = B * M * C * C * k1 * k2
        elif stage.subsample == "dwconv":
            out["gsa_subsample"] = B * M * C * k1 * k2 + B * M * C * C
        else:  # avgpool
            out["gsa_subsample"] = 0
        out["norm"] = _norm(B, M, C)
    out.update(attn_kv=B * M * C * 2 * C, gsa_matmul=2 * B * N * M * C, attn_proj=B * N * C * C)
    return out


def mlp_flops(B: int, size: Size, stage: StageConfig) -> dict[str, int]:
    """Mlp: fc1 (C -> hidden) + fc2 (hidden -> C) on N tokens; GELU counts 0."""
    N, C = size[0] * size[1], stage.embed_dim
    return {"mlp": 2 * B * N * C * stage.mlp_hidden}


def block_flops(B: int, size: Size, stage: StageConfig, kind: str) -> dict[str, int]:
    """Block: norm1 -> LSA or GSA -> norm2 -> Mlp (residual adds count 0)."""
    N, C = size[0] * size[1], stage.embed_dim
    attn = lsa_flops(B, size, stage) if kind == "L" else gsa_flops(B, size, stage)
    return _add({"norm": 2 * _norm(B, N, C)}, attn, mlp_flops(B, size, stage))


def peg_flops(B: int, size: Size, stage: StageConfig) -> dict[str, int]:
    """PosConv: depthwise 3x3 conv (C, 1, 3, 3), padding 1, on the H x W map (+ residual)."""
    return {"peg": B * size[0] * size[1] * stage.embed_dim * 9}


def classifier_flops(B: int, size: Size, cfg: ArchConfig) -> dict[str, int]:
    """The classifier head of `Twins` on the last map: final LN on its tokens, mean over tokens
    (0), Linear C -> num_classes."""
    C = cfg.stages[-1].embed_dim
    return {"norm": _norm(B, size[0] * size[1], C), "head": B * C * cfg.num_classes}


def _add(*parts: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in parts:
        for k, v in p.items():
            out[k] = out.get(k, 0) + v
    return out


def stage_parts(cfg: ArchConfig, resolution: Resolution, batch: int = 1) -> list[list[dict[str, int]]]:
    """Per stage, {category: MACs} of each of its modules in order: the patch embedding, the
    blocks, the PEG (everything up to `forward_features`)."""
    in_size = as_size(resolution)
    sizes = cfg.stage_sizes(in_size)
    out = []
    c_in = cfg.in_chans
    for stage, size, prev in zip(cfg.stages, sizes, [in_size] + sizes[:-1]):
        parts = [patch_embed_flops(batch, prev, c_in, stage)]
        parts.extend(block_flops(batch, size, stage, kind) for kind in stage.block_types)
        if cfg.peg:
            parts.append(peg_flops(batch, size, stage))
        out.append(parts)
        c_in = stage.embed_dim
    return out


def backbone_parts(cfg: ArchConfig, resolution: Resolution, batch: int = 1) -> list[dict[str, int]]:
    """{category: MACs} of every module up to `forward_features`, in order (`stage_parts`
    flattened); `classifier_flops` adds the classifier's part."""
    return [p for parts in stage_parts(cfg, resolution, batch) for p in parts]


def stage_macs(cfg: ArchConfig, resolution: Resolution, batch: int = 1) -> list[int]:
    """Every MAC of each stage (patch embedding, blocks, PEG)."""
    return [sum(v for p in parts for v in p.values()) for parts in stage_parts(cfg, resolution, batch)]


def analytic_flops(cfg: ArchConfig, resolution: Resolution, batch: int = 1) -> FlopReport:
    """Multiply-adds of the classifier `build_model(cfg)` on a (batch, in_chans, H, W) input,
    in fvcore's convention. `resolution` is an int (square) or (H, W). Raises ConfigError when
    it is too small. `twins_nas.profile.analytic_flops` (`head_cost`) also takes a head."""
    last = cfg.stage_sizes(as_size(resolution))[-1]
    return FlopReport.from_categories(_add(*backbone_parts(cfg, resolution, batch), classifier_flops(batch, last, cfg)))


def analytic_gmacs(cfg: ArchConfig, resolution: Resolution, batch: int = 1) -> float:
    """GMACs (1e9 multiply-adds) of `cfg` at `resolution`: `analytic_flops(...).gmacs`."""
    return analytic_flops(cfg, resolution, batch).gmacs


def attention_share(cfg: ArchConfig, resolution: Resolution) -> float:
    """Fraction of the MACs spent in the attention matmuls (LSA + GSA)."""
    rep = analytic_flops(cfg, resolution)
    return rep.attention / rep.total if rep.total else 0.0


# ---- parameters ------------------------------------------------------------------------

def _linear(c_in: int, c_out: int, bias: bool = True) -> int:
    return c_in * c_out + (c_out if bias else 0)


def _layer_norm(C: int) -> int:
    return 2 * C


def patch_embed_params(c_in: int, stage: StageConfig) -> int:
    """Conv (C, c_in, p, p) + bias, LayerNorm(C)."""
    p, C = stage.patch_size, stage.embed_dim
    return C * c_in * p * p + C + _layer_norm(C)


def lsa_params(stage: StageConfig, qkv_bias: bool) -> int:
    """qkv Linear(C, 3C), proj Linear(C, C)."""
    C = stage.embed_dim
    return _linear(C, 3 * C, qkv_bias) + _linear(C, C)


def gsa_params(stage: StageConfig, qkv_bias: bool) -> int:
    """q Linear(C, C), kv Linear(C, 2C), proj Linear(C, C); with k != 1 the sub-sampling
    (conv (C, C, k1, k2) + bias | depthwise (C, 1, k1, k2) + pointwise (C, C, 1, 1) + bias |
    avgpool: none) and LayerNorm(C)."""
    C = stage.embed_dim
    k1, k2 = stage.sr_pair
    n = _linear(C, C, qkv_bias) + _linear(C, 2 * C, qkv_bias) + _linear(C, C)
    if (k1, k2) != (1, 1):
        n += {"conv": C * C * k1 * k2 + C, "dwconv": C * k1 * k2 + C * C + C, "avgpool": 0}[stage.subsample]
        n += _layer_norm(C)
    return n


def mlp_params(stage: StageConfig) -> int:
    C, hidden = stage.embed_dim, stage.mlp_hidden
    return _linear(C, hidden) + _linear(hidden, C)


def block_params(stage: StageConfig, kind: str, qkv_bias: bool) -> int:
    attn = lsa_params(stage, qkv_bias) if kind == "L" else gsa_params(stage, qkv_bias)
    return 2 * _layer_norm(stage.embed_dim) + attn + mlp_params(stage)


def peg_params(stage: StageConfig) -> int:
    """Depthwise conv (C, 1, 3, 3) + bias."""
    return 10 * stage.embed_dim


def classifier_params(cfg: ArchConfig) -> int:
    """The classifier head of `Twins`: final LayerNorm + classifier (none when num_classes = 0)."""
    C = cfg.stages[-1].embed_dim
    return _layer_norm(C) + (_linear(C, cfg.num_classes) if cfg.num_classes > 0 else 0)


@overload
def analytic_params(cfg: ArchConfig, by_stage: Literal[False] = False) -> int: ...
@overload
def analytic_params(cfg: ArchConfig, by_stage: Literal[True]) -> list[int]: ...
@overload
def analytic_params(cfg: ArchConfig, by_stage: bool) -> int | list[int]: ...
def analytic_params(cfg: ArchConfig, by_stage: bool = False) -> int | list[int]:
    """Parameters of the classifier `build_model(cfg)`, exactly (`twins_nas.profile.analytic_params`
    also takes a head). With `by_stage`, one count per stage (its patch embedding, blocks and
    PEG); the final norm and head belong to no stage, so
    `sum(by_stage) + classifier_params(cfg)` is the total."""
    stages = []
    c_in = cfg.in_chans
    for s in cfg.stages:
        n = patch_embed_params(c_in, s) + sum(block_params(s, k, cfg.qkv_bias) for k in s.block_types)
        if cfg.peg:
            n += peg_params(s)
        stages.append(n)
        c_in = s.embed_dim
    return stages if by_stage else sum(stages) + classifier_params(cfg)
