"""The parameter budget of `retarget`: on every preset and at many sizes the retargeted model,
built and counted with `sum(p.numel())`, stays within `max_params_growth` x the original, its
attention matmuls (counted by hand from the built modules) still fall; a budget nothing meets
is one line naming the smallest growth; a replaced sub-sampler's checkpoint loads strictly."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from twins_nas import ArchConfig, build_model, get_preset
from twins_nas.config import ConfigError, StageConfig
from twins_nas.models.retarget import adapt_state_dict, retarget, weight_change
from twins_nas.models.twins import GlobalSubSampleAttn, LocallyGroupedAttn
from twins_nas.presets import PRESETS

pytestmark = pytest.mark.usefixtures("single_thread")


def _params(cfg: ArchConfig) -> int:
    """Parameters of the built model (on the meta device: shapes only, no memory)."""
    with torch.device("meta"):
        return sum(p.numel() for p in build_model(cfg).parameters())


def _attention_macs(cfg: ArchConfig, size: tuple[int, int]) -> int:
    """Q·Kᵀ + A·V multiply-adds of the built model's attention modules, batch 1, counted by
    hand: LSA 2·(padded tokens)·(m·n)·C, GSA 2·N·M·C with M = ceil(H/k1)·ceil(W/k2)."""
    with torch.device("meta"):
        model = build_model(cfg)
    total = 0
    for blocks, (H, W) in zip(model.blocks, cfg.stage_sizes(size)):
        for block in blocks:
            attn = block.attn
            C = attn.proj.in_features
            if isinstance(attn, LocallyGroupedAttn):
                m, n = min(attn.window[0], H), min(attn.window[1], W)
                total += 2 * math.ceil(H / m) * m * math.ceil(W / n) * n * m * n * C
            else:
                assert isinstance(attn, GlobalSubSampleAttn)
                k1, k2 = attn.sr_ratio
                total += 2 * H * W * math.ceil(H / k1) * math.ceil(W / k2) * C
    return total


_BEFORE: dict[str, int] = {}


def _params_before(name: str) -> int:
    if name not in _BEFORE:
        _BEFORE[name] = _params(get_preset(name))
    return _BEFORE[name]


@pytest.mark.parametrize("name", PRESETS)
def test_default_budget_at_1024_keeps_params_within_10_percent_and_cuts_attention_by_80_percent(name):
    cfg = get_preset(name)
    new = retarget(cfg, (1024, 1024)).config
    assert _params(new) <= 1.1 * _params_before(name)
    before, after = _attention_macs(cfg, (1024, 1024)), _attention_macs(new, (1024, 1024))
    assert after <= 0.2 * before
    # only windows, k and the sub-sampling function may change
    for old_s, new_s in zip(cfg.stages, new.stages):
        keep = {"window", "sr_ratio", "subsample"}
        assert old_s.model_dump(exclude=keep) == new_s.model_dump(exclude=keep)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(name=st.sampled_from(sorted(PRESETS)), h=st.integers(256, 2048), w=st.integers(256, 2048),
       growth=st.sampled_from([1.0, 1.05, 1.1, 1.5]))
def test_never_above_the_budget_at_any_size(name, h, w, growth):
    cfg = get_preset(name)
    new = retarget(cfg, (h, w), max_params_growth=growth).config
    assert _params(new) <= growth * _params_before(name)
    assert _attention_macs(new, (h, w)) < _attention_macs(cfg, (h, w))


def test_without_a_budget_conv_grows_the_parameters_several_fold():
    """The reason for the budget: with conv kept at the optimal k the model is ~3x larger."""
    new = retarget(get_preset("twins-svt-s"), (1024, 1024), max_params_growth=None).config
    assert all(s.subsample == "conv" for s in new.stages)
    assert _params(new) > 2.5 * _params_before("twins-svt-s")


def test_conv_is_kept_where_it_fits():
    """Only stage 1 (C = 8, k 2 -> larger) moves k; a conv kernel of 8 x 8 x k1 x k2 is well
    within 1.5 x of this model's parameters, so conv stays."""
    cfg = ArchConfig.from_dict(dict(stages=[
        dict(patch_size=4, embed_dim=8, depth=1, num_heads=1, mlp_ratio=4.0, sr_ratio=2, pattern="G"),
        dict(patch_size=2, embed_dim=64, depth=2, num_heads=2, mlp_ratio=4.0, window=[7, 7], pattern="L")],
        num_classes=10))
    new = retarget(cfg, (256, 256), max_params_growth=1.5).config
    assert new.stages[0].sr_pair != (2, 2) and new.stages[0].subsample == "conv"
    assert _params(new) <= 1.5 * _params(cfg)


def test_a_budget_nothing_meets_names_the_smallest_growth():
    cfg = get_preset("twins-svt-s")
    with pytest.raises(ConfigError, match=r"max_params_growth=0.5: .*smallest growth achievable is") as e:
        retarget(cfg, (1024, 1024), max_params_growth=0.5)
    assert "\n" not in str(e.value)
    smallest = float(str(e.value).split("achievable is ")[1].split()[0])
    new = retarget(cfg, (1024, 1024), max_params_growth=smallest).config  # what it names is reachable
    assert _params(new) <= smallest * _params_before("twins-svt-s")
    with pytest.raises(ConfigError, match="smallest growth"):
        retarget(cfg, (1024, 1024), max_params_growth=smallest - 0.001)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "1.1"])
def test_a_bad_growth_is_one_line(bad):
    with pytest.raises(ConfigError, match="max_params_growth=.*more than 0") as e:
        retarget(get_preset("twins-svt-s"), 512, max_params_growth=bad)
    assert "\n" not in str(e.value)


def test_keep_weights_keeps_the_checkpoint_under_any_budget():
    cfg = get_preset("twins-pcpvt-s")
    res = retarget(cfg, (1024, 1024), keep_weights=True, max_params_growth=1.0)
    assert res.loads_as_is
    assert _params(res.config) == _params_before("twins-pcpvt-s")


def _stage(sr=4, subsample="conv") -> StageConfig:
    return StageConfig(patch_size=4, embed_dim=16, depth=1, num_heads=2, mlp_ratio=2.0, sr_ratio=sr,
                       subsample=subsample, pattern="G")


def test_a_changed_function_is_a_replaced_sub_sampler():
    assert weight_change(_stage(4, "conv"), _stage(8, "dwconv")) == "replaced"
    assert weight_change(_stage(4, "conv"), _stage(4, "avgpool")) == "replaced"
    assert weight_change(_stage(1, "conv"), _stage(1, "avgpool")) == "as-is"  # no sub-sampler either way
    assert weight_change(_stage(1, "conv"), _stage(3, "dwconv")) == "new"


@pytest.mark.parametrize("to", ["dwconv", "avgpool"])
def test_a_replaced_sub_sampler_loads_strictly_and_starts_as_the_mean_of_each_cell(to):
    old = ArchConfig.from_dict(dict(stages=[_stage(2, "conv").model_dump(mode="json")], num_classes=0))
    new = old.replace(stages=[_stage((2, 3), to).model_dump(mode="json")])
    src = build_model(old, seed=0)
    model = build_model(new, seed=1)
    sd = adapt_state_dict(src.state_dict(), old, new)
    model.load_state_dict(sd, strict=True)
    attn = model.blocks[0][0].attn
    assert torch.equal(attn.norm.weight, src.blocks[0][0].attn.norm.weight)  # the LayerNorm keeps its weights
    x = torch.randn(1, 6 * 9, 16)
    with torch.no_grad():
        got = attn.sr(x, (6, 9))
    want = F.avg_pool2d(x.transpose(1, 2).reshape(1, 16, 6, 9), (2, 3)).flatten(2).transpose(1, 2)
    torch.testing.assert_close(got, want)
