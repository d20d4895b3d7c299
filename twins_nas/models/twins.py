"""Twins (PCPVT / SVT) as a parametric family, in the style of timm's `twins.py`.

Every stage is a patch embedding, then `depth` blocks whose attention follows the stage's
L/G `pattern`; a PEG (depthwise 3x3 conv + residual) follows the first block of the stage.

* LSA (`L`): attention inside m x n windows. Maps the window does not divide are zero-padded
  at the bottom/right and the padded keys are masked out (they get exactly zero attention);
  a window larger than the map is clamped to the map (one window, the same result as padding
  and masking, without the wasted work).
* GSA (`G`): every query attends to a sub-sampled map: k1 x k2 cells -> one key/value token
  (strided conv, depthwise-separable strided conv, or average pooling; then LayerNorm).
  A map that k does not divide (or smaller than k) is padded at the bottom/right up to a
  multiple of k, so the border cells get a representative too: zeros for the convs (as a
  conv's own padding would), and the average over the real tokens only for `avgpool`.
  k = 1 is plain global attention.

Module and parameter names match timm's, so the six presets load timm checkpoints as-is.
The CPU fast paths (chunked MLP, explicit-softmax LSA for small windows, GSA's conv as
patchify + GEMM) live in `kernels.py`, with the switch that turns them off.
"""
from __future__ import annotations

import math
from typing import cast, overload

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ArchConfig, StageConfig, clamp_window, load_config
from ..sizes import Size
from .cpu_fast_paths import TokenConv, fast_mlp, window_attention
from .head_config import DenseHead, model_head
from .segmentation import TwinsSegmentation, with_head


def lsa_key_mask(size: Size, window: Size, device=None) -> torch.Tensor | None:
    """Boolean (num_windows, m*n) mask of the real (not padded) tokens of every window,
    windows in row-major order; None when the window divides the map."""
    (H, W), (m, n) = size, window
    pad_b, pad_r = (-H) % m, (-W) % n
    if pad_b == 0 and pad_r == 0:
        return None
    valid = torch.zeros(H + pad_b, W + pad_r, dtype=torch.bool, device=device)
    valid[:H, :W] = True
    Hp, Wp = H + pad_b, W + pad_r
    return valid.view(Hp // m, m, Wp // n, n).permute(0, 2, 1, 3).reshape(-1, m * n)


def _windows(x: torch.Tensor, m: int, n: int) -> torch.Tensor:
    """(B, Hp, Wp, c) map -> (B * Hp/m * Wp/n, m*n, c) tokens of its m x n windows, row-major."""
    B, Hp, Wp, c = x.shape
    return x.view(B, Hp // m, m, Wp // n, n, c).transpose(2, 3).reshape(-1, m * n, c)


class LocallyGroupedAttn(nn.Module):
    """LSA: multi-head self-attention inside non-overlapping m x n windows.

    softmax(q kᵀ / sqrt(d)) v per window and head (`kernels.window_attention`); the keys a
    map's padding adds get -inf, so exactly zero attention.
    """

    def __init__(self, dim: int, num_heads: int, window: Size, qkv_bias: bool = True):
        super().__init__()
        assert dim % num_heads == 0
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.window = cast(Size, tuple(window))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, size: Size) -> torch.Tensor:
        B, N, C = x.shape
        H, W = size
        h, hd = self.num_heads, C // self.num_heads
        m, n = clamp_window(self.window, size)
        pad_b, pad_r = (-H) % m, (-W) % n
        Hp, Wp = H + pad_b, W + pad_r
        gh, gw = Hp // m, Wp // n
        if pad_b or pad_r:  # project the real tokens only, then pad (the padded keys are masked)
            qkv = _windows(F.pad(self.qkv(x).view(B, H, W, 3 * C), (0, 0, 0, pad_r, 0, pad_b)), m, n)
        else:  # window first: C channels move into window order instead of 3C
            qkv = self.qkv(_windows(x.view(B, H, W, C), m, n))
        # (B*gh*gw, m*n, 3C) -> q, k, v: (B*gh*gw, h, m*n, hd) strided views, no copy
        q, k, v = qkv.view(B * gh * gw, m * n, 3, h, hd).permute(2, 0, 3, 1, 4).unbind(0)
        mask = lsa_key_mask(size, (m, n), x.device)
        if mask is not None:  # (gh*gw, m*n) -> (B*gh*gw, 1, 1, m*n): the same for every sample and head
            mask = mask.view(1, gh * gw, 1, 1, m * n).expand(B, -1, -1, -1, -1).reshape(B * gh * gw, 1, 1, m * n)
        x = window_attention(q, k, v, mask, self.scale)  # (B*gh*gw, h, m*n, hd)
        # windows back to the map: (B*gh*gw, h, m*n, hd) -> (B, gh, gw, m, n, C) -> (B, gh, m, gw, n, C)
        x = x.transpose(1, 2).reshape(B, gh, gw, m, n, C).transpose(2, 3).reshape(B, Hp, Wp, C)
        if pad_b or pad_r:
            x = x[:, :H, :W, :]
        return self.proj(x.reshape(B, N, C))


# GSA sub-samplers: forward(x (B, N, C) tokens of an H x W map, size (H, W)) -> (B, M, C), one
# token per k1 x k2 cell, cells row-major, M = ceil(H/k1) * ceil(W/k2). Each pads the map at the
# bottom/right to whole cells itself. `conv` is `kernels.TokenConv` (a strided conv on tokens).

class SeparableConvSubsample(nn.Module):
    """`dwconv`: depthwise k1 x k2 strided conv (no bias), then a pointwise 1x1 conv; zero padding."""

    def __init__(self, dim: int, kernel: Size):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, kernel, stride=kernel, groups=dim, bias=False)
        self.pw = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, size: Size) -> torch.Tensor:
        B, N, C = x.shape
        H, W = size
        k1, k2 = self.dw.kernel_size
        x = x.transpose(1, 2).view(B, C, H, W)
        pad_b, pad_r = (-H) % k1, (-W) % k2
        if pad_b or pad_r:  # zeros, as a conv's own padding would add
            x = F.pad(x, (0, pad_r, 0, pad_b))
        return self.pw(self.dw(x)).flatten(2).transpose(1, 2)


class AvgPoolSubsample(nn.Module):
    """`avgpool`: the mean of every k1 x k2 cell; a cell cut by the border averages its real
    tokens only (`ceil_mode`: no padding enters the mean). No parameters."""

    def __init__(self, kernel: Size):
        super().__init__()
        self.kernel = tuple(kernel)

    def forward(self, x: torch.Tensor, size: Size) -> torch.Tensor:
        B, N, C = x.shape
        x = x.transpose(1, 2).view(B, C, *size)
        return F.avg_pool2d(x, self.kernel, stride=self.kernel, ceil_mode=True).flatten(2).transpose(1, 2)


class GlobalSubSampleAttn(nn.Module):
    """GSA: queries from every token, keys/values from one token per k1 x k2 cell (the
    sub-sampler, then LayerNorm). k = (1, 1): plain global attention, no sub-sampler."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: Size = (1, 1), subsample: str = "conv",
                 qkv_bias: bool = True):
        super().__init__()
        assert dim % num_heads == 0
        self.num_heads = num_heads
        self.sr_ratio = cast(Size, tuple(sr_ratio))
        self.subsample = subsample
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        if self.sr_ratio != (1, 1):
            if subsample == "conv":
                self.sr: nn.Module | None = TokenConv(dim, dim, self.sr_ratio)
            elif subsample == "dwconv":
                self.sr = SeparableConvSubsample(dim, self.sr_ratio)
            elif subsample == "avgpool":
                self.sr = AvgPoolSubsample(self.sr_ratio)
            else:
                raise ValueError(f"subsample={subsample!r}: choose conv, dwconv or avgpool")
            self.norm: nn.LayerNorm | None = nn.LayerNorm(dim)
        else:
            self.sr = None
            self.norm = None

    def forward(self, x: torch.Tensor, size: Size) -> torch.Tensor:
        B, N, C = x.shape
        h, hd = self.num_heads, C // self.num_heads
        q = self.q(x).view(B, N, h, hd).transpose(1, 2)  # (B, h, N, hd)
        if self.sr is not None:
            assert self.norm is not None  # set with the sub-sampler
            x = self.norm(self.sr(x, size))  # (B, M, C), M = ceil(H/k1) * ceil(W/k2)
        kv = self.kv(x).view(B, -1, 2, h, hd).permute(2, 0, 3, 1, 4)  # (2, B, h, M, hd)
        k, v = kv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)  # (B, h, N, hd)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 (timm's `Mlp`, same parameter names).

    On a CPU a large hidden activation takes `kernels.fast_mlp`: the same maths (exact GELU, as
    `act`) on chunks of rows; see there for when it applies and what it does to forward hooks
    on fc1/fc2.
    """

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = fast_mlp(x, self.fc1, self.fc2)  # None where no fast path applies
        return out if out is not None else self.fc2(self.act(self.fc1(x)))


def _drop_path(p: float) -> nn.Module:
    if p <= 0:
        return nn.Identity()
    from timm.layers import DropPath  # heavy import: see README
    return DropPath(p)


class Block(nn.Module):
    def __init__(self, stage: StageConfig, kind: str, qkv_bias: bool = True, drop_path: float = 0.0):
        super().__init__()
        dim = stage.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        if kind == "L":
            assert stage.window is not None  # validated: a stage with L blocks has a window
            self.attn: LocallyGroupedAttn | GlobalSubSampleAttn = LocallyGroupedAttn(dim, stage.num_heads,
                                                                                     stage.window, qkv_bias)
        else:
            self.attn = GlobalSubSampleAttn(dim, stage.num_heads, stage.sr_pair, stage.subsample, qkv_bias)
        self.drop_path1 = _drop_path(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, stage.mlp_hidden)
        self.drop_path2 = _drop_path(drop_path)

    def forward(self, x: torch.Tensor, size: Size) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x), size))
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return x


class PosConv(nn.Module):
    """PEG: depthwise 3x3 conv (with bias) plus residual, on the token map."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim))

    def forward(self, x: torch.Tensor, size: Size) -> torch.Tensor:
        B, N, C = x.shape
        feat = x.transpose(1, 2).view(B, C, *size)
        out = self.proj(feat)
        out += feat  # in place: the conv's backward does not need its output
        return out.flatten(2).transpose(1, 2)


class PatchEmbed(nn.Module):
    """Strided conv (kernel = stride = patch_size) + LayerNorm; floors like timm's."""

    def __init__(self, in_chans: int, dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Size]:
        H, W = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        if H < 1 or W < 1:
            raise ValueError(f"input map {tuple(x.shape[-2:])} is smaller than patch_size={self.patch_size}")
        x = self.proj(x).flatten(2).transpose(1, 2)  # (B, H*W, C)
        return self.norm(x), (H, W)


class Twins(nn.Module):
    """A Twins-like pyramid ViT built from an `ArchConfig`."""

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.num_features = cfg.stages[-1].embed_dim
        self.patch_embeds = nn.ModuleList()
        prev = cfg.in_chans
        for s in cfg.stages:
            self.patch_embeds.append(PatchEmbed(prev, s.embed_dim, s.patch_size))
            prev = s.embed_dim
        dpr = torch.linspace(0, cfg.drop_path_rate, sum(cfg.depths), device="cpu").tolist()  # also under a meta device
        self.blocks = nn.ModuleList()
        cur = 0
        for s in cfg.stages:
            self.blocks.append(nn.ModuleList(
                Block(s, kind, cfg.qkv_bias, dpr[cur + j]) for j, kind in enumerate(s.block_types)))
            cur += s.depth
        self.pos_block = nn.ModuleList(PosConv(s.embed_dim) for s in cfg.stages) if cfg.peg else None
        self.norm: nn.LayerNorm | nn.Identity = nn.LayerNorm(self.num_features, eps=1e-6)
        self.head = nn.Linear(self.num_features, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:  # as timm
        # heavy import: see README (timm pulls in all its models and torchvision; commands that
        # only use the cost model should not pay for it, so it is imported when a model is built)
        from timm.layers import trunc_normal_
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.zeros_(m.bias)
            nn.init.ones_(m.weight)
        elif isinstance(m, (nn.Conv2d, TokenConv)):  # TokenConv holds a (groups = 1) conv's weight
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // getattr(m, "groups", 1)
            m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                m.bias.data.zero_()

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return {"pos_block." + n for n, _ in self.pos_block.named_parameters()} if self.pos_block is not None else set()

    def forward_stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Stage `i`: the previous map (B, C_{i-1}, H, W) (the image for stage 0) -> its map
        (B, C_i, H_i, W_i): patch embedding, blocks, and the PEG after the first block."""
        B = x.shape[0]
        x, size = self.patch_embeds[i](x)
        for j, blk in enumerate(cast(nn.ModuleList, self.blocks[i])):
            x = blk(x, size)
            if j == 0 and self.pos_block is not None:
                x = self.pos_block[i](x, size)
        return x.transpose(1, 2).view(B, -1, *size)  # (B, C, H, W), a view of the tokens

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The map of every stage, (B, C_i, H_i, W_i), before the final norm."""
        feats = []
        for i in range(len(self.patch_embeds)):
            x = self.forward_stage(i, x)
            feats.append(x)
        return feats

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Last stage map (B, C, H, W) -> final norm -> global average pool -> classifier."""
        x = self.norm(x.flatten(2).transpose(1, 2)).mean(dim=1)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x)[-1])


@overload
def build_model(cfg: ArchConfig | dict | str, seed: int | None = None, head: None = None,
                num_classes: None = None) -> Twins: ...
@overload
def build_model(cfg: ArchConfig | dict | str, seed: int | None = None, *, head: DenseHead | dict | str,
                num_classes: int | None = None) -> TwinsSegmentation: ...
@overload
def build_model(cfg: ArchConfig | dict | str, seed: int | None = None, head: DenseHead | dict | str | None = None,
                num_classes: int | None = None) -> Twins | TwinsSegmentation: ...
def build_model(cfg: ArchConfig | dict | str, seed: int | None = None, head: DenseHead | dict | str | None = None,
                num_classes: int | None = None) -> Twins | TwinsSegmentation:
    """Build the network for a config (an ArchConfig, its dict, a preset name or a JSON path).
    With `seed`, the initial weights are reproducible.

    With `head` (a name of `HEADS`, a dict, a HeadConfig or an UperNetConfig), a `TwinsSegmentation`: the Twins
    without classifier (cfg.num_classes is ignored) and without its final norm, plus that head;
    `num_classes` sets the head's classes (default: the head's own, 150). Without a head the
    classifier's classes are cfg.num_classes, and passing `num_classes` is a TypeError."""
    if isinstance(cfg, str):
        cfg = load_config(cfg)
    elif isinstance(cfg, dict):
        cfg = ArchConfig.from_dict(cfg)
    head = model_head(head, num_classes)
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cast(Twins | TwinsSegmentation, with_head(Twins, cfg, head))
    return cast(Twins | TwinsSegmentation, with_head(Twins, cfg, head))
