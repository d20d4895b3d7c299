"""CPU fast paths of the Twins layers: the maths of `twins.py`, arranged for a CPU.

Each function or module here computes what the plain layer in `twins.py` writes out, up to
float summation order, and falls back to the plain computation where its fast path does not
apply (another device, small inputs, autocast in training, or the switch below turned off):

* `fast_mlp`: fc1 -> GELU -> fc2 with a large hidden activation, in chunks of rows. A fresh
  large tensor comes from the OS page by page (a page fault on the first write to each page),
  so writing it costs more than the GELU computed into it; cache-sized chunks reuse memory
  the allocator already holds. In training, `_MlpTrainFn` keeps only fc1's output and makes
  GELU's output chunk by chunk, in forward and again in backward.
* `window_attention`: LSA's softmax(q kᵀ / sqrt(d)) v inside windows. On a CPU, windows of
  up to `EXPLICIT_MAX_TOKENS` tokens attend with explicit matmuls and softmax, since SDPA's
  CPU kernel is made for long sequences; longer windows and other devices use SDPA.
* `TokenConv`: GSA's strided conv (kernel = stride) on the channels-last tokens, as patchify
  plus one GEMM, instead of converting the tokens to a (B, C, H, W) map for `F.conv2d`, whose
  layout change and backward cost more.

One switch turns all of them off (the plain computation everywhere), like timm's
`use_fused_attn`: `set_fast_paths(False)`, the context manager `with fast_paths(False): ...`,
or the environment variable `TWINS_NAS_FAST_PATHS=0` (also `false`, `no`, `off`), read when
this module is imported. `fast_paths_enabled()` tells the current state.
"""
from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["EXPLICIT_MAX_TOKENS", "MLP_CHUNK_ELEMS", "MLP_MIN_CHUNKS", "TokenConv", "explicit_attention",
           "fast_mlp", "fast_paths", "fast_paths_enabled", "set_fast_paths", "token_conv", "window_attention"]

ENV_VAR = "TWINS_NAS_FAST_PATHS"
EXPLICIT_MAX_TOKENS = 64  # LSA windows of at most this many tokens attend with explicit matmuls on CPU
MLP_CHUNK_ELEMS = 1 << 20  # hidden activations per chunk of rows (4 MiB in fp32)
MLP_MIN_CHUNKS = 4  # the MLP is chunked only when its hidden activation exceeds this many chunks

_enabled = os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


# ---- the switch ----------------------------------------------------------------------------

def fast_paths_enabled() -> bool:
    """Whether the fast paths may run (each still checks that it applies to its input)."""
    return _enabled


def set_fast_paths(enabled: bool) -> None:
    """Turn every fast path on or off, process-wide. Off: the plain layers everywhere."""
    global _enabled
    _enabled = bool(enabled)


@contextlib.contextmanager
def fast_paths(enabled: bool) -> Iterator[None]:
    """`with fast_paths(False): ...` runs the block with the fast paths off (or on), then
    restores the previous state."""
    previous = _enabled
    set_fast_paths(enabled)
    try:
        yield
    finally:
        set_fast_paths(previous)


# ---- MLP ------------------------------------------------------------------------------------

class _MlpTrainFn(torch.autograd.Function):
    """fc1 -> GELU -> fc2 with autograd, for a large hidden activation on CPU.

    The plain graph keeps fc1's output h and GELU's output a (rows x hidden each) and makes two
    more tensors of that size in backward (the gradients of a and h). Here only h is kept: a is
    made and used a chunk of rows at a time (forward: fc2 per chunk; backward: fc2's weight
    gradient per chunk, GELU recomputed), and GELU's backward writes over the gradient of a,
    which this function made itself. Same maths; two hidden-sized tensors fewer per block.
    """

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, rows_per_chunk: int):  # x (R, C) -> (R, C_out)
        h = F.linear(x, w1, b1)  # (R, hidden), kept for backward
        out = x.new_empty(x.shape[0], w2.shape[0])
        for i in range(0, x.shape[0], rows_per_chunk):
            torch.addmm(b2, F.gelu(h[i:i + rows_per_chunk]), w2.t(), out=out[i:i + rows_per_chunk])
        ctx.save_for_backward(x, h, w1, w2)
        ctx.rows_per_chunk = rows_per_chunk
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # chunk by chunk of rows: no hidden-sized tensor is made
        x, h, w1, w2 = ctx.saved_tensors
        need_x, need_w1, need_b1, need_w2, need_b2, _ = ctx.needs_input_grad
        grad_out = grad_out.contiguous()
        grad_x = torch.empty_like(x) if need_x else None
        grad_w1 = torch.zeros_like(w1) if need_w1 else None
        grad_b1 = w1.new_zeros(w1.shape[0]) if need_b1 else None
        grad_w2 = torch.zeros_like(w2) if need_w2 else None
        for i in range(0, x.shape[0], ctx.rows_per_chunk):
            rows = slice(i, i + ctx.rows_per_chunk)
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


def _chunked_mlp(x2d: torch.Tensor, fc1: nn.Linear, fc2: nn.Linear, rows_per_chunk: int) -> torch.Tensor:
    """Inference: fc2(GELU(fc1(rows))) a chunk of rows at a time, into one output (R, C_out)."""
    out = None
    for i in range(0, x2d.shape[0], rows_per_chunk):
        y = fc2(F.gelu(fc1(x2d[i:i + rows_per_chunk])))
        if out is None:
            out = y.new_empty(x2d.shape[0], y.shape[-1])
        out[i:i + rows_per_chunk] = y
    assert out is not None  # fast_mlp calls this with at least one row
    return out


def fast_mlp(x: torch.Tensor, fc1: nn.Linear, fc2: nn.Linear) -> torch.Tensor | None:
    """fc2(GELU(fc1(x))) (exact GELU, as `nn.GELU()`) by a fast path, or None where none
    applies and the caller should run its plain layers.

    Applies on CPU when the hidden activation (rows x hidden) exceeds `MLP_MIN_CHUNKS` chunks
    of `MLP_CHUNK_ELEMS`; not in training under autocast. Rows are independent, so it runs
    on even chunks of rows: in inference by calling fc1 and fc2 per chunk (their forward
    hooks fire once per chunk), with autograd on through `_MlpTrainFn`, which uses their
    weights directly (their hooks do not fire).
    """
    if not _enabled or x.device.type != "cpu":
        return None
    rows, hidden = x.shape[:-1].numel(), fc1.out_features
    with_grad = torch.is_grad_enabled()  # autograd will need a backward (not module.training)
    if rows * hidden <= MLP_MIN_CHUNKS * MLP_CHUNK_ELEMS or (with_grad and torch.is_autocast_enabled("cpu")):
        return None
    rows_per_chunk = math.ceil(rows / math.ceil(rows * hidden / MLP_CHUNK_ELEMS))  # even chunks
    x2d = x.reshape(rows, x.shape[-1])
    if with_grad:
        out = _MlpTrainFn.apply(x2d, fc1.weight, fc1.bias, fc2.weight, fc2.bias, rows_per_chunk)
    else:
        out = _chunked_mlp(x2d, fc1, fc2, rows_per_chunk)
    return out.view(*x.shape[:-1], -1)


# ---- LSA ------------------------------------------------------------------------------------

def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                       scale: float) -> torch.Tensor:
    """softmax(scale * q kᵀ, masked keys -inf) v written out: what SDPA computes with a boolean mask."""
    attn = (q * scale) @ k.transpose(-2, -1)  # (..., Lq, Lk)
    if mask is not None:
        attn = attn.masked_fill(~mask, float("-inf"))
    return attn.softmax(dim=-1) @ v


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                     scale: float) -> torch.Tensor:
    """Multi-head attention inside windows: q, k, v (windows, heads, tokens, head_dim), `mask`
    (windows, 1, 1, tokens) boolean, True for a real key, or None -> (windows, heads, tokens,
    head_dim). `scale` must be 1/sqrt(head_dim), the one SDPA applies by default.

    On a CPU, windows of up to `EXPLICIT_MAX_TOKENS` tokens use `explicit_attention`;
    otherwise SDPA (called without `scale`, exactly as timm calls it). Masked keys get exactly
    zero attention either way. `scale` is a Python float passed in, not computed here from
    q's shape, so that a jit trace (fvcore) records no arithmetic on sizes.
    """
    if _enabled and q.device.type == "cpu" and q.shape[-2] <= EXPLICIT_MAX_TOKENS:
        return explicit_attention(q, k, v, mask, scale)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


# ---- GSA sub-sampling conv --------------------------------------------------------------------

class TokenConv(nn.Module):
    """GSA's strided conv on tokens: kernel = stride = (k1, k2), one output token per cell.

    forward(x (B, N, C_in) tokens of an H x W map, size (H, W)) -> (B, ceil(H/k1)*ceil(W/k2), C_out),
    cells in row-major order. The map is zero-padded at the bottom/right to whole cells, as
    `F.conv2d` on the zero-padded (B, C_in, H, W) map would see it, which is what runs when the
    fast paths are off. With them on, the tokens (already channels-last) are cut into patches
    (one copy) and multiplied by the weight in one GEMM.

    Holds a `nn.Conv2d`'s parameters under its names: `weight` (C_out, C_in, k1, k2) and `bias`
    (C_out), initialised as `nn.Conv2d` does (same draws from the RNG), so checkpoints of a
    Conv2d load as they are. It is not a `nn.Conv2d`: it takes and returns tokens.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int]):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As `nn.Conv2d.reset_parameters`: Kaiming-uniform weight, uniform bias in ±1/sqrt(fan_in)."""
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
            fan_in = self.weight[0].numel()  # C_in * k1 * k2
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.kernel_size}"

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return token_conv(x, size, self.weight, self.bias, (self.kernel_size[0], self.kernel_size[1]))


def token_conv(x: torch.Tensor, size: tuple[int, int], weight: torch.Tensor, bias: torch.Tensor | None,
               kernel: tuple[int, int]) -> torch.Tensor:
    """`TokenConv`'s computation with a given `weight` (C_out, C_in, k1, k2 = `kernel`) and `bias` (C_out):
    x (B, N, C_in) tokens of an H x W map -> (B, ceil(H/k1)*ceil(W/k2), C_out), zero padding at
    the bottom/right; the fast path (patchify + one GEMM) or, with the fast paths off, `F.conv2d`."""
    B, N, C = x.shape
    H, W = size
    k1, k2 = kernel
    pad_b, pad_r = (-H) % k1, (-W) % k2
    if not _enabled:  # plain: the conv on the (B, C, H, W) map
        x = x.transpose(1, 2).reshape(B, C, H, W)
        if pad_b or pad_r:
            x = F.pad(x, (0, pad_r, 0, pad_b))
        return F.conv2d(x, weight, bias, stride=kernel).flatten(2).transpose(1, 2)
    x = x.reshape(B, H, W, C)
    if pad_b or pad_r:
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    Hp, Wp = H + pad_b, W + pad_r
    # (B, Hp, Wp, C) -> (B, Hp/k1 * Wp/k2, k1*k2*C): one row per cell, its pixels row-major, channels last
    x = x.reshape(B, Hp // k1, k1, Wp // k2, k2, C).permute(0, 1, 3, 2, 4, 5).reshape(B, -1, k1 * k2 * C)
    w = weight.permute(0, 2, 3, 1).flatten(1)  # (C_out, k1*k2*C), same order
    return F.linear(x, w, bias)
