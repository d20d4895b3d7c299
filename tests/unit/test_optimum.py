"""Cost-optimal windows / k: the optimum against a brute force over every candidate, costed by
the closed form's per-module functions; the published choices at 224 px; retargeting and
checkpoints."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from twins_nas import ArchConfig, build_model, get_preset, load_config
from twins_nas.config import StageConfig
from twins_nas.models.cost_model import gsa_flops, lsa_flops
from twins_nas.models.retarget import adapt_state_dict, retarget, weight_change
from twins_nas.models.window_optimum import (
    best_ratio,
    best_window,
    gsa_costs,
    law_side,
    lsa_costs,
    required_keys,
    stage_optima,
)
from twins_nas.presets import PRESETS

GSA_TERMS = ("gsa_matmul", "gsa_subsample", "attn_kv", "norm")  # what k changes in one GSA block


def _stage(C=16, heads=2, window=(3, 3), sr=2, subsample="conv", pattern="LG") -> StageConfig:
    return StageConfig(patch_size=4, embed_dim=C, depth=2, num_heads=heads, mlp_ratio=2.0, window=window,
                       sr_ratio=sr, subsample=subsample, pattern=pattern)


def _lsa_cost(size, stage, m, n) -> int:  # closed form of the module, one block, batch 1
    return lsa_flops(1, size, stage.model_copy(update=dict(window=(m, n))))["lsa_matmul"]


def _gsa_cost(size, stage, k1, k2) -> int:
    parts = gsa_flops(1, size, stage.model_copy(update=dict(sr_ratio=(k1, k2))))
    return sum(parts.get(t, 0) for t in GSA_TERMS)


def _brute(size, cost, keys, need, max_aspect):
    """Every candidate pair (a, b) in 1..H x 1..W: the cheapest keeping `need` keys, with the
    sides at most `max_aspect` apart when some candidate allows it."""
    cands = [(a, b) for a in range(1, size[0] + 1) for b in range(1, size[1] + 1) if keys(a, b) >= need]
    shaped = [c for c in cands if max(c) <= max_aspect * min(c)]
    pool = shaped or cands
    return min(cost(*c) for c in pool), pool


sizes = st.tuples(st.integers(1, 14), st.integers(1, 14))


@settings(max_examples=60, derandomize=True, deadline=None)
@given(size=sizes, C=st.sampled_from([4, 8, 12]), sub=st.sampled_from(["conv", "dwconv", "avgpool"]),
       min_keys=st.integers(1, 40), aspect=st.sampled_from([1.0, 2.0, 3.5]))
def test_optimum_is_the_brute_force_minimum_on_small_maps(size, C, sub, min_keys, aspect):
    stage = _stage(C=C, heads=2 if C % 2 == 0 else 1, subsample=sub)
    H, W = size
    need = required_keys(size, min_keys)
    assert need == min(min_keys, H * W)
    # LSA: windows clamp to the map, so the real keys are min(m, H) * min(n, W)
    lsa_min, lsa_pool = _brute(size, lambda m, n: _lsa_cost(size, stage, m, n),
                               lambda m, n: min(m, H) * min(n, W), need, aspect)
    m, n = best_window(size, C, min_keys, aspect)
    assert (m, n) in lsa_pool
    assert _lsa_cost(size, stage, m, n) == lsa_min
    gsa_min, gsa_pool = _brute(size, lambda a, b: _gsa_cost(size, stage, a, b),
                               lambda a, b: math.ceil(H / a) * math.ceil(W / b), need, aspect)
    k = best_ratio(size, C, sub, min_keys, aspect)
    assert k in gsa_pool
    assert _gsa_cost(size, stage, *k) == gsa_min


@settings(max_examples=40, derandomize=True, deadline=None)
@given(size=sizes, C=st.sampled_from([4, 8]), sub=st.sampled_from(["conv", "dwconv", "avgpool"]))
def test_vectorised_costs_equal_the_closed_form_for_every_candidate(size, C, sub):
    stage = _stage(C=C, subsample=sub)
    for a, b in itertools.product(range(1, size[0] + 2), range(1, size[1] + 2)):
        assert int(lsa_costs(size, C, a, b)) == _lsa_cost(size, stage, a, b)
        assert int(gsa_costs(size, C, sub, a, b)) == _gsa_cost(size, stage, a, b)


@pytest.mark.parametrize("name", list(PRESETS))
def test_published_choices_are_the_optimum_at_224(name):
    """The paper's windows (7 x 7) and ratios (8, 4, 2, 1) are what the default rule picks."""
    for o in stage_optima(get_preset(name), 224):
        assert o.extra_macs == 0, o
        assert o.k == o.best_k
        if o.window is not None:
            assert o.best_window == (7, 7)
        assert o.best_gsa_keys == 49


def test_at_1024_the_ratios_grow_and_the_extra_cost_is_reported():
    cfg = get_preset("twins-pcpvt-s")
    optima = stage_optima(cfg, 1024)
    assert [o.k for o in optima] == [(8, 8), (4, 4), (2, 2), (1, 1)]
    for o in optima:
        assert o.gsa_keys == 32 * 32  # the configured k keeps 32 x 32 keys at 1024 px
        assert 49 <= o.best_gsa_keys < o.gsa_keys
        assert o.extra_macs > 0
        assert o.extra_pct_model == pytest.approx(100 * o.extra_macs / o.model_macs)
        assert 0 < o.extra_pct_model < o.extra_pct_stage


def test_law_side():
    assert law_side((56, 56)) == pytest.approx(math.sqrt(56))  # window area = √(HW) = 56
    assert law_side((16, 64)) == pytest.approx(32 ** 0.5)


def test_rule_errors_are_one_line():
    for bad in (0, -3, True, 2.5):
        with pytest.raises(ValueError, match="min_keys"):
            stage_optima(get_preset("twins-svt-s"), 224, min_keys=bad)
    with pytest.raises(ValueError, match="max_aspect"):
        stage_optima(get_preset("twins-svt-s"), 224, max_aspect=0.5)


# ---- retarget ----------------------------------------------------------------------------

TINY = dict(stages=[
    dict(patch_size=4, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.0, window=[3, 3], sr_ratio=4, pattern="LG"),
    dict(patch_size=2, embed_dim=24, depth=2, num_heads=2, mlp_ratio=2.0, window=[3, 3], sr_ratio=2,
         subsample="dwconv", pattern="LG"),
    dict(patch_size=2, embed_dim=32, depth=1, num_heads=2, mlp_ratio=2.0, sr_ratio=1, pattern="G"),
], num_classes=5, name="tiny")


@pytest.mark.parametrize("keep", [False, True])
def test_retarget_round_trip_builds_runs_and_loads_weights(tmp_path, keep):
    cfg = ArchConfig.from_dict(TINY)
    size = (96, 160)
    res = retarget(cfg, size, min_keys=9, keep_weights=keep, max_params_growth=None)  # every k at its optimum
    new = res.config
    for old_s, new_s, o in zip(cfg.stages, new.stages, res.optima):  # only windows / k change
        assert old_s.model_dump(exclude={"window", "sr_ratio"}) == new_s.model_dump(exclude={"window", "sr_ratio"})
        if o.best_window is not None:
            assert tuple(new_s.window) == o.best_window
        if not keep and o.best_k is not None:
            assert new_s.sr_pair == o.best_k
    path = tmp_path / "r.json"
    new.to_json(path)
    again = load_config(str(path))
    assert again == new
    old_model, model = build_model(cfg, seed=0).eval(), build_model(again, seed=1).eval()
    sd = adapt_state_dict(old_model.state_dict(), cfg, again)
    assert set(sd) == set(model.state_dict())
    model.load_state_dict(sd, strict=True)
    with torch.no_grad():
        assert model(torch.randn(2, 3, *size)).shape == (2, 5)
    if keep:
        assert res.loads_as_is and res.weights == ["as-is"] * 3
        model.load_state_dict(old_model.state_dict(), strict=True)  # a checkpoint loads unchanged
    else:
        assert res.weights == ["resampled", "resampled", "new"]  # k 4 -> more, 2 -> more, 1 -> > 1


def test_weight_cases():
    base = _stage(sr=4, subsample="conv")
    assert weight_change(base, base.model_copy(update=dict(window=(5, 5)))) == "as-is"
    assert weight_change(base, base.model_copy(update=dict(sr_ratio=(6, 6)))) == "resampled"
    assert weight_change(base, base.model_copy(update=dict(sr_ratio=1))) == "dropped"
    one = _stage(sr=1)
    assert weight_change(one, one.model_copy(update=dict(sr_ratio=3))) == "new"
    pool = _stage(sr=4, subsample="avgpool")
    assert weight_change(pool, pool.model_copy(update=dict(sr_ratio=(5, 3)))) == "as-is"
    local = _stage(sr=4, pattern="L")  # no GSA block: k is never used
    assert weight_change(local, local.model_copy(update=dict(sr_ratio=2))) == "as-is"


def test_a_new_subsampler_starts_as_the_mean_of_each_cell():
    """k 1 -> 2 x 3 with conv sub-sampling: adapt_state_dict's initial conv is average pooling."""
    cfg = ArchConfig.from_dict(dict(stages=[dict(patch_size=4, embed_dim=8, depth=1, num_heads=1, mlp_ratio=1.0,
                                                 sr_ratio=1, pattern="G")], num_classes=0))
    new = cfg.replace(stages=[{**cfg.stages[0].model_dump(mode="json"), "sr_ratio": [2, 3]}])
    sd = adapt_state_dict(build_model(cfg).state_dict(), cfg, new)
    model = build_model(new)
    model.load_state_dict(sd, strict=True)
    sr = model.blocks[0][0].attn.sr
    x = torch.randn(1, 8, 6, 9)
    tokens = x.flatten(2).transpose(1, 2)
    with torch.no_grad():
        got = sr(tokens, (6, 9))
    want = F.avg_pool2d(x, (2, 3)).flatten(2).transpose(1, 2)
    torch.testing.assert_close(got, want)
