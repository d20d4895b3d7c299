"""The six presets against independent truth: timm's `twins_*` models (weights, state-dict
contract, outputs) and the parameter counts of the Twins paper / reference doc; and
`to_timm_kwargs` against timm's own constructor, for the presets and random configs. Outputs
are compared with the CPU fast paths on (the default) and off."""
from __future__ import annotations

import pytest
import timm
import torch
from hypothesis import HealthCheck, given, settings
from strategies import random_weights_, randomize_, shapes, timm_expressible
from timm.models.twins import Twins as TimmTwins

from twins_nas import ArchConfig, ConfigError, Twins, build_model, get_preset, to_timm_kwargs
from twins_nas.models.cpu_fast_paths import fast_paths
from twins_nas.presets import TIMM_NAMES

# Parameters in millions as published (Twins paper, Table 1/2; = timm's counts, 1000 classes).
PAPER_PARAMS_M = {"twins-pcpvt-s": 24.11, "twins-pcpvt-b": 43.83, "twins-pcpvt-l": 60.99,
                  "twins-svt-s": 24.06, "twins-svt-b": 56.07, "twins-svt-l": 99.27}
PRESET_NAMES = list(PAPER_PARAMS_M)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module", params=PRESET_NAMES)
def pair(request):
    """(preset name, our model, timm's model with seeded noise on every parameter).
    Module scope with one param at a time: each pair is built once and freed after its tests."""
    name = request.param
    ref = timm.create_model(TIMM_NAMES[name], pretrained=False, device="meta").to_empty(device="cpu").eval()
    random_weights_(ref, torch.Generator().manual_seed(1))
    with pytest.MonkeyPatch.context() as mp:  # its init is overwritten by timm's weights below: skip it
        mp.setattr(Twins, "_init_weights", staticmethod(lambda m: None))
        ours = build_model(get_preset(name)).eval()
    yield name, ours, ref
    del ours, ref


def test_preset_names_cover_the_six_published_models():
    assert set(TIMM_NAMES) == set(PAPER_PARAMS_M)
    assert TIMM_NAMES == {"twins-pcpvt-s": "twins_pcpvt_small", "twins-pcpvt-b": "twins_pcpvt_base",
                          "twins-pcpvt-l": "twins_pcpvt_large", "twins-svt-s": "twins_svt_small",
                          "twins-svt-b": "twins_svt_base", "twins-svt-l": "twins_svt_large"}


def test_param_count_equals_timm_and_paper(pair):
    name, ours, ref = pair
    n = n_params(ours)
    assert n == n_params(ref), f"{name}: {n} params, timm {n_params(ref)}"
    assert round(n / 1e6, 2) == PAPER_PARAMS_M[name], f"{name}: {n / 1e6:.4f} M, paper {PAPER_PARAMS_M[name]} M"


def test_state_dict_keys_and_shapes_equal_timm(pair):
    name, ours, ref = pair
    a, b = shapes(ours), shapes(ref)
    assert a.keys() == b.keys(), (f"{name}: only ours {sorted(a.keys() - b.keys())[:5]}, "
                                  f"only timm {sorted(b.keys() - a.keys())[:5]}")
    assert a == b
    assert list(a) == list(b), f"{name}: same keys in another order"


@pytest.mark.parametrize("resolution, fast", [(224, True), (448, True), (224, False)],
                         ids=["224", "448", "224-fast-paths-off"])
def test_timm_weights_load_strictly_and_give_timm_outputs(pair, resolution, fast):
    name, ours, ref = pair
    result = ours.load_state_dict(ref.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(resolution))
    with torch.inference_mode(), fast_paths(fast):
        want, got = ref(x), ours(x)
    assert got.shape == want.shape == (1, 1000)
    diff = (got - want).abs().max().item()
    assert want.std().item() > 0.05, "outputs too flat to tell a difference"
    assert diff <= 1e-4, f"{name} @ {resolution}: max |ours - timm| = {diff:.3g}"


# ---- to_timm_kwargs ----------------------------------------------------------------------

def test_to_timm_kwargs_builds_the_same_network_in_timm(pair):
    name, ours, _ = pair
    kw = to_timm_kwargs(get_preset(name))
    built = TimmTwins(**kw, device="meta")  # shapes only: no memory, no init
    assert shapes(built) == shapes(ours)
    assert sum(p.numel() for p in built.parameters()) == n_params(ours)


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(case=timm_expressible())
def test_to_timm_kwargs_random_configs_match_timm_outputs(case):
    """Random configs timm can express, at a size every window and k divides: timm's
    Twins(**to_timm_kwargs(cfg)) has our keys, and with its weights we give its outputs."""
    cfg_dict, res = case
    cfg = ArchConfig.from_dict(cfg_dict)
    torch.manual_seed(0)
    ref = TimmTwins(**to_timm_kwargs(cfg)).eval()
    randomize_(ref, torch.Generator().manual_seed(2))
    ours = build_model(cfg, seed=0).eval()
    assert shapes(ours) == shapes(ref)
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, cfg.in_chans, res, res, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        want, got = ref(x), ours(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5, rtol=0), (got - want).abs().max().item()


def _svt_s(**stage_changes) -> ArchConfig:
    d = get_preset("twins-svt-s").to_dict()
    d["stages"][1].update(stage_changes)
    return ArchConfig.from_dict(d)


@pytest.mark.parametrize("cfg, needle", [
    (lambda: _svt_s(window=[7, 5]), "stages[1].window=(7, 5) is not square"),
    (lambda: _svt_s(pattern="LLG"), "'LLG'"),
    (lambda: _svt_s(subsample="avgpool"), "stages[1].subsample='avgpool' (timm has only 'conv')"),
    (lambda: _svt_s(sr_ratio=[2, 4]), "stages[1].sr_ratio=(2, 4) is not a single k"),
], ids=["non-square-window", "LLG", "avgpool", "sr-pair"])
def test_to_timm_kwargs_rejects_what_timm_cannot_express(cfg, needle):
    with pytest.raises(ConfigError) as info:
        to_timm_kwargs(cfg())
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert msg.startswith("timm's Twins cannot express this config: ")
    assert needle in msg, msg
    assert "\n" not in msg
