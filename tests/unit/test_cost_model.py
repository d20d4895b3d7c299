"""The closed-form cost model against independent truth: fvcore's traced count (attention
handle included) and the parameters of the built model, for random configs and input sizes
(square or not, with and without padding, windows and sub-sampling larger than the map)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from twins_nas import ArchConfig, ConfigError, build_model, get_preset
from twins_nas.models.cost_model import CATEGORIES, FlopReport, analytic_gmacs, classifier_params
from twins_nas.presets import PRESETS
from twins_nas.profile import analytic_flops, analytic_params, count_flops

# Parameters (M) of the six published models (paper, = timm's counts).
PAPER_PARAMS_M = {"twins-pcpvt-s": 24.11, "twins-pcpvt-b": 43.83, "twins-pcpvt-l": 60.99,
                  "twins-svt-s": 24.06, "twins-svt-b": 56.07, "twins-svt-l": 99.27}


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def assert_counts_agree(cfg: ArchConfig, resolution, model=None) -> None:
    """analytic == fvcore: total within 0.1 % (the requirement), then every category equal."""
    traced = count_flops(model if model is not None else cfg, resolution)
    closed = analytic_flops(cfg, resolution)
    assert closed.total == pytest.approx(traced.total, rel=1e-3), (resolution, closed.total, traced.total)
    diff = {c: (closed.by_category[c], traced.by_category[c]) for c in CATEGORIES
            if closed.by_category[c] != traced.by_category[c]}
    assert not diff, f"analytic vs fvcore differ at {resolution} in {diff}"


# ---- random configs -------------------------------------------------------------------

@st.composite
def stages(draw, index: int):
    heads = draw(st.integers(1, 2))
    window = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    sr = draw(st.one_of(st.integers(1, 10), st.tuples(st.integers(1, 10), st.integers(1, 10))))
    return dict(
        patch_size=draw(st.integers(3, 8)) if index == 0 else draw(st.sampled_from([1, 2, 2, 3])),
        embed_dim=heads * draw(st.sampled_from([2, 3, 4, 8])), num_heads=heads,
        depth=draw(st.integers(1, 3)), mlp_ratio=draw(st.sampled_from([0.5, 1.0, 1.5, 2.7, 4.0])),
        window=window, sr_ratio=sr, subsample=draw(st.sampled_from(["conv", "dwconv", "avgpool"])),
        pattern=draw(st.one_of(st.sampled_from(["L", "G", "LG", "GL", "LLG"]),
                               st.from_regex(r"[LG]{1,3}", fullmatch=True))))


@st.composite
def configs(draw):
    n = draw(st.integers(1, 4))
    return ArchConfig(stages=[draw(stages(i)) for i in range(n)], in_chans=draw(st.integers(1, 4)),
                      num_classes=draw(st.sampled_from([0, 1, 7])), qkv_bias=draw(st.booleans()),
                      peg=draw(st.booleans()))


def check_against_fvcore(cfg: ArchConfig, h: int, w: int) -> None:
    try:
        cfg.stage_sizes((h, w))
    except ConfigError:
        assume(False)  # the pyramid downsamples more than the input allows
    model = build_model(cfg)
    assert analytic_params(cfg) == n_params(model)
    assert_counts_agree(cfg, (h, w), model)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(cfg=configs(), h=st.integers(32, 320), w=st.integers(32, 320))
def test_analytic_matches_fvcore_and_model_params(cfg, h, w):
    check_against_fvcore(cfg, h, w)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(cfg=configs(), h=st.integers(32, 320), w=st.integers(32, 320))
def test_analytic_matches_fvcore_and_model_params_many(cfg, h, w):
    """The same on many more (and each run new) random configs and sizes."""
    check_against_fvcore(cfg, h, w)


# ---- the presets ------------------------------------------------------------------------

def test_preset_params_match_paper():
    for name, m in PAPER_PARAMS_M.items():
        assert round(analytic_params(get_preset(name)) / 1e6, 2) == m, name


def test_preset_params_match_built_model():
    cfg = get_preset("twins-svt-s")
    assert analytic_params(cfg) == n_params(build_model(cfg))


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_preset_params_match_built_model_all(name):
    cfg = get_preset(name)
    assert analytic_params(cfg) == n_params(build_model(cfg))


def narrow(name: str) -> ArchConfig:
    """A preset with its structure (depth pattern, patch sizes, windows, k) kept and its
    widths shrunk (2 channels per head, at most 2 blocks a stage), so fvcore is fast at 1024.
    Padding and window clamping depend on the structure only."""
    d = PRESETS[name]
    st_ = [dict(s, embed_dim=2 * s["num_heads"], depth=min(s["depth"], 2)) for s in d["stages"]]
    return ArchConfig.from_dict(dict(d, stages=st_))


@pytest.mark.parametrize("name", ["twins-pcpvt-s", "twins-svt-s"])
@pytest.mark.parametrize("resolution", [224, 512, 1024, 230, 333, (333, 517), (64, 250)])
def test_preset_structure_at_many_sizes(name, resolution):
    assert_counts_agree(narrow(name), resolution)


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("resolution", [512, 1024, 230, 333])
def test_presets_at_many_sizes(name, resolution):
    assert_counts_agree(get_preset(name), resolution)


# ---- edge cases, by hand ------------------------------------------------------------------

def one_stage(**kw) -> ArchConfig:
    s = dict(patch_size=4, embed_dim=8, depth=1, num_heads=2, mlp_ratio=2.0, window=(7, 7), pattern="L")
    s.update(kw)
    return ArchConfig(stages=[s], num_classes=0, peg=False)


def test_lsa_window_larger_than_map_is_clamped():
    # 64 px / 4 = 16 x 16 map: a 40 x 99 window is the whole map, one window, no padding
    big, whole = one_stage(window=(40, 99)), one_stage(window=(16, 16))
    assert analytic_flops(big, 64).by_category == analytic_flops(whole, 64).by_category
    assert analytic_flops(big, 64).by_category["lsa_matmul"] == 2 * (16 * 16) ** 2 * 8


def test_lsa_padding_is_counted_in_the_matmuls_only():
    # 15 x 10 map, 7 x 4 windows -> padded to 21 x 12: 3 x 3 windows of 28 tokens
    rep = analytic_flops(one_stage(window=(7, 4)), (60, 40)).by_category
    assert rep["lsa_matmul"] == 2 * 9 * 2 * 28 * 28 * 4  # 2 matmuls, windows, heads, Lq, Lk, hd
    assert rep["attn_qkv"] == 150 * 8 * 24  # the 150 real tokens only


@pytest.mark.parametrize("subsample,sub", [("conv", 3 * 8 * 8 * 6 * 20), ("dwconv", 3 * 8 * 6 * 20 + 3 * 8 * 8),
                                           ("avgpool", 0)])
def test_gsa_sr_larger_than_map(subsample, sub):
    # 13 x 9 map, k = (6, 20): keys = ceil(13/6) * ceil(9/20) = 3 * 1
    cfg = one_stage(pattern="G", sr_ratio=(6, 20), subsample=subsample)
    rep = analytic_flops(cfg, (52, 36)).by_category
    assert rep["gsa_matmul"] == 2 * 117 * 3 * 8
    assert rep["gsa_subsample"] == sub  # 3 key tokens x the (padded) 6 x 20 cell each
    assert_counts_agree(cfg, (52, 36))


def test_params_by_stage_plus_classifier_is_total():
    for name in PRESETS:
        cfg = get_preset(name)
        per = analytic_params(cfg, by_stage=True)
        assert len(per) == len(cfg.stages)
        assert sum(per) + classifier_params(cfg) == analytic_params(cfg)


def test_batch_scales_linearly_and_gmacs_helper():
    cfg = get_preset("twins-svt-s")
    one, four = analytic_flops(cfg, 224), analytic_flops(cfg, 224, batch=4)
    assert four.total == 4 * one.total
    assert analytic_gmacs(cfg, 224) == one.gmacs == one.total / 1e9


def test_report_is_plain_data():
    rep = analytic_flops(get_preset("twins-pcpvt-s"), 224)
    d = rep.to_dict()
    assert d["total"] == rep.total and set(d["by_category"]) == set(CATEGORIES)
    assert FlopReport(**d) == rep
    with pytest.raises(ValueError, match="sums to"):
        FlopReport(total=1, by_category={"mlp": 2})


def test_too_small_input_is_a_config_error():
    with pytest.raises(ConfigError, match="too small"):
        analytic_flops(get_preset("twins-svt-s"), 16)
