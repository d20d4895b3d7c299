"""Properties of the parametric model over random valid configs and input sizes: every
config builds and runs at any H x W (independently, 32-320 px), each stage map has the size
the patch embeddings' floors give, nothing is NaN/inf, samples in a batch do not interact,
and stochastic depth follows timm's rule and trains (backward); GSA's parameter names per
sub-sampler (a checkpoint contract)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from strategies import arch_configs, reduction
from timm.layers import DropPath, calculate_drop_path_rates

from twins_nas import ArchConfig, build_model
from twins_nas.models.twins import GlobalSubSampleAttn

pytestmark = pytest.mark.usefixtures("single_thread")
SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def floor_sizes(cfg: ArchConfig, h: int, w: int) -> list[tuple[int, int]]:
    """Stage map sizes computed here: every patch embedding is a conv with kernel = stride = p
    and no padding, so it maps n pixels to floor(n / p)."""
    out = []
    for s in cfg.stages:
        h, w = h // s.patch_size, w // s.patch_size
        out.append((h, w))
    return out


@settings(max_examples=80, **SETTINGS)
@given(cfg_dict=arch_configs(), h=st.integers(32, 320), w=st.integers(32, 320), seed=st.integers(0, 2 ** 16))
@example(  # one window bigger than the map on one side only, k pair bigger than the map, all sub-samplers
    cfg_dict=dict(stages=[
        dict(patch_size=4, embed_dim=8, depth=2, num_heads=2, mlp_ratio=2.0, window=[20, 3], sr_ratio=[12, 1],
             subsample="avgpool", pattern="LG"),
        dict(patch_size=2, embed_dim=12, depth=3, num_heads=3, mlp_ratio=1.0, window=[5, 7], sr_ratio=[3, 5],
             subsample="dwconv", pattern="LLG"),
        dict(patch_size=2, embed_dim=16, depth=2, num_heads=1, mlp_ratio=4.0, window=[9, 9], sr_ratio=9,
             subsample="conv", pattern="GL"),
        dict(patch_size=2, embed_dim=16, depth=1, num_heads=2, mlp_ratio=0.5, window=None, sr_ratio=1,
             subsample="conv", pattern="G"),
    ], num_classes=10), h=37, w=301, seed=0)
def test_random_config_runs_at_any_size(cfg_dict, h, w, seed):
    check_runs_at_size(cfg_dict, h, w, seed)


@pytest.mark.slow
@settings(max_examples=600, **SETTINGS)
@given(cfg_dict=arch_configs(), h=st.integers(32, 320), w=st.integers(32, 320), seed=st.integers(0, 2 ** 16))
def test_random_config_runs_at_any_size_many(cfg_dict, h, w, seed):
    """The same on 600 random configs and sizes (the default run takes 80)."""
    check_runs_at_size(cfg_dict, h, w, seed)


def check_runs_at_size(cfg_dict: dict, h: int, w: int, seed: int) -> None:
    cfg = ArchConfig.from_dict(cfg_dict)
    assert reduction(cfg_dict) <= 32
    model = build_model(cfg, seed=seed).eval()
    x = torch.randn(2, cfg.in_chans, h, w, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        feats = model.forward_features(x)
        out = model(x)
        out1 = model(x[1:])

    sizes = floor_sizes(cfg, h, w)
    assert cfg.stage_sizes((h, w)) == sizes
    assert len(feats) == len(cfg.stages)
    for i, (f, s, (hi, wi)) in enumerate(zip(feats, cfg.stages, sizes)):
        assert f.shape == (2, s.embed_dim, hi, wi), f"stage {i}: {tuple(f.shape)} != {(2, s.embed_dim, hi, wi)}"
        assert torch.isfinite(f).all(), f"stage {i} has NaN/inf"
    classes = cfg.num_classes or cfg.stages[-1].embed_dim  # 0 classes: pooled features (as timm)
    assert out.shape == (2, classes)
    assert torch.isfinite(out).all()
    # the second sample alone gives what it gave in the batch: masks/pads/views are per sample
    assert torch.allclose(out1[0], out[1], atol=1e-5, rtol=1e-4), (out1[0] - out[1]).abs().max()


@pytest.mark.parametrize("h, w", [(31, 64), (64, 20), (3, 3)])
def test_input_smaller_than_total_reduction_is_a_clear_error(h, w):
    cfg = ArchConfig.from_dict(dict(stages=[
        dict(patch_size=4, embed_dim=8, depth=1, num_heads=1, mlp_ratio=1.0),
        dict(patch_size=8, embed_dim=8, depth=1, num_heads=1, mlp_ratio=1.0)]))
    with pytest.raises(ValueError, match="smaller than patch_size|too small"):
        build_model(cfg, seed=0)(torch.zeros(1, 3, h, w))


@settings(max_examples=40, **SETTINGS)
@given(cfg_dict=arch_configs(max_stages=3, drop_path=True), h=st.integers(32, 96), w=st.integers(32, 96),
       seed=st.integers(0, 2 ** 16))
def test_drop_path_training_runs_backward(cfg_dict, h, w, seed):
    cfg = ArchConfig.from_dict(cfg_dict)
    model = build_model(cfg, seed=seed).train()
    torch.manual_seed(seed)
    x = torch.randn(2, cfg.in_chans, h, w)
    out = model(x)
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, f"NaN/inf gradient in {bad[:5]}"
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


def test_drop_path_rates_follow_timm_rule():
    cfg = ArchConfig.from_dict(dict(drop_path_rate=0.3, stages=[
        dict(patch_size=4, embed_dim=8, depth=d, num_heads=1, mlp_ratio=1.0, window=[2, 2], pattern="LG")
        for d in (2, 3, 1)]))
    model = build_model(cfg, seed=0)
    want = calculate_drop_path_rates(0.3, sum(cfg.depths))
    got = []
    for stage in model.blocks:
        for blk in stage:
            rates = [m.drop_prob if isinstance(m, DropPath) else 0.0 for m in (blk.drop_path1, blk.drop_path2)]
            assert rates[0] == rates[1]
            got.append(rates[0])
    assert got == pytest.approx(want)
    assert got[0] == 0.0 and got[-1] == pytest.approx(0.3)


def test_drop_path_is_stochastic_in_training_and_off_in_eval():
    cfg = ArchConfig.from_dict(dict(drop_path_rate=0.5, num_classes=4, stages=[
        dict(patch_size=4, embed_dim=8, depth=4, num_heads=2, mlp_ratio=1.0, window=[3, 3], sr_ratio=2,
             pattern="LG")]))
    model = build_model(cfg, seed=0)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    with torch.no_grad():
        train_outs = [model.train()(x) for _ in range(3)]
        eval_outs = [model.eval()(x) for _ in range(2)]
    assert not all(torch.equal(train_outs[0], o) for o in train_outs[1:])
    assert torch.equal(eval_outs[0], eval_outs[1])


@pytest.mark.parametrize("seed", [0, 7])
def test_seed_makes_the_initial_weights_reproducible(seed):
    cfg = ArchConfig.from_dict(dict(stages=[
        dict(patch_size=4, embed_dim=8, depth=2, num_heads=2, mlp_ratio=2.0, window=[3, 2], pattern="LG",
             sr_ratio=2, subsample="dwconv")]))
    a, b = build_model(cfg, seed=seed), build_model(cfg, seed=seed)
    c = build_model(cfg, seed=seed + 1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    state = torch.random.get_rng_state()
    build_model(cfg, seed=seed)
    assert torch.equal(state, torch.random.get_rng_state()), "seeded build changed the global RNG"


def test_param_count_matches_the_closed_form_of_a_tiny_config():
    """A one-stage PCPVT-like config counted by hand from the paper's building blocks."""
    C, p, hidden, k, classes, cin = 8, 4, 16, 2, 3, 3
    cfg = ArchConfig.from_dict(dict(num_classes=classes, in_chans=cin, stages=[
        dict(patch_size=p, embed_dim=C, depth=1, num_heads=2, mlp_ratio=hidden / C, sr_ratio=k)]))
    embed = cin * C * p * p + C + 2 * C                  # conv + bias, LayerNorm
    attn = (C * C + C) + (C * 2 * C + 2 * C) + (C * C + C) + (C * C * k * k + C) + 2 * C  # q, kv, proj, sr, norm
    mlp = (C * hidden + hidden) + (hidden * C + C)
    block = 2 * C + attn + 2 * C + mlp                   # norm1, attn, norm2, mlp
    peg = C * 9 + C
    head = 2 * C + C * classes + classes                 # final norm, classifier
    want = embed + block + peg + head
    assert sum(q.numel() for q in build_model(cfg).parameters()) == want


@pytest.mark.parametrize("subsample, names", [
    ("conv", {"sr.weight": (8, 8, 2, 3), "sr.bias": (8,)}),  # timm's names and Conv2d shapes
    ("dwconv", {"sr.dw.weight": (8, 1, 2, 3), "sr.pw.weight": (8, 8, 1, 1), "sr.pw.bias": (8,)}),
    ("avgpool", {}),
])
def test_gsa_subsampler_parameter_names(subsample, names):
    """The state-dict keys of GSA with each sub-sampler are a checkpoint contract: written out
    here, with the shapes of the convs they hold."""
    sd = GlobalSubSampleAttn(8, 2, (2, 3), subsample).state_dict()
    base = {"q.weight": (8, 8), "q.bias": (8,), "kv.weight": (16, 8), "kv.bias": (16,), "proj.weight": (8, 8),
            "proj.bias": (8,), "norm.weight": (8,), "norm.bias": (8,)}
    assert {k: tuple(v.shape) for k, v in sd.items()} == {**base, **names}
