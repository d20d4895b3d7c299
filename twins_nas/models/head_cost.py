"""Closed-form cost of the model `build_model(cfg, head=head)` builds, params and
multiply-adds from the config alone (no model is built): `analytic_flops` and
`analytic_params` take the head as data (None: the classifier, whose count is `cost_model`'s;
a `HeadConfig` / `UperNetConfig` or its name: a Twins backbone with the Semantic FPN or the
UperNet of `segmentation.py`).

fvcore's convention, as in `cost_model.py` (1 per multiply-add, conv bias ignored, LayerNorm
5 per element), with fvcore's own handles for the ops the head adds: eval BatchNorm counts 2
per input element (affine), a nearest upsample 1 per output element, a bilinear upsample 4 per
output element, an adaptive average pool 1 per input element; ReLU, dropout and concatenation
count 0. `twins_nas.profile.count_flops` measures the
same by tracing, and the two agree exactly for any config and input size.

Map sizes are tracked exactly: stage maps floor (H_i = H_{i-1} // p_i), a x2 upsample doubles
(2h x 2w), and every resize goes to the size of level 0's map or of the input; a resize to the
size a map already has is skipped (and costs 0).

Categories (every one present in a report, zeros included):

* neck: `lateral` (1x1 lateral convs), `top_down` (nearest upsamples of the top-down pass),
  `fpn_conv` (3x3 output convs);
* head: `conv` (3x3 convs of the scale heads), `norm` (their BatchNorms), `upsample` (the x2
  bilinear upsamples inside the scale heads and the bilinear resizes of levels 1.. to level
  0's size), `cls` (`conv_seg`, 1x1 to num_classes), `resize` (the final bilinear resize of
  the logits to the input size).

UperNet (mmseg has no neck, everything is its UPerHead; the split here puts the feature
pyramid in the neck and the fusion in the head):

* neck: `ppm_pool` (the PPM's adaptive average pools), `ppm_conv` (its 1x1 ConvModules),
  `ppm_upsample` (its bilinear resizes back to the last map's size), `bottleneck` (the 3x3
  conv after the PPM), `lateral` (1x1 lateral convs), `top_down` (bilinear resizes of the
  top-down pass), `fpn_conv` (3x3 convs), `norm` (the BatchNorms of all of these);
* head: `upsample` (levels 1.. resized to level 0's size), `conv` (`fpn_bottleneck`), `norm`
  (its BatchNorm), `cls`, `resize`, as for Semantic FPN.

The auxiliary FCNHead (`aux`) is not run at inference and so not in these counts; its MACs,
were it run, are `aux_head_flops`, its parameters the `aux` part of `param_parts`.

B = batch, (h, w) = a map's size, C = channels.
"""
from __future__ import annotations

from typing import Literal, overload

from ..config import ArchConfig
from ..sizes import Resolution, Size, as_size
from . import cost_model
from .cost_model import FlopReport, _add, backbone_parts
from .head_config import DenseHead, HeadConfig, UperNetConfig, aux_stage, head_config, head_lengths, stage_strides

HeadLike = None | str | dict | DenseHead  # what `head_config` reads: None is the classifier

NECK_CATEGORIES = ("lateral", "top_down", "fpn_conv")
UPERNET_NECK_CATEGORIES = ("ppm_pool", "ppm_conv", "ppm_upsample", "bottleneck", "lateral", "top_down",
                           "fpn_conv", "norm")
HEAD_CATEGORIES = ("conv", "norm", "upsample", "cls", "resize")
AUX_CATEGORIES = ("conv", "norm", "cls")

BN_MACS_PER_ELEMENT = 2  # fvcore's batchnorm_flop_jit in eval, with affine weights
NEAREST_MACS_PER_ELEMENT = 1  # fvcore: aten::upsample_nearest2d, per output element
BILINEAR_MACS_PER_ELEMENT = 4  # fvcore: aten::upsample_bilinear2d, per output element
ADAPTIVE_POOL_MACS_PER_ELEMENT = 1  # fvcore: aten::adaptive_avg_pool2d, per input element


def neck_categories(head: DenseHead) -> tuple[str, ...]:
    """The neck's FLOP categories of a model with `head`."""
    return UPERNET_NECK_CATEGORIES if isinstance(head, UperNetConfig) else NECK_CATEGORIES


def _categories(names: tuple[str, ...], counts: dict[str, int], what: str) -> dict[str, int]:
    out = {c: 0 for c in names}
    for c, v in counts.items():
        if c not in out:
            raise ValueError(f"unknown {what} FLOP category {c!r}; expected one of {', '.join(names)}")
        out[c] += int(v)
    return out


def flop_report(head: DenseHead | None, parts: dict[str, dict[str, int]]) -> FlopReport:
    """The report of the model with `head` from {part: {category: MACs}}: for the classifier
    (None) every part joins `by_category` and `parts` stays empty (one network); with a dense
    head, parts backbone (`FlopReport`'s categories), neck and head (this module's), each with
    every category (zeros included), and `by_category` is the backbone's. Unknown categories
    raise ValueError."""
    if head is None:
        return FlopReport.from_categories(_add(*parts.values()))
    backbone = FlopReport.from_categories(parts.get("backbone", {})).by_category
    split = {"backbone": dict(backbone), "neck": _categories(neck_categories(head), parts.get("neck", {}), "neck"),
             "head": _categories(HEAD_CATEGORIES, parts.get("head", {}), "head")}
    return FlopReport(total=sum(v for cats in split.values() for v in cats.values()), by_category=backbone,
                      parts=split)


def DenseFlopReport(backbone: FlopReport, neck: dict[str, int], head: dict[str, int]) -> FlopReport:
    """The `FlopReport` of a backbone (its `by_category`) with a dense neck and head."""
    return flop_report(HeadConfig(), {"backbone": backbone.by_category, "neck": neck, "head": head})


# ---- one function per module of segmentation.py -----------------------------------------

def fpn_flops(B: int, sizes: list[Size], in_channels: list[int], C: int) -> dict[str, int]:
    """FPN: lateral 1x1 conv C_i -> C on every map (h_i*w_i*C*C_i); top-down, for i = L-1..1,
    level i upsampled (nearest) to level i-1's size when it differs (1 per output element,
    h_{i-1}*w_{i-1}*C); fpn 3x3 conv C -> C on every map (h_i*w_i*C*C*9)."""
    n = [h * w for h, w in sizes]
    top_down = sum(NEAREST_MACS_PER_ELEMENT * B * n[i - 1] * C
                   for i in range(len(sizes) - 1, 0, -1) if sizes[i] != sizes[i - 1])
    return {"lateral": sum(B * n_i * C * c for n_i, c in zip(n, in_channels)),
            "top_down": top_down,
            "fpn_conv": sum(B * n_i * C * C * 9 for n_i in n)}


def fpn_head_flops(B: int, sizes: list[Size], strides: list[int], C_in: int, C: int,
                   num_classes: int) -> dict[str, int]:
    """FPNHead: scale head i = n_i x (3x3 conv c -> C (h*w*C*c*9), BN (2*h*w*C), ReLU (0), and
    when stride_i != stride_0 a x2 bilinear upsample to 2h x 2w (4*4h*w*C)); levels 1.. are
    resized (bilinear, 4 per output element) to level 0's size when theirs differs; dropout
    (0); conv_seg 1x1 C -> num_classes on level 0's map."""
    out = {"conv": 0, "norm": 0, "upsample": 0}
    h0, w0 = sizes[0]
    for i, ((h, w), n) in enumerate(zip(sizes, head_lengths(strides))):
        for k in range(n):
            out["conv"] += B * h * w * C * (C_in if k == 0 else C) * 9
            out["norm"] += BN_MACS_PER_ELEMENT * B * h * w * C
            if strides[i] != strides[0]:
                h, w = 2 * h, 2 * w
                out["upsample"] += BILINEAR_MACS_PER_ELEMENT * B * h * w * C
        if i > 0 and (h, w) != (h0, w0):
            out["upsample"] += BILINEAR_MACS_PER_ELEMENT * B * h0 * w0 * C
    out["cls"] = B * h0 * w0 * C * num_classes
    return out


def resize_flops(B: int, size: Size, in_size: Size, num_classes: int) -> dict[str, int]:
    """The logits (B, num_classes, h_0, w_0) resized bilinearly to the input's H x W (skipped
    when equal): 4 per output element."""
    if size == in_size:
        return {"resize": 0}
    return {"resize": BILINEAR_MACS_PER_ELEMENT * B * in_size[0] * in_size[1] * num_classes}


def upernet_flops(B: int, sizes: list[Size], in_channels: list[int], C: int, num_classes: int,
                  pool_scales: tuple[int, ...]) -> tuple[dict[str, int], dict[str, int]]:
    """UPerHead on maps (h_i, w_i) with C_i channels, n_i = h_i*w_i, L levels, last = L-1:
    (neck, head) MACs.

    neck: per pool scale s, adaptive average pool of the last map (C_last*n_last, 1 per input
    element), 1x1 conv C_last -> C on s*s (s*s*C*C_last) + BN (2*s*s*C), bilinear resize back
    (4*n_last*C, skipped when s x s is the map's size); bottleneck 3x3 conv of the concat
    (n_last*C*(C_last + S*C)*9) + BN (2*n_last*C); for i < last, lateral 1x1 (n_i*C*C_i) + BN
    (2*n_i*C) and fpn 3x3 (n_i*C*C*9) + BN (2*n_i*C); top-down, for i = last..1, a bilinear
    resize to level i-1's size when it differs (4*n_{i-1}*C).
    head: levels 1.. resized bilinearly to level 0's size when theirs differs (4*n_0*C each),
    fpn_bottleneck 3x3 conv L*C -> C (n_0*C*L*C*9) + BN (2*n_0*C), conv_seg (n_0*C*K)."""
    n = [h * w for h, w in sizes]
    last, L, S = len(sizes) - 1, len(sizes), len(pool_scales)
    C_last, n_last = in_channels[-1], n[-1]
    bn = BN_MACS_PER_ELEMENT * B * C
    neck = {"ppm_pool": ADAPTIVE_POOL_MACS_PER_ELEMENT * S * B * C_last * n_last,
            "ppm_conv": sum(B * s * s * C * C_last for s in pool_scales),
            "ppm_upsample": sum(BILINEAR_MACS_PER_ELEMENT * B * n_last * C
                                for s in pool_scales if (s, s) != tuple(sizes[-1])),
            "bottleneck": B * n_last * C * (C_last + S * C) * 9,
            "lateral": sum(B * n[i] * C * in_channels[i] for i in range(last)),
            "top_down": sum(BILINEAR_MACS_PER_ELEMENT * B * n[i - 1] * C
                            for i in range(last, 0, -1) if sizes[i] != sizes[i - 1]),
            "fpn_conv": sum(B * n[i] * C * C * 9 for i in range(last)),
            "norm": bn * (sum(s * s for s in pool_scales) + n_last + 2 * sum(n[:last]))}
    head = {"upsample": sum(BILINEAR_MACS_PER_ELEMENT * B * n[0] * C for i in range(1, L) if sizes[i] != sizes[0]),
            "conv": B * n[0] * C * L * C * 9,
            "norm": bn * n[0],
            "cls": B * n[0] * C * num_classes}
    return neck, head


def neck_head_flops(cfg: ArchConfig, head: DenseHead, size: Resolution, batch: int = 1) -> dict[str, dict[str, int]]:
    """MACs of the dense head's neck and head (with the final resize) in `TwinsSegmentation`
    on a (batch, in_chans, H, W) input: {"neck": {category: MACs}, "head": {category: MACs}}."""
    in_size = as_size(size)
    sizes = cfg.stage_sizes(in_size)
    if isinstance(head, UperNetConfig):
        neck, dec = upernet_flops(batch, sizes, cfg.embed_dims, head.channels, head.num_classes, head.pool_scales)
        dec.update(resize_flops(batch, sizes[0], in_size, head.num_classes))
        return {"neck": _categories(UPERNET_NECK_CATEGORIES, neck, "neck"),
                "head": _categories(HEAD_CATEGORIES, dec, "head")}
    neck = fpn_flops(batch, sizes, cfg.embed_dims, head.neck_channels)
    strides = stage_strides([s.patch_size for s in cfg.stages])
    dec = fpn_head_flops(batch, sizes, strides, head.neck_channels, head.channels, head.num_classes)
    dec.update(resize_flops(batch, sizes[0], in_size, head.num_classes))
    return {"neck": _categories(NECK_CATEGORIES, neck, "neck"), "head": _categories(HEAD_CATEGORIES, dec, "head")}


def aux_head_flops(cfg: ArchConfig, head: HeadLike, size: Resolution, batch: int = 1) -> dict[str, int]:
    """MACs the auxiliary FCNHead of an UperNet with `aux` would add if run (mmseg runs it in
    training only; `analytic_flops` and `count_flops` count the inference forward without it),
    {conv, norm, cls}; on the map (h, w) of the stage before the last with C' channels and A =
    aux_channels: 3x3 conv (h*w*A*C'*9), BN (2*h*w*A), conv_seg (h*w*A*K). {} without one."""
    head = head_config(head)
    if not isinstance(head, UperNetConfig) or not head.aux:
        return {}
    i = aux_stage(len(cfg.stages))
    h, w = cfg.stage_sizes(as_size(size))[i]
    A, n = head.aux_channels, batch * h * w
    return {"conv": n * A * cfg.embed_dims[i] * 9, "norm": BN_MACS_PER_ELEMENT * n * A, "cls": n * A * head.num_classes}


def flop_parts(cfg: ArchConfig, head: DenseHead | None, size: Resolution, batch: int = 1) -> dict[str, dict[str, int]]:
    """{part: {category: MACs}} of `build_model(cfg, head=head)`: the backbone (patch
    embeddings, blocks, PEGs) and, for the classifier (None), its head (final LayerNorm and
    Linear, `cost_model.classifier_flops`), else the dense head's neck and head."""
    in_size = as_size(size)
    backbone = _add(*backbone_parts(cfg, in_size, batch))
    if head is None:
        return {"backbone": backbone, "head": cost_model.classifier_flops(batch, cfg.stage_sizes(in_size)[-1], cfg)}
    return {"backbone": backbone, **neck_head_flops(cfg, head, in_size, batch)}


def analytic_flops(cfg: ArchConfig, resolution: Resolution, batch: int = 1, *, head: HeadLike = None) -> FlopReport:
    """Multiply-adds of `build_model(cfg, head=head)` on a (batch, in_chans, H, W) input, in
    fvcore's convention; `resolution` is an int (square) or (H, W); `head` a `HeadConfig`, its
    name or dict, or None (the classifier the config has). See `flop_report` for the split.
    ConfigError when the input is too small."""
    head = head_config(head)
    return flop_report(head, flop_parts(cfg, head, resolution, batch))


def analytic_dense_flops(cfg: ArchConfig, head: HeadLike, size: Resolution, batch: int = 1) -> FlopReport:
    """`analytic_flops(cfg, size, batch, head=head)`."""
    return analytic_flops(cfg, size, batch, head=head)


# ---- parameters ------------------------------------------------------------------------

def upernet_params(head: UperNetConfig, cfg: ArchConfig) -> dict[str, int]:
    """Parameters of an UperNet (BatchNorm running stats are buffers, not counted), every
    ConvModule a conv without bias + BN weight and bias (2C), C = channels, L levels, S pool scales:

    neck: PPM, per scale (C, C_last, 1, 1) + 2C; bottleneck (C, C_last + S*C, 3, 3) + 2C; per
    level but the last, lateral (C, C_i, 1, 1) + 2C and fpn conv (C, C, 3, 3) + 2C;
    head: fpn_bottleneck (C, L*C, 3, 3) + 2C; conv_seg (K, C, 1, 1) + bias K;
    aux (with `aux` only): FCNHead conv (A, C', 3, 3) + 2A on the stage before the last,
    conv_seg (K, A, 1, 1) + K."""
    C, K, dims = head.channels, head.num_classes, cfg.embed_dims
    S, L = len(head.pool_scales), len(dims)
    neck = (S * (C * dims[-1] + 2 * C) + C * (dims[-1] + S * C) * 9 + 2 * C
            + sum(C * c + 2 * C + C * C * 9 + 2 * C for c in dims[:-1]))
    out = {"neck": neck, "head": C * L * C * 9 + 2 * C + C * K + K}
    if head.aux:
        A = head.aux_channels
        out["aux"] = A * dims[aux_stage(L)] * 9 + 2 * A + A * K + K
    return out


def neck_head_params(head: DenseHead, cfg: ArchConfig) -> dict[str, int]:
    """Parameters of the dense head's neck and head (BatchNorm running stats are buffers, not
    counted); an UperNet's are `upernet_params`'s. Semantic FPN:

    neck: per level, lateral conv (C, C_i, 1, 1) + bias and fpn conv (C, C, 3, 3) + bias;
    head: per level, n_i ConvModules: conv (C', c, 3, 3) without bias + BN weight and bias (2C');
    conv_seg (num_classes, C', 1, 1) + bias."""
    if isinstance(head, UperNetConfig):
        return upernet_params(head, cfg)
    C, Ch, K = head.neck_channels, head.channels, head.num_classes
    neck = sum(C * c + C + C * C * 9 + C for c in cfg.embed_dims)
    lengths = head_lengths(stage_strides([s.patch_size for s in cfg.stages]))
    dec = sum(Ch * (C if k == 0 else Ch) * 9 + 2 * Ch for n in lengths for k in range(n))
    return {"neck": neck, "head": dec + Ch * K + K}


def param_parts(cfg: ArchConfig, head: HeadLike = None) -> dict[str, int]:
    """Parameters of each part of `build_model(cfg, head=head)`: {} for the classifier (None:
    one network), else backbone (its stages: no final norm, no classifier), neck and head, and
    `aux` for an UperNet built with its auxiliary head (`aux: true`)."""
    head = head_config(head)
    if head is None:
        return {}
    return {"backbone": sum(cost_model.analytic_params(cfg, by_stage=True)), **neck_head_params(head, cfg)}


@overload
def analytic_params(cfg: ArchConfig, by_stage: Literal[False] = False, *, head: HeadLike = None) -> int: ...
@overload
def analytic_params(cfg: ArchConfig, by_stage: Literal[True], *, head: HeadLike = None) -> list[int]: ...
@overload
def analytic_params(cfg: ArchConfig, by_stage: bool, *, head: HeadLike = None) -> int | list[int]: ...
def analytic_params(cfg: ArchConfig, by_stage: bool = False, *, head: HeadLike = None) -> int | list[int]:
    """Parameters of `build_model(cfg, head=head)`, exactly (`head` as in `analytic_flops`;
    an UperNet with `aux` holds its auxiliary head's too, `param_parts`' `aux`).
    With `by_stage`, one count per stage of the backbone (patch embedding, blocks and PEG),
    whatever the head."""
    parts = param_parts(cfg, head)
    if by_stage or not parts:
        return cost_model.analytic_params(cfg, by_stage=by_stage)
    return sum(parts.values())


def analytic_dense_params(cfg: ArchConfig, head: HeadLike) -> dict[str, int]:
    """`param_parts(cfg, head)` and their total."""
    parts = param_parts(cfg, head)
    return {**parts, "total": sum(parts.values())}
