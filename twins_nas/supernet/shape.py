"""What the supernet of a space must hold: per stage the widest proxy width and MLP, the
deepest depth, the proxy patch sizes, and per block the GSA sub-samplers its subnets use.

Everything is read off proxy configs (`proxy_of`) of probe configs of the space, so the
supernet follows the proxy's own rules (head rounding, faithful geometry) without restating
them. A stage's width and MLP depend only on its own choices; its patch sizes and GSA ratios
on every stage's patch sizes (the map sizes); so the probes vary one stage's width choices,
or every combination of patch sizes with one stage's ratio and sub-sampling choices.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from ..config import block_types
from ..search.proxy.network import proxy_of
from ..search.space.space import SearchSpace
from .choices import by_index, config_by

Sampler = tuple[str, int, int]  # (sub-sampling function, k1, k2) of a GSA block with k != (1, 1)


@dataclass(frozen=True)
class StageShape:
    """One stage of the supernet (proxy sizes)."""

    width: int                                 # the widest proxy embed_dim of the stage
    hidden: int                                # the widest proxy MLP hidden
    depth: int                                 # the most blocks
    patches: tuple[int, ...]                   # the proxy patch sizes of the stage's embedding
    samplers: tuple[tuple[Sampler, ...], ...]  # per block: the GSA sub-samplers it may run


@dataclass(frozen=True)
class SupernetShape:
    """The whole supernet: its stages and what every subnet shares (input channels, classes,
    qkv bias, PEG)."""

    in_chans: int
    num_classes: int
    qkv_bias: bool
    peg: bool
    stages: tuple[StageShape, ...]


def _sampler_key(s: Sampler) -> str:
    return f"{s[0]}_{s[1]}x{s[2]}"


def sampler_name(function: str, k: tuple[int, int]) -> str:
    """The module name of a sub-sampler: 'conv_2x2', 'dwconv_2x4', 'avgpool_2x2'."""
    return _sampler_key((function, k[0], k[1]))


def supernet_shape(space: SearchSpace) -> SupernetShape:
    """The shape of the supernet of `space` (see the module docstring)."""
    first = proxy_of(config_by(space, by_index({})), space)
    n = len(space.stages)
    widths, hiddens = [0] * n, [0] * n
    patches: list[set[int]] = [set() for _ in range(n)]
    samplers: list[set[Sampler]] = [set() for _ in range(n)]
    for i, st in enumerate(space.stages):
        p = f"s{i}."
        heads = (p + "head_dim", st.head_dim) if st.head_dim is not None else (p + "num_heads", st.num_heads)
        assert heads[1] is not None  # exactly one of head_dim / num_heads (validated)
        for a, b, c in itertools.product(range(len(st.embed_dim)), range(len(heads[1])), range(len(st.mlp_ratio))):
            stage = proxy_of(config_by(space, by_index({p + "embed_dim": a, heads[0]: b, p + "mlp_ratio": c})),
                             space).stages[i]
            widths[i], hiddens[i] = max(widths[i], stage.embed_dim), max(hiddens[i], stage.mlp_hidden)
    patch_names = [f"s{i}.patch_size" for i in range(n)]
    for combo in itertools.product(*(range(len(st.patch_size)) for st in space.stages)):
        base = dict(zip(patch_names, combo))
        pcfg = proxy_of(config_by(space, by_index(base)), space)
        for i, s in enumerate(pcfg.stages):
            patches[i].add(s.patch_size)
        for i, st in enumerate(space.stages):
            p = f"s{i}."
            global_pattern = next((j for j, pat in enumerate(st.pattern)
                                   if "G" in block_types(pat, max(st.depth))), None)
            if global_pattern is None:
                continue
            sub_name = p + "subsample" if st.subsample is not None else "subsample"
            subs = st.subsample if st.subsample is not None else space.subsample
            for k, f in itertools.product(range(len(st.sr_ratio)), range(len(subs))):
                indices = {**base, p + "depth": st.depth.index(max(st.depth)), p + "pattern": global_pattern,
                           p + "sr_ratio": k, sub_name: f}
                s = proxy_of(config_by(space, by_index(indices)), space).stages[i]
                if s.sr_pair != (1, 1):
                    samplers[i].add((s.subsample, *s.sr_pair))
    stages = []
    for i, st in enumerate(space.stages):
        depth = max(st.depth)
        can_global = [any(j < d and block_types(pat, d)[j] == "G" for pat in st.pattern for d in st.depth)
                      for j in range(depth)]
        per_block = tuple(tuple(sorted(samplers[i])) if g else () for g in can_global)
        stages.append(StageShape(width=widths[i], hidden=hiddens[i], depth=depth,
                                 patches=tuple(sorted(patches[i])), samplers=per_block))
    return SupernetShape(in_chans=first.in_chans, num_classes=first.num_classes, qkv_bias=first.qkv_bias,
                         peg=first.peg, stages=tuple(stages))
