"""Semantic FPN and UperNet on a Twins backbone, as mmsegmentation runs them for the Twins
paper (ADE20K).

Semantic FPN (`HeadConfig`, head `semantic-fpn`):

* neck `FPN` (mmseg `FPN(in_channels=[C1..C4], out_channels=256, num_outs=4)`): a 1x1 lateral
  conv per stage map, a top-down pass (each coarser lateral upsampled, nearest, to the size of
  the finer one and added), then a 3x3 conv per level. Convs with bias, no norm, no activation.
* decode head `FPNHead` (channels=128, BN, dropout 0.1): per level i a chain of
  `max(1, round(log2(stride_i / stride_0)))` ConvModules (3x3 conv without bias, BN, ReLU), each
  followed by a x2 bilinear upsample when stride_i != stride_0; the levels are summed at the
  size of level 0 (bilinear resize where a size differs), then Dropout2d and the 1x1 `conv_seg`.

UperNet (`UperNetConfig`, head `upernet`; no neck, everything is mmseg's `UPerHead`):

* `psp_modules` (mmseg's `PPM` on the last stage map x): per pool scale s, an adaptive average
  pool to s x s and a 1x1 ConvModule C_4 -> channels (conv without bias, BN, ReLU), resized
  bilinearly back to x's size; `bottleneck`: concat(x, the pooled maps) -> 3x3 ConvModule;
* `lateral_convs`: a 1x1 ConvModule per other stage map (C_i -> channels); the top-down pass
  adds each coarser level, resized bilinearly, to the finer one; `fpn_convs`: a 3x3
  ConvModule per level but the last (the PPM's, used as it is);
* every level resized bilinearly to level 0's size, concatenated, `fpn_bottleneck` (3x3
  ConvModule 4*channels -> channels), Dropout2d, the 1x1 `conv_seg`;
* with `aux`, `auxiliary_head` (mmseg's `FCNHead`, num_convs 1, no concat_input) on the map of
  the stage before the last: 3x3 ConvModule -> aux_channels, Dropout2d, `conv_seg`. It is
  built (its weights are part of a checkpoint) but not run by `forward` (mmseg runs it only
  in training); `forward_aux` runs it.

* `TwinsSegmentation`: backbone -> neck -> decode head; the logits (at stride_0) are resized
  bilinearly to the input size, as mmseg's EncoderDecoder does at inference.

Every resize is align_corners=False and skipped when the sizes already match. Strides are the
cumulative products of the stages' patch sizes, so any `ArchConfig` works; for power-of-two
stride ratios (the presets: 4, 8, 16, 32) the structure is mmseg's exactly (mmseg truncates the
log2 where this rounds it; the two differ only for ratios that are not powers of two).

Module and parameter names are mmseg's (ConvModule's `.conv` / `.bn` / `.activate`), so a
checkpoint's `neck.*` and `decode_head.*` keys map as-is: `neck.lateral_convs.0.conv.weight`,
`neck.fpn_convs.3.conv.bias`, `decode_head.scale_heads.2.0.conv.weight`,
`decode_head.scale_heads.2.0.bn.running_mean`, `decode_head.conv_seg.weight`; UperNet's
`decode_head.psp_modules.3.1.conv.weight`, `decode_head.bottleneck.bn.weight`,
`decode_head.lateral_convs.0.conv.weight`, `decode_head.fpn_convs.2.bn.bias`,
`decode_head.fpn_bottleneck.conv.weight`, `auxiliary_head.convs.0.conv.weight`,
`auxiliary_head.conv_seg.bias`. The backbone's
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
from .head_config import DenseHead, UperNetConfig, aux_stage, head_lengths, stage_strides

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


class Resize(nn.Module):
    """`resize` as a module without weights, so that a traced count can tell one resize of a
    head's forward from another by the module that runs it."""

    def __init__(self, mode: str = "bilinear"):
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor, size: Size | torch.Size) -> torch.Tensor:
        return resize(x, size, self.mode)


class PPM(nn.ModuleList):
    """mmseg's PPM: per pool scale s, (adaptive average pool to s x s, 1x1 ConvModule with BN
    and ReLU), each output resized bilinearly back to the input's size."""

    def __init__(self, pool_scales: Sequence[int], in_channels: int, channels: int):
        super().__init__(nn.Sequential(nn.AdaptiveAvgPool2d(s),
                                       ConvModule(in_channels, channels, 1, norm=True, act=True))
                         for s in pool_scales)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [resize(ppm(x), x.shape[2:]) for ppm in self]  # each (B, channels, h, w)


class UPerHead(nn.Module):
    """mmseg's UPerHead: PPM + bottleneck on the last map, 1x1 laterals on the others, a
    bilinear top-down pass, 3x3 fpn convs, every level at level 0's size, concatenated,
    `fpn_bottleneck`, dropout, 1x1 classifier."""

    def __init__(self, in_channels: Sequence[int], channels: int, num_classes: int, pool_scales: Sequence[int],
                 dropout_ratio: float = DROPOUT_RATIO):
        super().__init__()
        self.psp_modules = PPM(pool_scales, in_channels[-1], channels)
        self.bottleneck = ConvModule(in_channels[-1] + len(pool_scales) * channels, channels, 3, norm=True, act=True)
        self.lateral_convs = nn.ModuleList(ConvModule(c, channels, 1, norm=True, act=True) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvModule(channels, channels, 3, norm=True, act=True)
                                       for _ in in_channels[:-1])
        self.top_down = Resize()
        self.fuse_resize = Resize()
        self.fpn_bottleneck = ConvModule(len(in_channels) * channels, channels, 3, norm=True, act=True)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats)]
        laterals.append(self.bottleneck(torch.cat([x, *self.psp_modules(x)], dim=1)))
        for i in range(len(laterals) - 1, 0, -1):  # top-down: coarse to fine
            laterals[i - 1] = laterals[i - 1] + self.top_down(laterals[i], laterals[i - 1].shape[2:])
        outs = [conv(f) for conv, f in zip(self.fpn_convs, laterals)] + [laterals[-1]]
        size = outs[0].shape[2:]
        outs = [outs[0]] + [self.fuse_resize(f, size) for f in outs[1:]]
        return self.conv_seg(self.dropout(self.fpn_bottleneck(torch.cat(outs, dim=1))))  # (B, K, H_0, W_0)


class FCNHead(nn.Module):
    """mmseg's FCNHead with num_convs=1, concat_input=False (UperNet's auxiliary head): 3x3
    ConvModule, dropout, 1x1 classifier."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, dropout_ratio: float = DROPOUT_RATIO):
        super().__init__()
        self.convs = nn.Sequential(ConvModule(in_channels, channels, 3, norm=True, act=True))
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.dropout(self.convs(x)))


class TwinsSegmentation(nn.Module):
    """Twins backbone + a dense head (Semantic FPN or UperNet). `backbone` is a `Twins` without
    classifier whose final norm is nn.Identity (dense prediction reads the stage maps before
    it; build the whole thing with `twins_nas.build_model(cfg, head="semantic-fpn")`)."""

    def __init__(self, backbone: nn.Module, head: DenseHead):
        super().__init__()
        cfg = cast(ArchConfig, backbone.cfg)  # backbone is a Twins (not imported here: twins.py imports this)
        self.cfg = cfg
        self.head_cfg = head
        self.num_classes = head.num_classes
        self.strides = stage_strides([s.patch_size for s in cfg.stages])
        self.backbone = backbone
        self.neck: nn.Module = nn.Identity()
        self.auxiliary_head: nn.Module | None = None
        self.decode_head: nn.Module
        if isinstance(head, UperNetConfig):
            self.decode_head = UPerHead(cfg.embed_dims, head.channels, head.num_classes, head.pool_scales)
            if head.aux:
                aux_in = cfg.embed_dims[aux_stage(len(cfg.stages))]
                self.auxiliary_head = FCNHead(aux_in, head.aux_channels, head.num_classes)
                self.auxiliary_head.apply(self._init_head)
        else:
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
        if isinstance(m, nn.Conv2d) and (m is self.decode_head.conv_seg or (
                self.auxiliary_head is not None and m is self.auxiliary_head.conv_seg)):
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

    def forward_aux(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> the auxiliary head's logits at the stride of the stage before
        the last (an UperNet built with `aux`; mmseg adds their loss in training)."""
        if self.auxiliary_head is None:
            raise ValueError("forward_aux: this model has no auxiliary head (UperNet with aux: true)")
        features = cast(Callable[[torch.Tensor], list[torch.Tensor]], self.backbone.forward_features)
        return self.auxiliary_head(features(x)[aux_stage(len(self.cfg.stages))])


def with_head(network: Callable[[ArchConfig], nn.Module], cfg: ArchConfig, head: DenseHead | None) -> nn.Module:
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
