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
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ArchConfig, StageConfig

Size = Tuple[int, int]


def lsa_window(window: Size, size: Size) -> Size:
    """The LSA window actually used on a map of `size`: clamped to the map."""
    return min(window[0], size[0]), min(window[1], size[1])


def lsa_key_mask(size: Size, window: Size, device=None) -> Optional[torch.Tensor]:
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

    On a CPU, windows of up to `explicit_max_tokens` tokens attend with explicit matmuls and
    softmax instead of SDPA, whose CPU kernel is made for long sequences: for 7 x 7 windows
    this module's forward + backward takes 64 ms instead of 72 ms (SVT-B stage 3, batch 8,
    2 threads). Same result; padded keys get -inf, so exactly zero attention, either way.
    """

    explicit_max_tokens = 64

    def __init__(self, dim: int, num_heads: int, window: Size, qkv_bias: bool = True):
        super().__init__()
        assert dim % num_heads == 0
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.window = tuple(window)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, size: Size) -> torch.Tensor:
        B, N, C = x.shape
        H, W = size
        h, hd = self.num_heads, C // self.num_heads
        m, n = lsa_window(self.window, size)
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
        if mask is not None:  # padded keys get exactly zero attention
            mask = mask.view(1, gh * gw, 1, 1, m * n).expand(B, -1, -1, -1, -1).reshape(B * gh * gw, 1, 1, m * n)
        if x.device.type == "cpu" and m * n <= self.explicit_max_tokens:
            attn = (q * self.scale) @ k.transpose(-2, -1)  # (B*gh*gw, h, m*n, m*n)
            if mask is not None:
                attn = attn.masked_fill(~mask, float("-inf"))
            x = attn.softmax(dim=-1) @ v
        else:
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B*gh*gw, h, m*n, hd)
        x = x.transpose(1, 2).reshape(B, gh, gw, m, n, C).transpose(2, 3).reshape(B, Hp, Wp, C)
        if pad_b or pad_r:
            x = x[:, :H, :W, :]
        return self.proj(x.reshape(B, N, C))


class TokenConv(nn.Conv2d):
    """A conv whose kernel equals its stride (non-overlapping k1 x k2 cells), run on the
    (B, H, W, C) token map as patchify + one GEMM. Same parameters (and names) and the same
    result as `nn.Conv2d` on the (B, C, H, W) map zero-padded at the bottom/right to whole
    cells, up to float summation order.

    The tokens are already channels-last, so the patches are one cheap copy, while the conv
    would convert the layout and, in training, run a slower backward: on CPU (2 threads,
    batch 8) the GSA sub-sampling of PCPVT stage 3 (320 channels, k = 2) takes 11.7 ms
    forward + backward this way against 21.8 ms as a conv.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C) -> (B, ceil(H/k1)*ceil(W/k2), C_out)
        k1, k2 = self.kernel_size
        pad_b, pad_r = (-x.shape[1]) % k1, (-x.shape[2]) % k2
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        B, H, W, C = x.shape
        x = x.reshape(B, H // k1, k1, W // k2, k2, C).permute(0, 1, 3, 2, 4, 5).reshape(B, -1, k1 * k2 * C)
        w = self.weight.permute(0, 2, 3, 1).reshape(self.out_channels, k1 * k2 * C)  # (C_out, k1*k2*C), same order
        return F.linear(x, w, self.bias)


class SeparableConv(nn.Module):
    """Depthwise k x k strided conv followed by a pointwise 1x1 conv."""

    def __init__(self, dim: int, kernel: Size):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, kernel, stride=kernel, groups=dim, bias=False)
        self.pw = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class GlobalSubSampleAttn(nn.Module):
    """GSA: queries from every token, keys/values from a k1 x k2 sub-sampled map."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: Size = (1, 1), subsample: str = "conv",
                 qkv_bias: bool = True):
        super().__init__()
        assert dim % num_heads == 0
        self.num_heads = num_heads
        self.sr_ratio = tuple(sr_ratio)
        self.subsample = subsample
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        if self.sr_ratio != (1, 1):
            if subsample == "conv":
                self.sr = TokenConv(dim, dim, self.sr_ratio, stride=self.sr_ratio)
            elif subsample == "dwconv":
                self.sr = SeparableConv(dim, self.sr_ratio)
            elif subsample == "avgpool":
                self.sr = nn.AvgPool2d(self.sr_ratio, stride=self.sr_ratio, ceil_mode=True)
            else:
                raise ValueError(f"subsample={subsample!r}: choose conv, dwconv or avgpool")
            self.norm = nn.LayerNorm(dim)
        else:
            self.sr = None
            self.norm = None

    def forward(self, x: torch.Tensor, size: Size) -> torch.Tensor:
        B, N, C = x.shape
        h, hd = self.num_heads, C // self.num_heads
        q = self.q(x).view(B, N, h, hd).transpose(1, 2)  # (B, h, N, hd)
        if self.sr is not None:
            H, W = size
            if self.subsample == "conv":  # TokenConv: on the (B, H, W, C) tokens, pads itself
                x = self.sr(x.reshape(B, H, W, C))  # (B, ceil(H/k1)*ceil(W/k2), C)
            else:
                pad_b, pad_r = (-H) % self.sr_ratio[0], (-W) % self.sr_ratio[1]
                x = x.transpose(1, 2).view(B, C, H, W)
                if (pad_b or pad_r) and self.subsample != "avgpool":  # avgpool's ceil_mode averages real cells only
                    x = F.pad(x, (0, pad_r, 0, pad_b))
                x = self.sr(x).flatten(2).transpose(1, 2)  # (B, ceil(H/k1)*ceil(W/k2), C)
            x = self.norm(x)
        kv = self.kv(x).view(B, -1, 2, h, hd).permute(2, 0, 3, 1, 4)  # (2, B, h, M, hd)
        k, v = kv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class _MlpTrainFn(torch.autograd.Function):
    """fc1 -> GELU -> fc2 with autograd, for a large hidden activation on CPU (see `Mlp`).

    The plain graph keeps fc1's output h and GELU's output a (rows x hidden each) and makes two
    more tensors of that size in backward (the gradients of a and h). Here only h is kept: a is
    made and used a chunk of rows at a time (forward: fc2 per chunk; backward: fc2's weight
    gradient per chunk, GELU recomputed), and GELU's backward writes over the gradient of a,
    which this function made itself. Same maths; two hidden-sized tensors fewer per block.
    """

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, step: int):  # x (R, C) -> (R, C_out)
        h = F.linear(x, w1, b1)  # (R, hidden), kept for backward
        out = x.new_empty(x.shape[0], w2.shape[0])
        for i in range(0, x.shape[0], step):
            torch.addmm(b2, F.gelu(h[i:i + step]), w2.t(), out=out[i:i + step])
        ctx.save_for_backward(x, h, w1, w2)
        ctx.step = step
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # every step is per chunk of rows: no hidden-sized tensor is made
        x, h, w1, w2 = ctx.saved_tensors
        need_x, need_w1, need_b1, need_w2, need_b2, _ = ctx.needs_input_grad
        grad_out = grad_out.contiguous()
        grad_x = torch.empty_like(x) if need_x else None
        grad_w1 = torch.zeros_like(w1) if need_w1 else None
        grad_b1 = w1.new_zeros(w1.shape[0]) if need_b1 else None
        grad_w2 = torch.zeros_like(w2) if need_w2 else None
        for i in range(0, x.shape[0], ctx.step):
            rows = slice(i, i + ctx.step)
            go, hc = grad_out[rows], h[rows]
            if need_w2:
                grad_w2.addmm_(go.t(), F.gelu(hc))
            if need_x or need_w1 or need_b1:
                grad_h = go @ w2  # (chunk, hidden): the gradient of a, then in place that of h
                torch.ops.aten.gelu_backward.grad_input(grad_h, hc, grad_input=grad_h)
                if need_x:
                    torch.mm(grad_h, w1, out=grad_x[rows])
                if need_w1:
                    grad_w1.addmm_(grad_h.t(), x[rows])
                if need_b1:
                    grad_b1 += grad_h.sum(0)
        grad_b2 = grad_out.sum(0) if need_b2 else None
        return grad_x, grad_w1, grad_b1, grad_w2, grad_b2, None


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 (timm's `Mlp`, same parameter names).

    On a CPU, a large hidden activation (mlp_ratio times wider than the tokens: 51 MB per
    block in PCPVT-S stage 1 at batch 8) is never made whole where it need not be: fresh
    tensors that large come from the OS page by page, and writing them costs more than the
    GELU itself (a GELU into fresh memory: 29 ms; into reused memory: 9 ms). So:

    * inference: fc1, GELU and fc2 run on chunks of rows; each chunk stays cache-sized and
      reuses freed heap (those MLPs run ~1.3-1.4x faster);
    * training (fp32, no autocast): `_MlpTrainFn` keeps fc1's output only and makes GELU's
      output chunk by chunk, in forward and again in backward.

    Rows are independent, so the result is the same as the plain path up to float summation
    order. Small activations, other devices and autocast take the plain path. The chunked
    paths call fc1/fc2's weights directly: forward hooks on `fc1`/`fc2` fire once per chunk
    in inference and not at all in the training path.
    """

    chunk_elems = 1 << 20  # hidden activations per chunk (4 MiB in fp32); chunked above 4x that

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, hidden = x.shape[:-1].numel(), self.fc1.out_features
        with_grad = torch.is_grad_enabled()  # autograd will need a backward (not module.training)
        if (x.device.type != "cpu" or rows * hidden <= 4 * self.chunk_elems
                or (with_grad and torch.is_autocast_enabled("cpu"))):
            return self.fc2(self.act(self.fc1(x)))
        step = math.ceil(rows / math.ceil(rows * hidden / self.chunk_elems))  # even chunks of rows
        x2d = x.reshape(rows, x.shape[-1])
        if with_grad:
            out = _MlpTrainFn.apply(x2d, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias, step)
            return out.view(*x.shape[:-1], -1)
        out = None
        for i in range(0, rows, step):
            y = self.fc2(self.act(self.fc1(x2d[i:i + step])))
            if out is None:
                out = y.new_empty(rows, y.shape[-1])
            out[i:i + step] = y
        return out.view(*x.shape[:-1], -1)


def _drop_path(p: float) -> nn.Module:
    if p <= 0:
        return nn.Identity()
    from timm.layers import DropPath  # imported here: see Twins._init_weights
    return DropPath(p)


class Block(nn.Module):
    def __init__(self, stage: StageConfig, kind: str, qkv_bias: bool = True, drop_path: float = 0.0):
        super().__init__()
        dim = stage.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        if kind == "L":
            self.attn = LocallyGroupedAttn(dim, stage.num_heads, stage.window, qkv_bias)
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

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Size]:
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
        self.norm = nn.LayerNorm(self.num_features, eps=1e-6)
        self.head = nn.Linear(self.num_features, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:  # as timm
        # imported when a model is built, not with this module: timm pulls in all its models and
        # torchvision (1-3 s), which commands that only use the cost model should not pay for
        from timm.layers import trunc_normal_
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.zeros_(m.bias)
            nn.init.ones_(m.weight)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                m.bias.data.zero_()

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return {"pos_block." + n for n, _ in self.pos_block.named_parameters()} if self.pos_block is not None else set()

    def forward_features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The map of every stage, (B, C_i, H_i, W_i), before the final norm."""
        feats = []
        B = x.shape[0]
        for i, (embed, blocks) in enumerate(zip(self.patch_embeds, self.blocks)):
            x, size = embed(x)
            for j, blk in enumerate(blocks):
                x = blk(x, size)
                if j == 0 and self.pos_block is not None:
                    x = self.pos_block[i](x, size)
            x = x.transpose(1, 2).view(B, -1, *size)  # (B, C, H, W), a view of the tokens
            feats.append(x)
        return feats

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Last stage map (B, C, H, W) -> final norm -> global average pool -> classifier."""
        x = self.norm(x.flatten(2).transpose(1, 2)).mean(dim=1)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x)[-1])


def build_model(cfg: ArchConfig | dict | str, seed: int | None = None) -> Twins:
    """Build the network for a config (an ArchConfig, its dict, a preset name or a JSON path).
    With `seed`, the initial weights are reproducible."""
    if isinstance(cfg, str):
        from ..config import load_config
        cfg = load_config(cfg)
    elif isinstance(cfg, dict):
        cfg = ArchConfig.from_dict(cfg)
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return Twins(cfg)
    return Twins(cfg)
