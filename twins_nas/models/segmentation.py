"""Semantic FPN on a Twins backbone, as mmsegmentation runs it for the Twins paper (ADE20K).

* neck `FPN` (mmseg `FPN(in_channels=[C1..C4], out_channels=256, num_outs=4)`): a 1x1 lateral
  conv per stage map, a top-down pass (each coarser lateral upsampled, nearest, to the size of
  the finer one and added), then a 3x3 conv per level. Convs with bias, no norm, no activation.
* decode head `FPNHead` (channels=128, BN, dropout 0.1): per level i a chain of
  `max(1, round(log2(stride_i / stride_0)))` ConvModules (3x3 conv without bias, BN, ReLU), each
  followed by a x2 bilinear upsample when stride_i != stride_0; the levels are summed at the
  size of level 0 (bilinear resize where a size differs), then Dropout2d and the 1x1 `conv_seg`.
* `TwinsSegmentation`: backbone -> neck -> decode head; the logits (at stride_0) are resized
  bilinearly to the input size, as mmseg's EncoderDecoder does at inference.

Every resize is align_corners=False and skipped when the sizes already match. Strides are the
cumulative products of the stages' patch sizes, so any `ArchConfig` works; for power-of-two
stride ratios (the presets: 4, 8, 16, 32) the structure is mmseg's exactly (mmseg truncates the
log2 where this rounds it; the two differ only for ratios that are not powers of two).

Module and parameter names are mmseg's (ConvModule's `.conv` / `.bn` / `.activate`), so a
checkpoint's `neck.*` and `decode_head.*` keys map as-is: `neck.lateral_convs.0.conv.weight`,
`neck.fpn_convs.3.conv.bias`, `decode_head.scale_heads.2.0.conv.weight`,
`decode_head.scale_heads.2.0.bn.running_mean`, `decode_head.conv_seg.weight`. The backbone's
names are timm's (`backbone.blocks.0.0.attn.qkv.weight`, ...), see `load_backbone`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ArchConfig
from ..sizes import Size
from .head_config import HeadConfig, head_lengths, stage_strides

DROPOUT_RATIO = 0.1  # mmseg's FPNHead config for ADE20K


def resize(x: torch.Tensor, size: Size | torch.Size, mode: str = "bilinear") -> torch.Tensor:
    """Interpolate (B, C, h, w) -> (B, C, *size); no-op when the size already matches."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode=mode, align_corners=False if mode == "bilinear" else None)


class ConvModule(nn.Module):
    """mmcv's ConvModule: conv -> optional BN (`bn`) -> optional ReLU (`activate`); the conv
    has a bias only without a norm (mmcv's bias='auto')."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, norm: bool = False, act: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=not norm)
        self.bn = nn.BatchNorm2d(c_out) if norm else None
        self.activate = nn.ReLU(inplace=True) if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.activate is not None:
            x = self.activate(x)
        return x


class FPN(nn.Module):
    """mmseg's FPN neck with one output per input level (no extra levels)."""

    def __init__(self, in_channels: Sequence[int], out_channels: int):
        super().__init__()
        self.lateral_convs = nn.ModuleList(ConvModule(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(ConvModule(out_channels, out_channels, 3) for _ in in_channels)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, feats)]  # (B, out, H_i, W_i)
        for i in range(len(laterals) - 1, 0, -1):  # top-down: coarse to fine
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[2:], mode="nearest")
        return [conv(x) for conv, x in zip(self.fpn_convs, laterals)]


class FPNHead(nn.Module):
    """mmseg's FPNHead: scale heads to the size of level 0, summed, dropout, 1x1 classifier."""

    def __init__(self, in_channels: Sequence[int], strides: Sequence[int], channels: int, num_classes: int,
                 dropout_ratio: float = DROPOUT_RATIO):
        super().__init__()
        self.scale_heads = nn.ModuleList()
        for i, (c_in, n) in enumerate(zip(in_channels, head_lengths(strides))):
            layers: list[nn.Module] = []
            for k in range(n):
                layers.append(ConvModule(c_in if k == 0 else channels, channels, 3, norm=True, act=True))
                if strides[i] != strides[0]:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.scale_heads.append(nn.Sequential(*layers))
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        out = self.scale_heads[0](feats[0])  # (B, channels, H_0, W_0)
        for head, x in zip(self.scale_heads[1:], feats[1:]):
            out = out + resize(head(x), out.shape[2:])
        return self.conv_seg(self.dropout(out))  # (B, num_classes, H_0, W_0)


class TwinsSegmentation(nn.Module):
    """Twins backbone + Semantic FPN. `backbone` is a `Twins` without classifier whose final
    norm is nn.Identity (dense prediction reads the stage maps before it; build the whole thing
    with `twins_nas.build_model(cfg, head="semantic-fpn")`)."""

    def __init__(self, backbone: nn.Module, head: HeadConfig):
        super().__init__()
        cfg = cast(ArchConfig, backbone.cfg)  # backbone is a Twins (not imported here: twins.py imports this)
        self.cfg = cfg
        self.head_cfg = head
        self.num_classes = head.num_classes
        self.strides = stage_strides([s.patch_size for s in cfg.stages])
        self.backbone = backbone
        self.neck = FPN(cfg.embed_dims, head.neck_channels)
        self.decode_head = FPNHead([head.neck_channels] * len(cfg.stages), self.strides, head.channels,
                                   head.num_classes)
        self.neck.apply(self._init_neck)
        self.decode_head.apply(self._init_head)

    @staticmethod
    def _init_neck(m: nn.Module) -> None:  # mmseg's FPN init_cfg: Xavier (uniform) on Conv2d
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            assert m.bias is not None  # the neck's convs have a bias (no norm)
            nn.init.zeros_(m.bias)

    def _init_head(self, m: nn.Module) -> None:  # mmcv ConvModule (Kaiming, fan_out), conv_seg N(0, 0.01)
        if m is self.decode_head.conv_seg:
            nn.init.normal_(m.weight, std=0.01)
            assert m.bias is not None  # conv_seg has a bias
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> logits at the stride of the first stage (B, num_classes, H_0, W_0)."""
        features = cast(Callable[[torch.Tensor], list[torch.Tensor]], self.backbone.forward_features)
        return self.decode_head(self.neck(features(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> logits at the input size (B, num_classes, H, W)."""
        return resize(self.forward_logits(x), x.shape[2:])


def with_head(network: Callable[[ArchConfig], nn.Module], cfg: ArchConfig, head: HeadConfig | None) -> nn.Module:
    """The model of `cfg` with `head`: `network(cfg)` with its own classifier when `head` is
    None; else a `TwinsSegmentation` of that head over `network` without classifier
    (cfg.num_classes is ignored) and without its final norm (the stage maps come before it)."""
    if head is None:
        return network(cfg)
    backbone = network(cfg.replace(num_classes=0))
    backbone.norm = nn.Identity()  # forward_features' maps come before it: unused
    return TwinsSegmentation(backbone, head)


def load_backbone(model: TwinsSegmentation, state_dict: dict):
    """Load a classification checkpoint of the backbone (timm's Twins names, e.g.
    `timm.create_model("twins_svt_small").state_dict()`) into `model.backbone`: the classifier
    (`head.*`) and final norm (`norm.*`), which dense prediction does not use, are dropped; every
    other key must match (strict). Returns load_state_dict's (missing_keys, unexpected_keys)."""
    kept = {k: v for k, v in state_dict.items() if not k.startswith(("head.", "norm."))}
    return model.backbone.load_state_dict(kept, strict=True)
