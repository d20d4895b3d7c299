"""The building blocks a network's forward runs, as plain keys: what a latency table times
and a predictor adds up. Pure Python (no torch, no model built).

A Twins forward at an input of H x W pixels runs, per stage, its patch embedding, its
blocks (LSA `L` with the window clamped to the map, or GSA `G` with its sub-sample ratio k
and sub-sampler, none when k = 1x1) and, after the first block, the PEG; then either the
classifier tail (final norm, mean over the tokens, Linear) or a dense head. A dense head is
split into the parts that depend on one stage's width (Semantic FPN's 1x1 lateral convs;
UperNet's lateral ConvModules and its pyramid pooling + bottleneck on the last map) and a
remainder that depends only on the head config and the map sizes (top-down pass, 3x3 convs,
the decoder, the final resize).

`model_blocks(cfg, size, batch, head)` lists the blocks one config runs, in order (a block
that runs twice is listed twice); `space_blocks(space)` is the set of blocks any config of a
space can run at its measured size, batch and head.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from ...config import ArchConfig, block_types, clamp_window
from ...models.head_config import DenseHead, UperNetConfig, stage_strides
from ...sizes import Size, as_size
from ..space.space import SearchSpace, heads_of

Param = tuple[str, int | str]

# a block's kind: what the table builder turns into a module
EMBED, LSA, GSA, PEG, CLASSIFIER = "embed", "L", "G", "peg", "classifier"
FPN_LATERAL, FPN_REST = "fpn-lateral", "fpn-rest"
UPER_LATERAL, UPER_PSP, UPER_REST = "upernet-lateral", "upernet-psp", "upernet-rest"
KINDS = (EMBED, LSA, GSA, PEG, CLASSIFIER, FPN_LATERAL, FPN_REST, UPER_LATERAL, UPER_PSP, UPER_REST)


def _pair(p: Size) -> str:
    return f"{p[0]}x{p[1]}"


@dataclass(frozen=True)
class BlockKey:
    """One building block at one map size and batch. `params` are its (name, value) pairs in
    a fixed order; `size` is the map it runs on ((H, W) tokens; for a patch embedding the map
    it reads, for a dense head's remainder the input image); `maps` are the stage maps a dense
    head's remainder reads. `id` is its canonical string (the table's JSON key)."""

    kind: str
    params: tuple[Param, ...]
    size: Size
    batch: int
    maps: tuple[Size, ...] = ()

    @property
    def id(self) -> str:
        maps = f" maps={','.join(_pair(m) for m in self.maps)}" if self.maps else ""
        params = "".join(f" {k}={v}" for k, v in self.params)
        return f"{self.kind}{params}{maps} @{_pair(self.size)} b{self.batch}"

    def param(self, name: str) -> int | str:
        return dict(self.params)[name]

    def describe(self) -> str:
        """The block in words, e.g. 'G block dim=96 heads=3 mlp=384 k=4x4 dwconv at 28x28 (batch 8)'."""
        what = {LSA: "L block", GSA: "G block", EMBED: "patch embedding", PEG: "PEG", CLASSIFIER: "classifier tail",
                FPN_LATERAL: "Semantic FPN lateral conv", FPN_REST: "Semantic FPN neck and head",
                UPER_LATERAL: "UperNet lateral conv", UPER_PSP: "UperNet pyramid pooling",
                UPER_REST: "UperNet fusion and head"}.get(self.kind, self.kind)
        params = " ".join(str(v) if k == "sub" else f"{k}={v}" for k, v in self.params)
        maps = f" over maps {', '.join(_pair(m) for m in self.maps)}" if self.maps else ""
        return f"{what} {params}{maps} at {_pair(self.size)} (batch {self.batch})"

    def to_dict(self) -> dict:
        d: dict = {"kind": self.kind, "params": {k: v for k, v in self.params}, "size": list(self.size),
                   "batch": self.batch}
        if self.maps:
            d["maps"] = [list(m) for m in self.maps]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BlockKey:
        """The key `to_dict` wrote (KeyError / TypeError / ValueError on anything else)."""
        return cls(kind=str(d["kind"]), params=tuple((str(k), v) for k, v in dict(d["params"]).items()),
                   size=(int(d["size"][0]), int(d["size"][1])), batch=int(d["batch"]),
                   maps=tuple((int(m[0]), int(m[1])) for m in d.get("maps", ())))


# ---- one block of each kind -------------------------------------------------------------------
def embed_key(in_ch: int, out_ch: int, patch: int, size: Size, batch: int, tokens: bool) -> BlockKey:
    """Patch embedding reading a map of `size`: the image (`tokens` False) or the previous
    stage's tokens (viewed as a map, as the forward does)."""
    return BlockKey(EMBED, (("in", in_ch), ("out", out_ch), ("patch", patch), ("src", "tokens" if tokens else "image")),
                    size, batch)


def _attn_params(dim: int, heads: int, mlp: int, bias: bool) -> tuple[Param, ...]:
    return (("dim", dim), ("heads", heads), ("mlp", mlp)) + ((("bias", 0),) if not bias else ())


def lsa_key(dim: int, heads: int, mlp: int, window: Size, size: Size, batch: int, bias: bool = True) -> BlockKey:
    """An L block; `window` as configured (clamped to the map here)."""
    return BlockKey(LSA, _attn_params(dim, heads, mlp, bias) + (("win", _pair(clamp_window(window, size))),),
                    size, batch)


def gsa_key(dim: int, heads: int, mlp: int, sr: Size, sub: str, size: Size, batch: int,
            bias: bool = True) -> BlockKey:
    """A G block; k = 1x1 has no sub-sampler (whatever `sub` says)."""
    extra: tuple[Param, ...] = (("k", _pair(sr)),) + ((("sub", sub),) if tuple(sr) != (1, 1) else ())
    return BlockKey(GSA, _attn_params(dim, heads, mlp, bias) + extra, size, batch)


def peg_key(dim: int, size: Size, batch: int) -> BlockKey:
    return BlockKey(PEG, (("dim", dim),), size, batch)


def classifier_key(dim: int, classes: int, size: Size, batch: int) -> BlockKey:
    return BlockKey(CLASSIFIER, (("dim", dim), ("classes", classes)), size, batch)


def head_lateral_keys(head: DenseHead, stage: int, stages: int, dim: int, size: Size, batch: int) -> list[BlockKey]:
    """The parts of a dense head that read stage `stage` (of `stages`) directly."""
    if isinstance(head, UperNetConfig):
        if stage == stages - 1:
            return [BlockKey(UPER_PSP, (("in", dim), ("ch", head.channels),
                                        ("pools", "-".join(map(str, head.pool_scales)))), size, batch)]
        return [BlockKey(UPER_LATERAL, (("in", dim), ("ch", head.channels)), size, batch)]
    return [BlockKey(FPN_LATERAL, (("in", dim), ("ch", head.neck_channels)), size, batch)]


def head_rest_key(head: DenseHead, maps: Iterable[Size], strides: Iterable[int], image: Size, batch: int) -> BlockKey:
    """What a dense head runs beyond its per-stage parts: the maps' sizes, the stage strides
    (the FPN head's chain lengths) and the input size fix it."""
    strides_s = "-".join(map(str, strides))
    if isinstance(head, UperNetConfig):
        return BlockKey(UPER_REST, (("ch", head.channels), ("classes", head.num_classes), ("strides", strides_s)),
                        image, batch, tuple(maps))
    return BlockKey(FPN_REST, (("neck", head.neck_channels), ("ch", head.channels), ("classes", head.num_classes),
                               ("strides", strides_s)), image, batch, tuple(maps))


# ---- a config ---------------------------------------------------------------------------------
def model_blocks(cfg: ArchConfig, size: int | Size, batch: int, head: DenseHead | None = None) -> list[BlockKey]:
    """The blocks `cfg`'s forward runs on `batch` inputs of `size` (n or (H, W)) pixels, in
    order, with the classifier tail or the dense `head`. ConfigError when a map would be empty."""
    image = as_size(size)
    maps = cfg.stage_sizes(image)
    out: list[BlockKey] = []
    prev, prev_size = cfg.in_chans, image
    for i, (s, m) in enumerate(zip(cfg.stages, maps)):
        out.append(embed_key(prev, s.embed_dim, s.patch_size, prev_size, batch, tokens=i > 0))
        for j, kind in enumerate(s.block_types):
            if kind == "L":
                assert s.window is not None  # validated: a stage with L blocks has a window
                out.append(lsa_key(s.embed_dim, s.num_heads, s.mlp_hidden, s.window, m, batch, cfg.qkv_bias))
            else:
                out.append(gsa_key(s.embed_dim, s.num_heads, s.mlp_hidden, s.sr_pair, s.subsample, m, batch,
                                   cfg.qkv_bias))
            if j == 0 and cfg.peg:
                out.append(peg_key(s.embed_dim, m, batch))
        prev, prev_size = s.embed_dim, m
    if head is None:
        out.append(classifier_key(prev, cfg.num_classes, prev_size, batch))
        return out
    for i, (s, m) in enumerate(zip(cfg.stages, maps)):
        out += head_lateral_keys(head, i, len(cfg.stages), s.embed_dim, m, batch)
    out.append(head_rest_key(head, maps, stage_strides([s.patch_size for s in cfg.stages]), image, batch))
    return out


# ---- a space ----------------------------------------------------------------------------------
def space_blocks(space: SearchSpace) -> set[BlockKey]:
    """Every block a config of `space` can run at `space.measure_size`, `measure.batch_size`
    and with `measure.head`: exactly the union of `model_blocks` over all its configs.

    A stage's blocks depend on its own choices and on the map it reads and its width, which
    the earlier stages' patch sizes and widths fix: the stages are walked with the set of
    (input width, map sizes so far, strides so far) they can be reached with. Within a stage an
    L block occurs for every window when some (pattern, depth) choice has one, a G block for
    every ratio k when some has one; k = 1x1 has no sub-sampler, else every sub-sampling
    function of the stage (its own list or the model-wide one) occurs."""
    image, batch, head = space.measure_size, space.measure.batch_size, space.measure.head_config
    out: set[BlockKey] = set()
    # (width in, sizes of the stage maps so far, strides so far)
    states: set[tuple[int, tuple[Size, ...], tuple[int, ...]]] = {(space.in_chans, (), ())}
    n = len(space.stages)
    for i, st in enumerate(space.stages):
        subs = st.subsample or space.subsample
        heads_choices = st.head_dim if st.head_dim is not None else st.num_heads
        assert heads_choices is not None  # exactly one of head_dim / num_heads (validated)
        nxt: set[tuple[int, tuple[Size, ...], tuple[int, ...]]] = set()
        kinds_seen = {frozenset(block_types(p, d)) for p, d in itertools.product(st.pattern, st.depth)}
        has_l = any("L" in k for k in kinds_seen)
        has_g = any("G" in k for k in kinds_seen)
        for (prev, maps, strides), patch in itertools.product(states, st.patch_size):
            src = maps[-1] if maps else image
            m = (src[0] // patch, src[1] // patch)
            stride = (strides[-1] if strides else 1) * patch
            for dim in st.embed_dim:
                out.add(embed_key(prev, dim, patch, src, batch, tokens=i > 0))
                out.add(peg_key(dim, m, batch))
                for h, ratio in itertools.product(heads_choices, st.mlp_ratio):
                    heads = heads_of(dim, h) if st.head_dim is not None else h
                    mlp = int(dim * ratio)
                    if has_l:
                        assert st.window is not None  # validated: required by a pattern choice with L
                        out.update(lsa_key(dim, heads, mlp, w, m, batch) for w in st.window)
                    if has_g:
                        for sr in st.sr_ratio:
                            out.update(gsa_key(dim, heads, mlp, sr, sub, m, batch)
                                       for sub in (subs if sr != (1, 1) else subs[:1]))
                if head is None:
                    if i == n - 1:
                        out.add(classifier_key(dim, space.num_classes, m, batch))
                else:
                    out.update(head_lateral_keys(head, i, n, dim, m, batch))
                nxt.add((dim, maps + (m,), strides + (stride,)))
        states = nxt
    if head is not None:
        out.update(head_rest_key(head, maps, strides, image, batch) for _, maps, strides in states)
    return out
