"""The CPU fast paths compute the same function and the same gradients as the plain layers.

* `Mlp`'s chunked paths (inference, and `_MlpTrainFn` in training) against fc2(GELU(fc1(x)))
  written out with F.linear / F.gelu and differentiated by autograd, in float64, with uneven
  chunks; `_MlpTrainFn` also against finite differences (gradcheck).
* `TokenConv` (patchify + GEMM on (B, H, W, C) tokens) against `F.conv2d` on (B, C, H, W).
* A whole preset's training gradients against timm's, at a size where the chunked path runs.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from twins_nas.models import build_model
from twins_nas.models.twins import Mlp, TokenConv, _MlpTrainFn
from twins_nas.presets import TIMM_NAMES, get_preset

pytestmark = pytest.mark.usefixtures("single_thread")


def _train_path(out) -> bool:
    """Whether `out` (an Mlp's output, possibly a view of it) came from `_MlpTrainFn`."""
    fn = out.grad_fn
    while fn is not None and type(fn).__name__ == "ViewBackward0":
        fn = fn.next_functions[0][0]
    return fn is not None and type(fn).__name__.startswith("_MlpTrainFn")


def _reference(x, mlp):
    return F.linear(F.gelu(F.linear(x, mlp.fc1.weight, mlp.fc1.bias)), mlp.fc2.weight, mlp.fc2.bias)


def _small_mlp(dim, hidden, rows, seed):
    torch.manual_seed(seed)
    mlp = Mlp(dim, hidden).double()
    # chunk so that this input takes the chunked path, in several (often uneven) chunks
    mlp.chunk_elems = max(1, rows * hidden // 7)
    assert rows * hidden > 4 * mlp.chunk_elems
    return mlp


@settings(max_examples=40, deadline=None)
@given(dim=st.integers(1, 12), hidden=st.integers(1, 40), lead=st.lists(st.integers(1, 9), min_size=1, max_size=2),
       grads=st.sets(st.sampled_from(["x", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]), min_size=1),
       seed=st.integers(0, 2 ** 16))
def test_mlp_training_path_matches_autograd_of_the_plain_layers(dim, hidden, lead, grads, seed):
    rows = math.prod(lead)
    if rows < 5:
        lead = [rows + 5]
        rows = lead[0]
    mlp = _small_mlp(dim, hidden, rows, seed)
    x = torch.randn(*lead, dim, dtype=torch.float64)
    for name, p in mlp.named_parameters():
        p.requires_grad_(name in grads)
    x.requires_grad_("x" in grads)
    g = torch.randn(*lead, dim, dtype=torch.float64)

    out = mlp(x)
    assert _train_path(out), "the chunked training path did not run"
    wanted = [t for t in [x, *mlp.parameters()] if t.requires_grad]
    got = torch.autograd.grad(out, wanted, g)
    ref_out = _reference(x, mlp)
    ref = torch.autograd.grad(ref_out, wanted, g)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-12)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(dim=st.integers(1, 12), hidden=st.integers(1, 40), rows=st.integers(5, 60), seed=st.integers(0, 2 ** 16))
def test_mlp_inference_path_matches_the_plain_layers(dim, hidden, rows, seed):
    mlp = _small_mlp(dim, hidden, rows, seed)
    x = torch.randn(2, rows, dim, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(mlp(x), _reference(x, mlp), rtol=1e-10, atol=1e-12)


def test_mlp_train_fn_passes_gradcheck():
    torch.manual_seed(0)
    x = torch.randn(11, 3, dtype=torch.float64, requires_grad=True)
    w1 = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    b1 = torch.randn(5, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    b2 = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: _MlpTrainFn.apply(*t, 4), (x, w1, b1, w2, b2))


def test_small_and_autocast_inputs_take_the_plain_path():
    mlp = Mlp(8, 32)
    assert not _train_path(mlp(torch.randn(3, 8, requires_grad=True)))
    mlp.chunk_elems = 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = mlp(torch.randn(50, 8, requires_grad=True))
    assert not _train_path(out)


@settings(max_examples=40, deadline=None)
@given(k1=st.integers(1, 5), k2=st.integers(1, 5), gh=st.integers(1, 4), gw=st.integers(1, 4),
       cut_h=st.integers(0, 4), cut_w=st.integers(0, 4),
       cin=st.integers(1, 6), cout=st.integers(1, 6), seed=st.integers(0, 2 ** 16))
def test_token_conv_on_tokens_equals_conv2d_on_the_map(k1, k2, gh, gw, cut_h, cut_w, cin, cout, seed):
    """Whole cells, and maps cut short of them (zero-padded at the bottom/right, as GSA does)."""
    torch.manual_seed(seed)
    conv = TokenConv(cin, cout, (k1, k2), stride=(k1, k2)).double()
    H, W = gh * k1 - min(cut_h, k1 - 1), gw * k2 - min(cut_w, k2 - 1)
    x = torch.randn(2, H, W, cin, dtype=torch.float64, requires_grad=True)
    out = conv(x)  # (B, gh*gw, cout)
    padded = F.pad(x.permute(0, 3, 1, 2), (0, gw * k2 - W, 0, gh * k1 - H))
    ref = F.conv2d(padded, conv.weight, conv.bias, stride=(k1, k2)).flatten(2).transpose(1, 2)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(ref)
    got = torch.autograd.grad(out, [x, conv.weight, conv.bias], g)
    want = torch.autograd.grad(ref, [x, conv.weight, conv.bias], g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["twins-pcpvt-s", "twins-svt-s"])
def test_training_gradients_equal_timm(name):
    """Batch 2 at 224 px with 16K-element chunks: every MLP takes the chunked training path
    (stage 1 in 100-200 chunks) and every GSA conv the TokenConv path; every gradient must be
    timm's."""
    import timm
    torch.manual_seed(0)
    theirs = timm.create_model(TIMM_NAMES[name], pretrained=False)
    ours = build_model(get_preset(name))
    ours.load_state_dict(theirs.state_dict())
    ours.train(), theirs.train()
    for m in theirs.modules():  # no stochastic layers in the presets, but be sure
        assert not isinstance(m, torch.nn.Dropout) or m.p == 0
    x = torch.randn(2, 3, 224, 224)
    y = torch.tensor([3, 7])
    took = []
    for mlp in (m for m in ours.modules() if isinstance(m, Mlp)):
        mlp.chunk_elems = 1 << 14
        mlp.register_forward_hook(lambda m, i, o: took.append(_train_path(o)))
    F.cross_entropy(ours(x), y).backward()
    F.cross_entropy(theirs(x), y).backward()
    assert len(took) == sum(get_preset(name).depths) and all(took), took
    theirs_grads = dict(theirs.named_parameters())
    for n, p in ours.named_parameters():
        ref = theirs_grads[n].grad
        torch.testing.assert_close(p.grad, ref, rtol=1e-3, atol=1e-3 * ref.abs().max().item() + 1e-9, msg=n)
