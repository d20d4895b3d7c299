"""LSA and GSA on maps their window / k does not divide, against brute-force references
written here from the paper's definitions (plain loops and matmuls, float64):

* LSA: tile the map into m x n windows from the top-left; every real token attends to the
  real tokens of its own window only (padding never takes part), with the module's qkv and
  proj weights; softmax(q k^T / sqrt(d)) v per head.
* GSA: every query attends to one representative per k1 x k2 cell (cells tiled from the
  top-left, the last row/column of cells cut by the map border): the average over the cell's
  real tokens for `avgpool`; the strided conv over the cell with zeros outside the map for
  `conv` / `dwconv`; then LayerNorm, then attention.

Both ways LSA attends on a CPU (SDPA, and explicit softmax(QKᵀ)V for small windows) and both
ways GSA's conv runs (patchify + GEMM, `F.conv2d`) are checked, through the fast-path switch.
Also: timm's unmasked LSA agrees on divisible maps and differs on padded ones (why we mask).
"""
from __future__ import annotations

import math
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from strategies import randomize_
from timm.models.twins import LocallyGroupedAttn as TimmLSA

import twins_nas.models.twins as twins_mod
from twins_nas.models import cpu_fast_paths as kernels
from twins_nas.models import lsa_key_mask
from twins_nas.models.cpu_fast_paths import fast_paths
from twins_nas.models.twins import GlobalSubSampleAttn, LocallyGroupedAttn

pytestmark = pytest.mark.usefixtures("single_thread")
SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
TOL = 1e-5


def linear(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    y = x @ layer.weight.T
    return y + layer.bias if layer.bias is not None else y


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """(Nq, C), (Nk, C), (Nk, C) -> (Nq, C): multi-head softmax(q k^T / sqrt(d)) v, heads as
    consecutive channel groups (timm's layout)."""
    d = q.shape[-1] // heads
    out = []
    for i in range(heads):
        sl = slice(i * d, (i + 1) * d)
        a = torch.softmax(q[:, sl] @ k[:, sl].T / math.sqrt(d), dim=-1)
        out.append(a @ v[:, sl])
    return torch.cat(out, dim=-1)


def brute_lsa(mod: LocallyGroupedAttn, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    B, N, C = x.shape
    (H, W), (m, n) = size, mod.window
    grid = x.view(B, H, W, C)
    out = torch.zeros_like(grid)
    for b in range(B):
        for r0 in range(0, H, m):
            for c0 in range(0, W, n):
                rows, cols = range(r0, min(r0 + m, H)), range(c0, min(c0 + n, W))
                tok = torch.stack([grid[b, r, c] for r in rows for c in cols])  # real tokens only
                qkv = linear(tok, mod.qkv)  # channels: (3, heads, head_dim)
                y = linear(attend(qkv[:, :C], qkv[:, C:2 * C], qkv[:, 2 * C:], mod.num_heads), mod.proj)
                for t, (r, c) in enumerate((r, c) for r in rows for c in cols):
                    out[b, r, c] = y[t]
    return out.view(B, N, C)


def layer_norm(x: torch.Tensor, ln: torch.nn.LayerNorm) -> torch.Tensor:
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def brute_gsa(mod: GlobalSubSampleAttn, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    B, N, C = x.shape
    H, W = size
    k1, k2 = mod.sr_ratio
    grid = x.view(B, H, W, C)
    out = []
    for b in range(B):
        if mod.sr is None:
            src = x[b]
        else:
            reps = []
            for r0 in range(0, H, k1):
                for c0 in range(0, W, k2):
                    cells = [(r, c) for r in range(r0, min(r0 + k1, H)) for c in range(c0, min(c0 + k2, W))]
                    if mod.subsample == "avgpool":
                        rep = torch.stack([grid[b, r, c] for r, c in cells]).mean(0)
                    elif mod.subsample == "conv":  # cells outside the map are zeros: they add nothing
                        w = mod.sr.weight  # (C_out, C_in, k1, k2)
                        rep = mod.sr.bias + sum(w[:, :, r - r0, c - c0] @ grid[b, r, c] for r, c in cells)
                    else:  # dwconv: depthwise (no bias) then pointwise 1x1
                        dw = mod.sr.dw.weight[:, 0]  # (C, k1, k2)
                        z = sum(dw[:, r - r0, c - c0] * grid[b, r, c] for r, c in cells)
                        rep = mod.sr.pw.weight[:, :, 0, 0] @ z + mod.sr.pw.bias
                    reps.append(rep)
            assert len(reps) == math.ceil(H / k1) * math.ceil(W / k2)
            src = layer_norm(torch.stack(reps), mod.norm)
        kv = linear(src, mod.kv)  # channels: (2, heads, head_dim)
        out.append(linear(attend(linear(x[b], mod.q), kv[:, :C], kv[:, C:], mod.num_heads), mod.proj))
    return torch.stack(out)


def make_lsa(dim: int, heads: int, window, seed: int = 0) -> LocallyGroupedAttn:
    torch.manual_seed(seed)
    mod = LocallyGroupedAttn(dim, heads, window).double().eval()
    randomize_(mod, torch.Generator().manual_seed(seed), scale=0.3)  # non-zero biases too
    return mod


def tokens(B: int, H: int, W: int, C: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(B, H * W, C, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# ---- LSA vs brute force ------------------------------------------------------------------

@settings(max_examples=150, **SETTINGS)
@given(H=st.integers(1, 17), W=st.integers(1, 17), m=st.integers(1, 9), n=st.integers(1, 9),
       heads=st.integers(1, 3), head_dim=st.sampled_from([2, 5]), seed=st.integers(0, 1000))
@example(H=8, W=7, m=4, n=4, heads=2, head_dim=2, seed=0)    # padding at the right only
@example(H=7, W=8, m=4, n=4, heads=2, head_dim=2, seed=0)    # padding at the bottom only
@example(H=5, W=7, m=4, n=3, heads=1, head_dim=5, seed=1)    # both, non-square window
@example(H=3, W=5, m=9, n=8, heads=3, head_dim=2, seed=2)    # window bigger than the map
@example(H=3, W=14, m=9, n=4, heads=2, head_dim=2, seed=3)   # bigger on one side, padded on the other
@example(H=12, W=12, m=4, n=6, heads=2, head_dim=5, seed=4)  # divisible
def test_lsa_matches_brute_force(H, W, m, n, heads, head_dim, seed):
    C = heads * head_dim
    mod = make_lsa(C, heads, (m, n), seed)
    x = tokens(2, H, W, C, seed)
    want = brute_lsa(mod, x, (H, W))
    for explicit in (False, True):  # both ways LSA can attend on CPU, whatever the window's size
        with fast_paths(explicit), mock.patch.object(kernels, "EXPLICIT_MAX_TOKENS", 10 ** 9), \
                mock.patch.object(kernels, "explicit_attention", wraps=kernels.explicit_attention) as spy, \
                torch.no_grad():
            got = mod(x, (H, W))
        path = "explicit softmax" if explicit else "SDPA"
        assert spy.called == explicit, f"{path} expected"
        assert got.shape == x.shape
        assert max_diff(got, want) <= TOL, f"{path}: H,W={H},{W} window={m}x{n}: {max_diff(got, want):.3g}"


def test_lsa_float32_matches_brute_force():
    mod = make_lsa(8, 2, (4, 3))
    x = tokens(1, 9, 10, 8)
    with torch.no_grad():
        want = brute_lsa(mod, x, (9, 10))
        got = mod.float()(x.float(), (9, 10))
    assert max_diff(got.double(), want) <= 1e-5


@pytest.mark.parametrize("H, W", [(5, 7), (5, 8), (4, 7)])
def test_partial_window_equals_attention_on_that_window_alone(H, W):
    """A window cut by the border must behave as if the map ended there: its real tokens
    give exactly what the same module gives on a map holding only those tokens (where no
    padding exists), whatever the padding around them would hold."""
    m, n, C = 4, 4, 6
    mod = make_lsa(C, 2, (m, n))
    x = tokens(1, H, W, C)
    with torch.no_grad():
        full = mod(x, (H, W)).view(1, H, W, C)
        r0, c0 = (H - 1) // m * m, (W - 1) // n * n  # the last (bottom-right) window
        part = x.view(1, H, W, C)[:, r0:, c0:].contiguous()
        h, w = part.shape[1:3]
        alone = mod(part.view(1, h * w, C), (h, w)).view(1, h, w, C)
    assert max_diff(full[:, r0:, c0:], alone) <= TOL


def test_padded_keys_get_zero_attention_whatever_the_padding_holds(monkeypatch):
    """Replace the zeros the LSA pads with by large random values: the output must not move."""
    H, W, C = 6, 7, 8
    mod = make_lsa(C, 2, (4, 4))
    x = tokens(2, H, W, C)
    with torch.no_grad():
        clean = mod(x, (H, W))
    real_pad, calls = F.pad, []

    def junk_pad(t, pad, *args, **kwargs):
        out = real_pad(t, pad, *args, **kwargs)
        junk = torch.randn(out.shape, generator=torch.Generator().manual_seed(len(calls)), dtype=out.dtype) * 100
        inside = real_pad(torch.ones_like(t, dtype=torch.bool), pad)
        calls.append(pad)
        return torch.where(inside, out, junk)

    class Shim:  # torch.nn.functional with a pad that fills with junk
        def __getattr__(self, name):
            return junk_pad if name == "pad" else getattr(F, name)

    monkeypatch.setattr(twins_mod, "F", Shim())
    with torch.no_grad():
        dirty = mod(x, (H, W))
    assert calls, "LSA no longer pads through F.pad: this test must learn the new padding path"
    assert max_diff(clean, dirty) <= TOL
    assert max_diff(clean, brute_lsa(mod, x, (H, W))) <= TOL


def test_lsa_key_mask_marks_exactly_the_real_tokens():
    H, W, m, n = 5, 7, 4, 3
    mask = lsa_key_mask((H, W), (m, n))
    gh, gw = math.ceil(H / m), math.ceil(W / n)
    assert mask.shape == (gh * gw, m * n)
    for a in range(gh):
        for b in range(gw):
            want = [a * m + i < H and b * n + j < W for i in range(m) for j in range(n)]
            assert mask[a * gw + b].tolist() == want
    assert lsa_key_mask((8, 6), (4, 3)) is None


def _timm_lsa_like(mod: LocallyGroupedAttn, ws: int) -> TimmLSA:
    ref = TimmLSA(mod.qkv.in_features, mod.num_heads, ws=ws).double().eval()
    ref.load_state_dict(mod.state_dict())
    return ref


def test_timm_unmasked_lsa_agrees_on_divisible_maps():
    mod = make_lsa(8, 2, (4, 4))
    ref = _timm_lsa_like(mod, 4)
    x = tokens(2, 8, 12, 8)
    with torch.no_grad():
        assert max_diff(mod(x, (8, 12)), ref(x, (8, 12))) <= TOL


@pytest.mark.parametrize("H, W", [(5, 7), (8, 7), (7, 8)])
def test_timm_unmasked_lsa_differs_on_padded_maps(H, W):
    """timm pads with zeros *before* qkv and lets the padded keys (= the k bias) take
    attention weight: the border windows come out different. Ours equals the brute force."""
    mod = make_lsa(8, 2, (4, 4))
    ref = _timm_lsa_like(mod, 4)
    x = tokens(1, H, W, 8)
    with torch.no_grad():
        ours, theirs, want = mod(x, (H, W)), ref(x, (H, W)), brute_lsa(mod, x, (H, W))
    assert max_diff(ours, want) <= TOL
    assert max_diff(theirs, want) > 1e-3
    # windows that are not padded agree with timm
    full = torch.zeros(H, W, dtype=torch.bool)
    full[:H // 4 * 4, :W // 4 * 4] = True
    sel = full.flatten()
    assert max_diff(ours[:, sel], theirs[:, sel]) <= TOL


# ---- GSA vs brute force ------------------------------------------------------------------

def make_gsa(dim: int, heads: int, k, subsample: str, seed: int = 0) -> GlobalSubSampleAttn:
    torch.manual_seed(seed)
    mod = GlobalSubSampleAttn(dim, heads, k, subsample).double().eval()
    randomize_(mod, torch.Generator().manual_seed(seed), scale=0.3)
    return mod


@settings(max_examples=150, **SETTINGS)
@given(H=st.integers(1, 13), W=st.integers(1, 13), k1=st.integers(1, 6), k2=st.integers(1, 6),
       subsample=st.sampled_from(["conv", "dwconv", "avgpool"]), heads=st.integers(1, 3),
       seed=st.integers(0, 1000))
@example(H=7, W=9, k1=2, k2=4, subsample="avgpool", heads=2, seed=0)  # non-divisible, avgpool
@example(H=7, W=9, k1=2, k2=4, subsample="conv", heads=2, seed=0)     # non-divisible, conv
@example(H=3, W=5, k1=4, k2=8, subsample="avgpool", heads=1, seed=1)  # map smaller than k
@example(H=3, W=5, k1=4, k2=8, subsample="conv", heads=1, seed=1)
@example(H=3, W=5, k1=4, k2=8, subsample="dwconv", heads=1, seed=1)
@example(H=1, W=1, k1=6, k2=6, subsample="avgpool", heads=1, seed=2)
@example(H=8, W=12, k1=4, k2=4, subsample="conv", heads=3, seed=3)    # divisible
@example(H=5, W=6, k1=1, k2=1, subsample="conv", heads=2, seed=4)     # k = 1: global attention
def test_gsa_matches_brute_force(H, W, k1, k2, subsample, heads, seed):
    C = heads * 4
    mod = make_gsa(C, heads, (k1, k2), subsample, seed)
    x = tokens(2, H, W, C, seed)
    with torch.no_grad():
        want = brute_gsa(mod, x, (H, W))
        for enabled in (True, False):  # conv: patchify + GEMM on the tokens, or F.conv2d on the map
            with fast_paths(enabled):
                got = mod(x, (H, W))
            assert got.shape == x.shape
            assert max_diff(got, want) <= TOL, \
                f"{subsample} fast={enabled} H,W={H},{W} k={k1}x{k2}: {max_diff(got, want):.3g}"


@pytest.mark.parametrize("subsample", ["conv", "avgpool"])
def test_gsa_border_cells_have_their_own_representative(subsample):
    """On a 5x5 map with k=2 every token must be seen: changing only the last row/column
    (which a flooring sub-sampler would drop) changes the output of every query."""
    mod = make_gsa(8, 2, (2, 2), subsample)
    x = tokens(1, 5, 5, 8)
    y = x.clone().view(1, 5, 5, 8)
    g = torch.Generator().manual_seed(5)
    y[:, 4, :] += torch.randn(5, 8, generator=g, dtype=y.dtype)  # not a constant shift: LayerNorm removes those
    y[:, :, 4] += torch.randn(5, 8, generator=g, dtype=y.dtype)
    with torch.no_grad():
        a, b = mod(x, (5, 5)), mod(y.view(1, 25, 8), (5, 5))
    assert ((a - b).abs().amax(-1) > 1e-6).all()  # interior queries too: their keys moved
