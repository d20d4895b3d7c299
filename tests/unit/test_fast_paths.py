"""The CPU fast paths of `twins_nas.models.cpu_fast_paths` compute the same function and the same
gradients as the plain layers, and the switch turns each of them off.

* `fast_mlp`'s chunked paths (inference, and `_MlpTrainFn` in training) against
  fc2(GELU(fc1(x))) written out with F.linear / F.gelu and differentiated by autograd, in
  float64, with uneven chunks; `_MlpTrainFn` also against finite differences (gradcheck).
* `TokenConv` (patchify + GEMM on (B, N, C) tokens) against `F.conv2d` on (B, C, H, W), and its
  initial weights against `nn.Conv2d`'s.
* A whole preset's training gradients against timm's, at a size where the chunked path runs,
  and with the fast paths off.
* The switch: `set_fast_paths` / `fast_paths(...)` and `TWINS_NAS_FAST_PATHS=0` (in a fresh
  interpreter) leave no fast path running: spies on each kernel and on the plain ops.
(The explicit-softmax LSA against the brute-force window loop: `test_lsa_mask.py`.)
"""
from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
from unittest import mock

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from twins_nas.models import build_model
from twins_nas.models import cpu_fast_paths as kernels
from twins_nas.models.cpu_fast_paths import TokenConv, _MlpTrainFn, fast_paths, fast_paths_enabled, set_fast_paths
from twins_nas.models.twins import GlobalSubSampleAttn, LocallyGroupedAttn, Mlp
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


def _chunks(elems: int):
    """Chunks of `elems` hidden activations (instead of cache-sized ones): small inputs take the
    chunked paths, in several chunks."""
    return mock.patch.object(kernels, "MLP_CHUNK_ELEMS", elems)


def _small_mlp(dim, hidden, rows, seed):
    """An Mlp and a chunk size with which `rows` rows take the chunked path, in several (often
    uneven) chunks."""
    torch.manual_seed(seed)
    mlp = Mlp(dim, hidden).double()
    chunk = max(1, rows * hidden // 7)
    assert rows * hidden > kernels.MLP_MIN_CHUNKS * chunk
    return mlp, chunk


@settings(max_examples=40, deadline=None)
@given(dim=st.integers(1, 12), hidden=st.integers(1, 40), lead=st.lists(st.integers(1, 9), min_size=1, max_size=2),
       grads=st.sets(st.sampled_from(["x", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]), min_size=1),
       seed=st.integers(0, 2 ** 16))
def test_mlp_training_path_matches_autograd_of_the_plain_layers(dim, hidden, lead, grads, seed):
    rows = math.prod(lead)
    if rows < 5:
        lead = [rows + 5]
        rows = lead[0]
    mlp, chunk = _small_mlp(dim, hidden, rows, seed)
    x = torch.randn(*lead, dim, dtype=torch.float64)
    for name, p in mlp.named_parameters():
        p.requires_grad_(name in grads)
    x.requires_grad_("x" in grads)
    g = torch.randn(*lead, dim, dtype=torch.float64)

    with _chunks(chunk):
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
    mlp, chunk = _small_mlp(dim, hidden, rows, seed)
    x = torch.randn(2, rows, dim, dtype=torch.float64)
    with _chunks(chunk), mock.patch.object(kernels, "_chunked_mlp", wraps=kernels._chunked_mlp) as spy, \
            torch.no_grad():
        got = mlp(x)
    assert spy.call_count == 1, "the chunked inference path did not run"
    torch.testing.assert_close(got, _reference(x, mlp), rtol=1e-10, atol=1e-12)


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
    with _chunks(1), torch.autocast("cpu", dtype=torch.bfloat16):
        out = mlp(torch.randn(50, 8, requires_grad=True))
    assert not _train_path(out)


# ---- TokenConv ---------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(k1=st.integers(1, 5), k2=st.integers(1, 5), gh=st.integers(1, 4), gw=st.integers(1, 4),
       cut_h=st.integers(0, 4), cut_w=st.integers(0, 4),
       cin=st.integers(1, 6), cout=st.integers(1, 6), seed=st.integers(0, 2 ** 16))
def test_token_conv_on_tokens_equals_conv2d_on_the_map(k1, k2, gh, gw, cut_h, cut_w, cin, cout, seed):
    """Whole cells, and maps cut short of them (zero-padded at the bottom/right, as GSA does),
    with the fast path on and off."""
    torch.manual_seed(seed)
    conv = TokenConv(cin, cout, (k1, k2)).double()
    H, W = gh * k1 - min(cut_h, k1 - 1), gw * k2 - min(cut_w, k2 - 1)
    x = torch.randn(2, H * W, cin, dtype=torch.float64, requires_grad=True)
    padded = F.pad(x.transpose(1, 2).reshape(2, cin, H, W), (0, gw * k2 - W, 0, gh * k1 - H))
    ref = F.conv2d(padded, conv.weight, conv.bias, stride=(k1, k2)).flatten(2).transpose(1, 2)
    g = torch.randn_like(ref)
    want = torch.autograd.grad(ref, [x, conv.weight, conv.bias], g)
    for enabled in (True, False):
        with fast_paths(enabled):
            out = conv(x, (H, W))  # (B, gh*gw, cout)
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
        got = torch.autograd.grad(out, [x, conv.weight, conv.bias], g)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cin, cout, k", [(5, 7, (2, 3)), (64, 64, (8, 8)), (3, 1, (1, 1))])
def test_token_conv_holds_a_conv2d_s_parameters_and_init(cin, cout, k):
    """Same names, shapes and initial values as `nn.Conv2d(cin, cout, k, stride=k)` built from
    the same RNG state (its state dict loads strictly in both directions); not a Conv2d."""
    torch.manual_seed(3)
    conv = nn.Conv2d(cin, cout, k, stride=k)
    after_conv = torch.rand(1)
    torch.manual_seed(3)
    tok = TokenConv(cin, cout, k)
    assert torch.equal(torch.rand(1), after_conv), "TokenConv drew from the RNG differently"
    assert not isinstance(tok, nn.Conv2d)
    a, b = tok.state_dict(), conv.state_dict()
    assert list(a) == list(b) == ["weight", "bias"]
    assert all(torch.equal(a[n], b[n]) for n in a)
    tok.load_state_dict(conv.state_dict(), strict=True)
    conv.load_state_dict(tok.state_dict(), strict=True)


# ---- whole model against timm ------------------------------------------------------------------

@pytest.mark.parametrize("name, enabled", [("twins-pcpvt-s", True), ("twins-svt-s", True), ("twins-svt-s", False)])
def test_training_gradients_equal_timm(name, enabled, monkeypatch):
    """Batch 2 at 224 px with 16K-element chunks: every MLP takes the chunked training path
    (stage 1 in 100-200 chunks) and every GSA conv the TokenConv path; every gradient must be
    timm's. With the fast paths off, none of them runs and the gradients are timm's too."""
    import timm  # heavy import: see README
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
    monkeypatch.setattr(kernels, "MLP_CHUNK_ELEMS", 1 << 14)
    for mlp in (m for m in ours.modules() if isinstance(m, Mlp)):
        mlp.register_forward_hook(lambda m, i, o: took.append(_train_path(o)))
    with fast_paths(enabled):
        F.cross_entropy(ours(x), y).backward()
    F.cross_entropy(theirs(x), y).backward()
    assert len(took) == sum(get_preset(name).depths) and all(t == enabled for t in took), took
    theirs_grads = dict(theirs.named_parameters())
    for n, p in ours.named_parameters():
        ref = theirs_grads[n].grad
        torch.testing.assert_close(p.grad, ref, rtol=1e-3, atol=1e-3 * ref.abs().max().item() + 1e-9, msg=n)


# ---- the switch --------------------------------------------------------------------------------

def test_switch_api_sets_and_restores_the_state():
    before = fast_paths_enabled()
    try:
        set_fast_paths(True)
        with fast_paths(False):
            assert not fast_paths_enabled()
            with fast_paths(True):
                assert fast_paths_enabled()
            assert not fast_paths_enabled()
        assert fast_paths_enabled()
        with pytest.raises(RuntimeError), fast_paths(False):
            raise RuntimeError
        assert fast_paths_enabled(), "the context manager did not restore the state after an error"
        set_fast_paths(False)
        assert not fast_paths_enabled()
    finally:
        set_fast_paths(before)


def _spies():
    """Spies on every fast path and on the plain ops they replace (counts of calls)."""
    return {
        "chunked_mlp": mock.patch.object(kernels, "_chunked_mlp", wraps=kernels._chunked_mlp),
        "mlp_train_fn": mock.patch.object(_MlpTrainFn, "apply", wraps=_MlpTrainFn.apply),
        "explicit_attention": mock.patch.object(kernels, "explicit_attention", wraps=kernels.explicit_attention),
        "sdpa": mock.patch.object(F, "scaled_dot_product_attention", wraps=F.scaled_dot_product_attention),
        "conv2d": mock.patch.object(F, "conv2d", wraps=F.conv2d),
    }


@pytest.mark.parametrize("enabled", [True, False])
def test_switch_turns_every_fast_path_off(enabled):
    """On CPU inputs where each fast path applies: with the switch on, each kernel runs; off,
    none does, and the plain ops (SDPA for the 3 x 4 windows, F.conv2d for GSA's conv) run
    instead. The outputs are the same either way (up to float summation order)."""
    torch.manual_seed(0)
    mlp, lsa = Mlp(8, 64), LocallyGroupedAttn(8, 2, (3, 4))
    gsa = GlobalSubSampleAttn(8, 2, (2, 2), "conv")
    x_mlp = torch.randn(2, 1 + kernels.MLP_MIN_CHUNKS * kernels.MLP_CHUNK_ELEMS // (2 * 64), 8)  # > 4 chunks
    x_map = torch.randn(2, 5 * 7, 8)
    with fast_paths(enabled), contextlib.ExitStack() as stack:
        s = {name: stack.enter_context(patcher) for name, patcher in _spies().items()}
        with torch.no_grad():
            mlp_eval = mlp(x_mlp)
            lsa_out, gsa_out = lsa(x_map, (5, 7)), gsa(x_map, (5, 7))
        mlp_train = mlp(x_mlp.requires_grad_())
    on = int(enabled)
    assert s["chunked_mlp"].call_count == on and s["mlp_train_fn"].call_count == on
    assert _train_path(mlp_train) == enabled
    assert s["explicit_attention"].call_count == on
    assert s["sdpa"].call_count == (1 if enabled else 2)  # GSA always; LSA only when off
    assert s["conv2d"].call_count == 1 - on
    with torch.no_grad():
        want = _reference(x_mlp, mlp)
    torch.testing.assert_close(mlp_eval, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mlp_train.detach(), want, rtol=1e-5, atol=1e-5)
    assert lsa_out.shape == gsa_out.shape == x_map.shape


_CHILD = """
import torch
from twins_nas.models.cpu_fast_paths import fast_paths_enabled
from twins_nas.models.twins import Mlp
rows = 70_000  # x 64 hidden: more than 4 chunks of 2**20
fn = Mlp(8, 64)(torch.randn(rows, 8)).grad_fn
while type(fn).__name__ == "ViewBackward0":
    fn = fn.next_functions[0][0]
print(fast_paths_enabled(), type(fn).__name__)
"""


@pytest.mark.parametrize("value, enabled", [("0", False), ("off", False), ("1", True), (None, True)])
def test_environment_variable_is_read_at_import(value, enabled):
    env = {k: v for k, v in os.environ.items() if k != "TWINS_NAS_FAST_PATHS"}
    if value is not None:
        env["TWINS_NAS_FAST_PATHS"] = value
    env["OMP_NUM_THREADS"] = "1"
    res = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    state, node = res.stdout.split()
    assert state == str(enabled)
    assert node.startswith("_MlpTrainFn") == enabled, node
