"""UperNet on Twins: the closed-form cost (`head_cost`) against fvcore's traced count and the
built model's parameters, mmseg's parameter count of UPerHead written out by hand, the
auxiliary FCNHead counted apart, its configuration errors and `twins-nas profile --head upernet`."""
from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import arch_configs
from typer.testing import CliRunner

from twins_nas import ArchConfig, ConfigError, build_model, get_preset
from twins_nas.cli import app
from twins_nas.models import TwinsSegmentation, UperNetConfig, head_config
from twins_nas.models.head_cost import HEAD_CATEGORIES, UPERNET_NECK_CATEGORIES, aux_head_flops, param_parts
from twins_nas.profile import analytic_flops, analytic_params, count_flops

pytestmark = pytest.mark.usefixtures("single_thread")

runner = CliRunner()


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def upernets() -> st.SearchStrategy[UperNetConfig]:
    """Small UperNets: a few channels, any pool scales (larger than a map too), with or without aux."""
    return st.builds(UperNetConfig, num_classes=st.integers(1, 9), channels=st.integers(2, 12),
                     pool_scales=st.lists(st.integers(1, 8), min_size=1, max_size=4).map(tuple),
                     aux=st.booleans(), aux_channels=st.integers(2, 8))


# ---- random configs against fvcore and the built model -----------------------------------

@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=arch_configs(max_window=12, max_sr=10), head=upernets(), h=st.integers(32, 200), w=st.integers(32, 200))
def test_analytic_matches_fvcore(cfg, head, h, w):
    cfg = ArchConfig.from_dict(cfg)  # max_reduction 32: every stage map is non-empty at >= 32 px
    model = build_model(cfg, head=head)
    assert analytic_params(cfg, head=head) == n_params(model)
    traced, closed = count_flops(model, (h, w)), analytic_flops(cfg, (h, w), head=head)
    assert closed.by_category == traced.by_category, (h, w)
    assert closed.parts == traced.parts, (h, w)  # every neck and head category, 0 MACs apart
    assert closed.total == traced.total


@pytest.mark.parametrize("size", [pytest.param((512, 512), marks=pytest.mark.slow), (517, 333),
                                  pytest.param((64, 2048), marks=pytest.mark.slow)])  # the property test covers shapes
def test_preset_at_non_divisible_sizes(size):
    cfg = get_preset("twins-pcpvt-s")
    closed = analytic_flops(cfg, size, head="upernet")
    assert closed.parts == count_flops(cfg, size, head="upernet").parts
    assert set(closed.parts["neck"]) == set(UPERNET_NECK_CATEGORIES)
    assert set(closed.parts["head"]) == set(HEAD_CATEGORIES)


# ---- by hand, from mmseg's config -------------------------------------------------------------

def test_params_by_hand_svt_s():
    """mmseg's UPerHead(in_channels=[64, 128, 256, 512], channels=512, pool_scales=(1, 2, 3, 6),
    num_classes=150): every ConvModule is conv (no bias) + BN (weight, bias); conv_seg has a bias.
    Auxiliary FCNHead(in_channels=256, channels=256, num_convs=1, num_classes=150)."""
    ppm = 4 * (512 * 512 * 1 * 1 + 2 * 512)  # psp_modules.{0..3}.1: 1x1 conv 512 -> 512 + BN
    bottleneck = 512 * (512 + 4 * 512) * 3 * 3 + 2 * 512  # 3x3 conv 2560 -> 512 + BN
    laterals = (64 + 128 + 256) * 512 + 3 * 2 * 512  # 1x1 convs 64/128/256 -> 512 + 3 BN
    fpn_convs = 3 * (512 * 512 * 3 * 3 + 2 * 512)  # 3x3 convs 512 -> 512 + BN
    fpn_bottleneck = 512 * (4 * 512) * 3 * 3 + 2 * 512  # 3x3 conv 2048 -> 512 + BN
    conv_seg = 512 * 150 + 150
    assert (ppm, bottleneck, laterals, fpn_convs, fpn_bottleneck, conv_seg) == (
        1_052_672, 11_797_504, 232_448, 7_080_960, 9_438_208, 76_950)
    decode = ppm + bottleneck + laterals + fpn_convs + fpn_bottleneck + conv_seg
    assert decode == 29_678_742
    aux = 256 * 256 * 3 * 3 + 2 * 256 + 256 * 150 + 150  # convs.0 (3x3 256 -> 256 + BN), conv_seg
    assert aux == 628_886

    cfg = get_preset("twins-svt-s")
    parts = param_parts(cfg, "upernet")
    assert parts["neck"] + parts["head"] == decode and "aux" not in parts
    with_aux = param_parts(cfg, {"type": "upernet", "aux": True})
    assert with_aux["aux"] == aux and with_aux["neck"] + with_aux["head"] == decode
    model = build_model(cfg, head={"type": "upernet", "aux": True})
    assert n_params(model.decode_head) == decode and n_params(model.auxiliary_head) == aux
    assert analytic_params(cfg, head="upernet") == n_params(build_model(cfg, head="upernet"))
    # the paper's UperNet SVT-S, 54.4 M, counts the backbone's unused final norm and ImageNet
    # classifier too (512 * 2 + 512 * 1000 + 1000), beside the decode and auxiliary heads
    total = analytic_params(cfg, head={"type": "upernet", "aux": True})
    assert total == 23_546_752 + decode + aux
    assert round((total + 512 * 2 + 512 * 1000 + 1000) / 1e6, 1) == 54.4


def test_flops_by_hand_svt_s_512():
    """SVT-S at 512 x 512: maps 128, 64, 32, 16 (n = 16384, 4096, 1024, 256), C = 512."""
    n0, n1, n2, n3, C = 128 * 128, 64 * 64, 32 * 32, 16 * 16, 512
    neck = {"ppm_pool": 4 * 512 * n3,  # fvcore: 1 per input element, per pool scale
            "ppm_conv": (1 + 4 + 9 + 36) * C * 512,
            "ppm_upsample": 4 * 4 * n3 * C,  # 1, 2, 3, 6 -> 16 x 16, bilinear: 4 per output element
            "bottleneck": n3 * C * 2560 * 9,
            "lateral": (n0 * 64 + n1 * 128 + n2 * 256) * C,
            "top_down": 4 * (n2 + n1 + n0) * C,
            "fpn_conv": (n0 + n1 + n2) * C * C * 9,
            "norm": 2 * C * (1 + 4 + 9 + 36 + n3 + 2 * (n0 + n1 + n2))}
    head = {"conv": n0 * C * 2048 * 9, "norm": 2 * n0 * C, "upsample": 3 * 4 * n0 * C, "cls": n0 * C * 150,
            "resize": 4 * 512 * 512 * 150}
    rep = analytic_flops(get_preset("twins-svt-s"), 512, head="upernet")
    assert rep.parts["neck"] == neck and rep.parts["head"] == head


# ---- the auxiliary head ----------------------------------------------------------------------

def test_aux_head_is_counted_apart():
    cfg = ArchConfig.from_dict({"stages": [
        dict(patch_size=4, embed_dim=8, depth=1, num_heads=1, mlp_ratio=2, window=[3, 3], sr_ratio=2, pattern="LG"),
        dict(patch_size=2, embed_dim=12, depth=1, num_heads=1, mlp_ratio=2, sr_ratio=2, pattern="G"),
        dict(patch_size=2, embed_dim=16, depth=1, num_heads=2, mlp_ratio=2, sr_ratio=1, pattern="G")]})
    plain, aux = UperNetConfig(channels=6, num_classes=5), UperNetConfig(channels=6, num_classes=5, aux=True,
                                                                          aux_channels=4)
    size = (70, 90)
    # mmseg runs the auxiliary head in training only: the inference counts are the same
    assert analytic_flops(cfg, size, head=aux) == analytic_flops(cfg, size, head=plain)
    model = build_model(cfg, head=aux).eval()
    assert count_flops(model, size).total == analytic_flops(cfg, size, head=plain).total
    assert aux_head_flops(cfg, plain, size) == {}
    # the aux head reads stage 2 of 3 (the one before the last): 17 x 22 x 12 channels
    h, w = 70 // 4 // 2, 90 // 4 // 2
    assert aux_head_flops(cfg, aux, size) == {"conv": h * w * 4 * 12 * 9, "norm": 2 * h * w * 4, "cls": h * w * 4 * 5}
    from fvcore.nn import FlopCountAnalysis  # heavy import: see README
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        fca = FlopCountAnalysis(model.auxiliary_head, torch.zeros(1, 12, h, w)).uncalled_modules_warnings(False)
        assert fca.total() == sum(aux_head_flops(cfg, aux, size).values())
    assert model.forward_aux(torch.zeros(1, 3, *size)).shape == (1, 5, h, w)
    parts = param_parts(cfg, aux)
    assert parts["aux"] == (4 * 12 * 9 + 2 * 4) + (5 * 4 + 5)
    assert analytic_params(cfg, head=aux) == n_params(model) == analytic_params(cfg, head=plain) + parts["aux"]
    with pytest.raises(ValueError, match="no auxiliary head"):
        build_model(cfg, head=plain).forward_aux(torch.zeros(1, 3, *size))


# ---- the model ------------------------------------------------------------------------------

def test_state_dict_names_and_output():
    cfg = get_preset("twins-svt-s")
    model = build_model(cfg, head={"type": "upernet", "aux": True, "num_classes": 19})
    assert isinstance(model, TwinsSegmentation)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    assert shapes["decode_head.psp_modules.3.1.conv.weight"] == (512, 512, 1, 1)
    assert shapes["decode_head.psp_modules.3.1.bn.running_mean"] == (512,)
    assert shapes["decode_head.bottleneck.conv.weight"] == (512, 2560, 3, 3)
    assert shapes["decode_head.lateral_convs.0.conv.weight"] == (512, 64, 1, 1)
    assert shapes["decode_head.fpn_convs.2.conv.weight"] == (512, 512, 3, 3)
    assert shapes["decode_head.fpn_bottleneck.conv.weight"] == (512, 2048, 3, 3)
    assert shapes["decode_head.conv_seg.weight"] == (19, 512, 1, 1) and shapes["decode_head.conv_seg.bias"] == (19,)
    assert shapes["auxiliary_head.convs.0.conv.weight"] == (256, 256, 3, 3)
    assert shapes["auxiliary_head.conv_seg.weight"] == (19, 256, 1, 1)
    assert not any(k.endswith("conv.bias") and "conv_seg" not in k for k in shapes)  # ConvModules: no bias
    assert not any(k.startswith("neck.") for k in shapes)  # mmseg's UperNet has no neck
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 3, 75, 99)).shape == (1, 19, 75, 99)


# ---- configuration ---------------------------------------------------------------------------

def test_upernet_config_inputs():
    assert head_config("upernet") == UperNetConfig()
    assert UperNetConfig().to_dict() == {"type": "upernet", "num_classes": 150, "channels": 512,
                                         "pool_scales": [1, 2, 3, 6], "aux": False, "aux_channels": 256}
    assert head_config({"type": "upernet", "channels": 64}, num_classes=19) == UperNetConfig(channels=64,
                                                                                            num_classes=19)
    h = UperNetConfig(aux=True)
    assert head_config(h) is h and head_config(h, 9) == UperNetConfig(aux=True, num_classes=9)


@pytest.mark.parametrize("head, words", [
    ({"type": "upernet", "neck_channels": 8}, ["head.neck_channels: unknown field", "pool_scales, aux"]),
    ({"type": "upernet", "pool_scales": []}, ["head.pool_scales"]),
    ({"type": "upernet", "pool_scales": [1, 0]}, ["head.pool_scales[1]=0"]),
    ({"type": "upernet", "aux": "yes"}, ["head.aux=\"yes\""]),
    ({"type": "upernet", "channels": 0}, ["head.channels=0"]),
])
def test_bad_upernet_is_a_one_line_config_error(head, words):
    with pytest.raises(ConfigError) as e:
        head_config(head)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


# ---- the command line ------------------------------------------------------------------------

def test_profile_head_upernet(tmp_path):
    r = runner.invoke(app, ["profile", "--no-latency", "--preset", "twins-svt-s", "--size", "96x160",
                            "--head", "upernet", "--num-classes", "7", "--no-png", "--out", str(tmp_path)],
                      env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    import pandas as pd  # heavy import: see README
    row = pd.read_csv(tmp_path / "profile.csv").iloc[0]
    rep = analytic_flops(get_preset("twins-svt-s"), (96, 160), head={"type": "upernet", "num_classes": 7})
    assert row["head"] == "upernet" and row["num_classes"] == 7
    assert row["neck_gmacs"] == pytest.approx(rep.neck_total / 1e9) and row["gmacs"] == pytest.approx(rep.gmacs)
    assert "upernet head" in r.stdout


def test_profile_bad_head_is_one_line_exit_2(tmp_path):
    r = runner.invoke(app, ["profile", "--no-latency", "--preset", "twins-svt-s", "--head", "uper-net",
                            "--out", str(tmp_path)])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "semantic-fpn, upernet" in lines[0], lines
