"""Closed-form cost of `segmentation.py`: a Twins backbone with a Semantic FPN, params and
multiply-adds from the config alone (no model is built).

fvcore's convention, as in `cost_model.py` (1 per multiply-add, conv bias ignored, LayerNorm
5 per element), with fvcore's own handles for the ops the head adds: eval BatchNorm counts 2
per input element (affine), a nearest upsample 1 per output element, a bilinear upsample 4 per
output element; ReLU and dropout count 0. `twins_nas.profile.count_dense_flops` measures the
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

B = batch, (h, w) = a map's size, C = channels.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import ArchConfig
from ..sizes import Resolution, Size, as_size
from .cost_model import FlopReport, _add, analytic_params, backbone_parts
from .head_config import HeadConfig, head_lengths, stage_strides

NECK_CATEGORIES = ("lateral", "top_down", "fpn_conv")
HEAD_CATEGORIES = ("conv", "norm", "upsample", "cls", "resize")

BN_MACS_PER_ELEMENT = 2  # fvcore's batchnorm_flop_jit in eval, with affine weights
NEAREST_MACS_PER_ELEMENT = 1  # fvcore: aten::upsample_nearest2d, per output element
BILINEAR_MACS_PER_ELEMENT = 4  # fvcore: aten::upsample_bilinear2d, per output element


def _categories(names: tuple[str, ...], counts: dict[str, int], what: str) -> dict[str, int]:
    out = {c: 0 for c in names}
    for c, v in counts.items():
        if c not in out:
            raise ValueError(f"unknown {what} FLOP category {c!r}; expected one of {', '.join(names)}")
        out[c] += int(v)
    return out


@dataclass(frozen=True)
class DenseFlopReport:
    """Multiply-adds of one dense-prediction forward pass: the backbone (`FlopReport`'s
    categories; no final norm and no classifier, so `norm` has no final LayerNorm and `head` is
    0), the neck and the head (categories: see the module's doc)."""

    backbone: FlopReport
    neck: dict[str, int]
    head: dict[str, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "neck", _categories(NECK_CATEGORIES, self.neck, "neck"))
        object.__setattr__(self, "head", _categories(HEAD_CATEGORIES, self.head, "head"))

    @property
    def neck_total(self) -> int:
        return sum(self.neck.values())

    @property
    def head_total(self) -> int:
        return sum(self.head.values())

    @property
    def total(self) -> int:
        return self.backbone.total + self.neck_total + self.head_total

    @property
    def gmacs(self) -> float:
        return self.total / 1e9

    @property
    def attention(self) -> int:
        """MACs of the backbone's attention matmuls (LSA + GSA)."""
        return self.backbone.attention

    def to_dict(self) -> dict:
        return {"total": self.total, "backbone": self.backbone.to_dict(), "neck": dict(self.neck),
                "head": dict(self.head), "neck_total": self.neck_total, "head_total": self.head_total}


# ---- one function per module of segmentation.py -----------------------------------------

def backbone_flops(cfg: ArchConfig, resolution: Resolution, batch: int = 1) -> FlopReport:
    """The Twins of `TwinsSegmentation` up to `forward_features`: patch embeddings, blocks and
    PEGs (`cost_model`'s functions), without the final norm and the classifier."""
    return FlopReport.from_categories(_add(*backbone_parts(cfg, resolution, batch)))


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


def head_flops(cfg: ArchConfig, head: HeadConfig, size: Resolution, batch: int = 1) -> dict[str, dict[str, int]]:
    """MACs of the neck and of the head (with the final resize) of `TwinsSegmentation` on a
    (batch, in_chans, H, W) input: {"neck": {category: MACs}, "head": {category: MACs}}."""
    in_size = as_size(size)
    sizes = cfg.stage_sizes(in_size)
    neck = fpn_flops(batch, sizes, cfg.embed_dims, head.neck_channels)
    strides = stage_strides([s.patch_size for s in cfg.stages])
    dec = fpn_head_flops(batch, sizes, strides, head.neck_channels, head.channels, head.num_classes)
    dec.update(resize_flops(batch, sizes[0], in_size, head.num_classes))
    return {"neck": _categories(NECK_CATEGORIES, neck, "neck"), "head": _categories(HEAD_CATEGORIES, dec, "head")}


def analytic_dense_flops(cfg: ArchConfig, head: HeadConfig, size: Resolution, batch: int = 1) -> DenseFlopReport:
    """Multiply-adds of `build_model(cfg, head=head)` on a (batch, in_chans, H, W) input, in
    fvcore's convention; `size` is an int (square) or (H, W). ConfigError when too small."""
    parts = head_flops(cfg, head, size, batch)
    return DenseFlopReport(backbone=backbone_flops(cfg, size, batch), neck=parts["neck"], head=parts["head"])


# ---- parameters ------------------------------------------------------------------------

def head_params(head: HeadConfig, cfg: ArchConfig) -> dict[str, int]:
    """Parameters of the neck and of the head (BatchNorm running stats are buffers, not counted).

    neck: per level, lateral conv (C, C_i, 1, 1) + bias and fpn conv (C, C, 3, 3) + bias;
    head: per level, n_i ConvModules: conv (C', c, 3, 3) without bias + BN weight and bias (2C');
    conv_seg (num_classes, C', 1, 1) + bias."""
    C, Ch, K = head.neck_channels, head.channels, head.num_classes
    neck = sum(C * c + C + C * C * 9 + C for c in cfg.embed_dims)
    lengths = head_lengths(stage_strides([s.patch_size for s in cfg.stages]))
    dec = sum(Ch * (C if k == 0 else Ch) * 9 + 2 * Ch for n in lengths for k in range(n))
    return {"neck": neck, "head": dec + Ch * K + K}


def analytic_dense_params(cfg: ArchConfig, head: HeadConfig) -> dict[str, int]:
    """Parameters of `build_model(cfg, head=head)`, exactly: the backbone's stages (no final
    norm, no classifier), the neck, the head and their total."""
    backbone = sum(analytic_params(cfg, by_stage=True))
    parts = head_params(head, cfg)
    return {"backbone": backbone, "neck": parts["neck"], "head": parts["head"],
            "total": backbone + parts["neck"] + parts["head"]}
