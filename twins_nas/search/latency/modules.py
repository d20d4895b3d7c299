"""A `BlockKey` as the module a latency table times: an `nn.Module` taking ONE tensor (the
map size fixed inside), so that any timing backend runs it, and an example input of the shape
the network feeds it.

Each wrapper runs the block as `Twins.forward_features` and `TwinsSegmentation` run it: the
same modules (`Block`, `PosConv`, `PatchEmbed`, the heads' `ConvModule`s), fed the token
layout they see there (a later stage's patch embedding and a dense head's per-stage parts read
the stage's tokens viewed as a (B, C, H, W) map, not a contiguous copy). A dense head's
remainder reads its stage maps from one flat tensor, each map a contiguous slice of it.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ...config import StageConfig
from ...models.segmentation import FPN, PPM, ConvModule, FPNHead, UPerHead, resize
from ...models.twins import Block, Mlp, PatchEmbed, PosConv
from ...profile.backends import fill_for_timing
from ...sizes import Size
from .blocks import (
    CLASSIFIER,
    EMBED,
    FPN_LATERAL,
    FPN_REST,
    GSA,
    LSA,
    PEG,
    UPER_LATERAL,
    UPER_PSP,
    UPER_REST,
    BlockKey,
)


def _pair(text: int | str) -> Size:
    m, n = str(text).split("x")
    return int(m), int(n)


def _as_map(x: torch.Tensor, size: Size) -> torch.Tensor:
    """(B, N, C) tokens -> (B, C, H, W), a view, as `forward_features` hands the maps on."""
    return x.transpose(1, 2).view(x.shape[0], -1, *size)


class EmbedBlock(nn.Module):
    def __init__(self, key: BlockKey):
        super().__init__()
        self.size, self.tokens = key.size, key.param("src") == "tokens"
        self.embed = PatchEmbed(int(key.param("in")), int(key.param("out")), int(key.param("patch")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(_as_map(x, self.size) if self.tokens else x)[0]


class AttnBlock(nn.Module):
    def __init__(self, key: BlockKey):
        super().__init__()
        p = dict(key.params)
        dim, heads, mlp = int(p["dim"]), int(p["heads"]), int(p["mlp"])
        stage = StageConfig(patch_size=1, embed_dim=dim, depth=1, num_heads=heads, mlp_ratio=mlp / dim,
                            window=_pair(p["win"]) if key.kind == LSA else None,
                            sr_ratio=_pair(p["k"]) if key.kind == GSA else 1,
                            subsample=str(p.get("sub", "conv")), pattern=key.kind)  # type: ignore[arg-type]
        self.block = Block(stage, key.kind, qkv_bias=p.get("bias", 1) != 0)
        if stage.mlp_hidden != mlp:  # mlp / dim * dim rounded down
            self.block.mlp = Mlp(dim, mlp)
        self.size = key.size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x, self.size)


class PegBlock(nn.Module):
    def __init__(self, key: BlockKey):
        super().__init__()
        self.peg, self.size = PosConv(int(key.param("dim"))), key.size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.peg(x, self.size)


class ClassifierBlock(nn.Module):
    """The last map (a view of the tokens) -> final norm -> mean over tokens -> Linear (`forward_head`)."""

    def __init__(self, key: BlockKey):
        super().__init__()
        dim, classes = int(key.param("dim")), int(key.param("classes"))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes) if classes > 0 else nn.Identity()
        self.size = key.size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_map(x, self.size)
        return self.head(self.norm(x.flatten(2).transpose(1, 2)).mean(dim=1))


class LateralBlock(nn.Module):
    """A dense head's 1x1 conv on one stage map: FPN's (bias, no norm) or UperNet's (BN, ReLU)."""

    def __init__(self, key: BlockKey):
        super().__init__()
        norm = key.kind == UPER_LATERAL
        self.conv = ConvModule(int(key.param("in")), int(key.param("ch")), 1, norm=norm, act=norm)
        self.size = key.size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(_as_map(x, self.size))


class PspBlock(nn.Module):
    """UperNet on the last map: the pyramid pooling, concatenated with the map, then the 3x3 bottleneck."""

    def __init__(self, key: BlockKey):
        super().__init__()
        dim, ch = int(key.param("in")), int(key.param("ch"))
        pools = [int(s) for s in str(key.param("pools")).split("-")]
        self.psp_modules = PPM(pools, dim, ch)
        self.bottleneck = ConvModule(dim + len(pools) * ch, ch, 3, norm=True, act=True)
        self.size = key.size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_map(x, self.size)
        return self.bottleneck(torch.cat([x, *self.psp_modules(x)], dim=1))


class _Maps(nn.Module):
    """Reads the stage maps, `channels` each, from one flat tensor (contiguous slices)."""

    def __init__(self, key: BlockKey, channels: int):
        super().__init__()
        self.maps, self.channels, self.batch, self.image = key.maps, channels, key.batch, key.size

    def numel(self) -> int:
        return sum(self.batch * self.channels * h * w for h, w in self.maps)

    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, off = [], 0
        for h, w in self.maps:
            n = self.batch * self.channels * h * w
            out.append(x[off:off + n].view(self.batch, self.channels, h, w))
            off += n
        return out


class FpnRestBlock(_Maps):
    """Semantic FPN past its laterals: the top-down pass, the 3x3 FPN convs, the FPNHead and the resize to the input."""

    def __init__(self, key: BlockKey):
        neck, ch, classes = int(key.param("neck")), int(key.param("ch")), int(key.param("classes"))
        super().__init__(key, neck)
        strides = [int(s) for s in str(key.param("strides")).split("-")]
        self.fpn_convs = FPN([neck] * len(key.maps), neck).fpn_convs
        self.decode_head = FPNHead([neck] * len(key.maps), strides, ch, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        laterals = self.split(x)
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[2:], mode="nearest")
        feats = [conv(f) for conv, f in zip(self.fpn_convs, laterals)]
        return resize(self.decode_head(feats), self.image)


class UperRestBlock(_Maps):
    """UperNet past its laterals and pyramid pooling: the top-down pass, the 3x3 FPN convs, the
    fusion at level 0, `fpn_bottleneck`, the classifier and the resize to the input."""

    def __init__(self, key: BlockKey):
        ch, classes = int(key.param("ch")), int(key.param("classes"))
        super().__init__(key, ch)
        self.head = UPerHead([ch] * len(key.maps), ch, classes, pool_scales=(1,))
        self.head.psp_modules = PPM((), ch, ch)  # not run here (the psp block times it)
        self.head.lateral_convs = nn.ModuleList()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head
        laterals = self.split(x)
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + h.top_down(laterals[i], laterals[i - 1].shape[2:])
        outs = [conv(f) for conv, f in zip(h.fpn_convs, laterals)] + [laterals[-1]]
        size = outs[0].shape[2:]
        outs = [outs[0]] + [h.fuse_resize(f, size) for f in outs[1:]]
        return resize(h.conv_seg(h.dropout(h.fpn_bottleneck(torch.cat(outs, dim=1)))), self.image)


_MODULES: dict[str, type[nn.Module]] = {
    EMBED: EmbedBlock, LSA: AttnBlock, GSA: AttnBlock, PEG: PegBlock, CLASSIFIER: ClassifierBlock,
    FPN_LATERAL: LateralBlock, UPER_LATERAL: LateralBlock, UPER_PSP: PspBlock,
    FPN_REST: FpnRestBlock, UPER_REST: UperRestBlock,
}


def block_module(key: BlockKey) -> nn.Module:
    """The module that runs `key`'s block, weights filled with small uniform noise (the same
    kernels at the same speed as trained weights; BatchNorm statistics mean 0, variance 1)."""
    return fill_for_timing(_MODULES[key.kind](key))


def block_example(key: BlockKey, in_ch_of_image: int | None = None, device: torch.device | str = "cpu",
                  memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """A random input of the shape the network feeds `key`'s block."""
    B, (H, W) = key.batch, key.size
    if key.kind == EMBED:
        c = int(key.param("in"))
        if key.param("src") == "image":
            return torch.randn(B, c, H, W, device=device).to(memory_format=memory_format)
        return torch.randn(B, H * W, c, device=device)
    if key.kind in (FPN_REST, UPER_REST):
        ch = int(key.param("neck" if key.kind == FPN_REST else "ch"))
        return torch.randn(sum(B * ch * h * w for h, w in key.maps), device=device)
    c = int(key.param("in" if key.kind in (FPN_LATERAL, UPER_LATERAL, UPER_PSP) else "dim"))
    return torch.randn(B, H * W, c, device=device)
