"""Semantic FPN on Twins: the closed-form cost (`head_cost`) against fvcore's traced count and
the built model's parameters, a count by hand from mmseg's structure, output shapes, loading a
timm backbone checkpoint, and the one-line errors of the head's configuration."""
from __future__ import annotations

import logging

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from strategies import Unsupported, arch_configs

from twins_nas import ArchConfig, ConfigError, build_model, get_preset
from twins_nas.models import HEADS, HeadConfig, TwinsSegmentation, head_config, load_backbone
from twins_nas.models.cost_model import CATEGORIES, analytic_flops, analytic_params, classifier_flops
from twins_nas.models.head_config import head_lengths
from twins_nas.models.head_cost import (
    HEAD_CATEGORIES,
    NECK_CATEGORIES,
    DenseFlopReport,
    analytic_dense_flops,
    analytic_dense_params,
    neck_head_flops,
    neck_head_params,
)
from twins_nas.presets import PRESETS
from twins_nas.profile.flops import count_dense_flops, count_flops

pytestmark = pytest.mark.usefixtures("single_thread")


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def assert_dense_counts_agree(cfg: ArchConfig, head: HeadConfig, size, model=None, batch: int = 1):
    traced = count_dense_flops(model if model is not None else cfg, None if model is not None else head, size, batch)
    closed = analytic_dense_flops(cfg, head, size, batch)
    assert closed.backbone.by_category == traced.backbone.by_category, size
    assert closed.neck == traced.neck, size
    assert closed.head == traced.head, size
    assert closed.total == traced.total
    return closed


def heads() -> st.SearchStrategy[HeadConfig]:
    return st.builds(HeadConfig, num_classes=st.integers(1, 9), neck_channels=st.integers(2, 16),
                     channels=st.integers(2, 12))


# ---- random configs against fvcore and the built model -----------------------------------

@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=arch_configs(max_window=12, max_sr=10), head=heads(), h=st.integers(32, 200), w=st.integers(32, 200))
def test_analytic_matches_fvcore(cfg, head, h, w):
    cfg = ArchConfig.from_dict(cfg)  # max_reduction 32: every stage map is non-empty at >= 32 px
    model = build_model(cfg, head=head)
    assert analytic_dense_params(cfg, head)["total"] == n_params(model)
    assert_dense_counts_agree(cfg, head, (h, w), model)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=arch_configs(max_window=12, max_sr=10), head=heads(), h=st.integers(32, 120), w=st.integers(32, 120),
       batch=st.integers(1, 2))
def test_output_shape_and_params(cfg, head, h, w, batch):
    cfg = ArchConfig.from_dict(cfg)
    model = build_model(cfg, head=head).eval()
    parts = analytic_dense_params(cfg, head)
    assert parts["backbone"] == n_params(model.backbone)
    assert parts["neck"] == n_params(model.neck)
    assert parts["head"] == n_params(model.decode_head)
    with torch.no_grad():
        x = torch.randn(batch, cfg.in_chans, h, w)
        assert model(x).shape == (batch, head.num_classes, h, w)
        h0, w0 = cfg.stage_sizes((h, w))[0]
        assert model.forward_logits(x).shape == (batch, head.num_classes, h0, w0)


@pytest.mark.parametrize("name", ["twins-pcpvt-s", "twins-svt-s"])
@pytest.mark.parametrize("size", [512, (517, 333), (800, 1333)])
def test_preset_structures_at_large_non_divisible_sizes(name, size):
    """The presets' structure (patch sizes 4/2/2/2, windows, k) with narrow widths: the same map
    sizes, padding and resizes as the real model, at a fraction of the tracing time."""
    d = PRESETS[name]
    cfg = ArchConfig.from_dict(dict(d, stages=[dict(s, embed_dim=2 * s["num_heads"], depth=min(s["depth"], 2))
                                               for s in d["stages"]]))
    assert_dense_counts_agree(cfg, HeadConfig(neck_channels=8, channels=4, num_classes=150), size)


def test_full_width_head_on_svt_s_and_batch():
    cfg = get_preset("twins-svt-s")
    cfg = cfg.replace(stages=[dict(s.model_dump(mode="json"), depth=1) for s in cfg.stages])
    rep = assert_dense_counts_agree(cfg, HeadConfig(), (157, 99), batch=2)
    assert rep.total == 2 * analytic_dense_flops(cfg, HeadConfig(), (157, 99)).total


# ---- by hand --------------------------------------------------------------------------------

HAND_CFG = dict(stages=[
    dict(patch_size=4, embed_dim=8, depth=1, num_heads=1, mlp_ratio=2.0, window=[4, 4], pattern="LG"),
    dict(patch_size=2, embed_dim=16, depth=1, num_heads=2, mlp_ratio=2.0, sr_ratio=2),
    dict(patch_size=2, embed_dim=16, depth=1, num_heads=2, mlp_ratio=2.0, sr_ratio=1),
    dict(patch_size=2, embed_dim=32, depth=1, num_heads=2, mlp_ratio=2.0, sr_ratio=1),
])


def test_hand_count():
    """Input 70 x 45 -> stage maps 17x11, 8x5, 4x2, 2x1 (floors); FPN 16 channels, head 8, 3
    classes. Stride ratios 1, 2, 4, 8 -> scale heads of 1, 1, 2, 3 ConvModules."""
    cfg, head = ArchConfig.from_dict(HAND_CFG), HeadConfig(neck_channels=16, channels=8, num_classes=3)
    neck = {
        "lateral": 17 * 11 * 16 * 8 + 8 * 5 * 16 * 16 + 4 * 2 * 16 * 16 + 2 * 1 * 16 * 32,
        "top_down": 4 * 2 * 16 + 8 * 5 * 16 + 17 * 11 * 16,  # 2x1 -> 4x2, 4x2 -> 8x5, 8x5 -> 17x11 (nearest)
        "fpn_conv": (17 * 11 + 8 * 5 + 4 * 2 + 2 * 1) * 16 * 16 * 9,
    }
    to_level0 = 4 * 17 * 11 * 8  # bilinear resize 16x10 / 16x8 / 16x8 -> 17x11
    dec = {
        # level 0 (17x11): conv 16 -> 8; level 1 (8x5): conv 16 -> 8;
        # level 2 (4x2): conv 16 -> 8 at 4x2, conv 8 -> 8 at 8x4;
        # level 3 (2x1): conv 16 -> 8 at 2x1, 8 -> 8 at 4x2 and at 8x4
        "conv": (17 * 11 * 8 * 16 * 9 + 8 * 5 * 8 * 16 * 9 + (4 * 2 * 8 * 16 * 9 + 8 * 4 * 8 * 8 * 9)
                 + (2 * 1 * 8 * 16 * 9 + 4 * 2 * 8 * 8 * 9 + 8 * 4 * 8 * 8 * 9)),
        "norm": 2 * 8 * (17 * 11 + 8 * 5 + (4 * 2 + 8 * 4) + (2 * 1 + 4 * 2 + 8 * 4)),
        # x2 bilinear upsamples (4 per output element): 8x5->16x10; 4x2->8x4->16x8; 2x1->4x2->8x4->16x8
        "upsample": 4 * 8 * (16 * 10 + (8 * 4 + 16 * 8) + (4 * 2 + 8 * 4 + 16 * 8)) + 3 * to_level0,
        "cls": 17 * 11 * 8 * 3,
        "resize": 4 * 70 * 45 * 3,
    }
    assert neck == {"lateral": 37248, "top_down": 3760, "fpn_conv": 546048}
    parts = neck_head_flops(cfg, head, (70, 45))
    assert parts["neck"] == neck
    assert parts["head"] == dec
    handler, logger = Unsupported(), logging.getLogger("fvcore")
    logger.addHandler(handler)
    try:
        traced = count_dense_flops(cfg, head, (70, 45))
    finally:
        logger.removeHandler(handler)
    assert not handler.messages  # BN and upsampling by fvcore's own handles; ReLU/dropout zero-cost
    assert traced.neck == neck and traced.head == dec
    # the backbone: the classifier's count less its final LayerNorm and classifier
    full = analytic_flops(cfg, (70, 45))
    fin = classifier_flops(1, (2, 1), cfg)
    assert traced.backbone.total == full.total - fin["norm"] - fin["head"]
    assert traced.backbone.by_category["head"] == 0

    # parameters: lateral (16 x C_i + 16) and fpn (16*16*9 + 16) per level; ConvModules
    # (8 x c x 9, no bias) + BN (2 x 8); conv_seg 8 x 3 + 3
    hand_neck = (16 * 8 + 16) + 2 * (16 * 16 + 16) + (16 * 32 + 16) + 4 * (16 * 16 * 9 + 16)
    hand_head = 4 * (8 * 16 * 9 + 16) + 3 * (8 * 8 * 9 + 16) + 8 * 3 + 3
    assert neck_head_params(head, cfg) == {"neck": hand_neck, "head": hand_head}
    model = build_model(cfg, head=head)
    assert n_params(model.neck) == hand_neck and n_params(model.decode_head) == hand_head
    assert analytic_dense_params(cfg, head)["total"] == n_params(model)


def test_head_lengths_round_the_log2():
    assert head_lengths([4, 8, 16, 32]) == [1, 1, 2, 3]  # mmseg's ADE20K setting
    assert head_lengths([3, 3, 9, 18, 36, 72]) == [1, 1, 2, 3, 4, 5]  # ratios 1, 1, 3, 6, 12, 24
    import math
    for r in range(1, 300):
        assert head_lengths([1, r])[1] == max(1, round(math.log2(r)))


def test_equal_strides_have_no_upsample():
    """A stage of patch size 1 keeps the map: its scale head has one ConvModule and no
    upsample or resize (mmseg upsamples only where the stride differs)."""
    cfg = ArchConfig.from_dict(dict(stages=[dict(patch_size=4, embed_dim=4, depth=1, num_heads=1, mlp_ratio=1.0),
                                            dict(patch_size=1, embed_dim=4, depth=1, num_heads=1, mlp_ratio=1.0)]))
    head = HeadConfig(neck_channels=4, channels=4, num_classes=2)
    model = build_model(cfg, head=head)
    assert [type(m).__name__ for m in model.decode_head.scale_heads[1]] == ["ConvModule"]
    rep = assert_dense_counts_agree(cfg, head, (32, 36), model)
    assert rep.head["upsample"] == 0 and rep.neck["top_down"] == 0  # both levels 8x9
    assert rep.head["resize"] == 4 * 32 * 36 * 2  # logits 8x9 -> 32x36


# ---- the model --------------------------------------------------------------------------

def test_state_dict_names_are_mmsegs():
    model = build_model(HAND_CFG, head=HeadConfig(neck_channels=16, channels=8, num_classes=3))
    keys = set(model.state_dict())
    for k in ["neck.lateral_convs.0.conv.weight", "neck.lateral_convs.3.conv.bias", "neck.fpn_convs.2.conv.weight",
              "neck.fpn_convs.2.conv.bias", "decode_head.scale_heads.0.0.conv.weight",
              "decode_head.scale_heads.0.0.bn.weight", "decode_head.scale_heads.0.0.bn.running_var",
              "decode_head.scale_heads.3.4.conv.weight", "decode_head.conv_seg.weight", "decode_head.conv_seg.bias",
              "backbone.patch_embeds.0.proj.weight", "backbone.blocks.0.0.attn.qkv.weight"]:
        assert k in keys, k
    assert "decode_head.scale_heads.0.0.conv.bias" not in keys  # bias only without a norm (mmcv)
    assert not any(k.startswith(("backbone.norm.", "backbone.head.")) for k in keys)
    assert isinstance(model.backbone.norm, torch.nn.Identity)


def test_build_model_api_and_seed():
    cfg = ArchConfig.from_dict(HAND_CFG)
    a = build_model(cfg, seed=3, head="semantic-fpn", num_classes=5)
    b = build_model(cfg.to_dict(), seed=3, head={"type": "semantic-fpn", "num_classes": 5})
    assert isinstance(a, TwinsSegmentation) and a.num_classes == 5 and a.head_cfg == b.head_cfg
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert build_model(cfg, head=HeadConfig()).num_classes == 150
    with pytest.raises(TypeError, match="num_classes"):
        build_model(cfg, num_classes=5)
    assert type(build_model(cfg)).__name__ == "Twins"  # without a head: unchanged


def test_eval_forward_is_deterministic_and_train_runs():
    model = build_model(HAND_CFG, seed=0, head=HeadConfig(neck_channels=8, channels=8, num_classes=4))
    x = torch.randn(2, 3, 67, 41)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    model(x).sum().backward()
    assert model.neck.lateral_convs[3].conv.weight.grad is not None


def test_load_timm_backbone():
    import timm
    ref = timm.create_model("twins_svt_small", pretrained=False)
    model = build_model(get_preset("twins-svt-s"), head="semantic-fpn")
    result = load_backbone(model, ref.state_dict())
    assert list(result.missing_keys) == [] and list(result.unexpected_keys) == []
    assert torch.equal(model.backbone.blocks[2][3].attn.kv.weight, ref.blocks[2][3].attn.kv.weight)
    assert analytic_dense_params(get_preset("twins-svt-s"), HeadConfig())["total"] == n_params(model)
    broken = {k: v for k, v in ref.state_dict().items() if not k.startswith("pos_block.0.")}
    with pytest.raises(RuntimeError, match="pos_block.0"):
        load_backbone(model, broken)


# ---- configuration errors --------------------------------------------------------------------

def test_head_config_inputs():
    assert HEADS == ("semantic-fpn", "upernet")
    assert head_config(None) is None
    assert head_config("semantic-fpn") == HeadConfig()
    assert head_config({"channels": 64}, num_classes=19) == HeadConfig(channels=64, num_classes=19)
    h = HeadConfig(num_classes=7)
    assert head_config(h) is h and head_config(h, 9).num_classes == 9
    with pytest.raises(ValidationError, match="frozen"):
        h.num_classes = 3


@pytest.mark.parametrize("head, words", [
    ("fpn", ["head=\"fpn\"", "semantic-fpn"]),
    ("semantic_fpn", ["unknown head", "semantic-fpn"]),
    ({"type": "pspnet"}, ["head.type=\"pspnet\"", "semantic-fpn, upernet"]),
    ({"type": 3}, ["head.type=3", "semantic-fpn, upernet"]),
    ({"num_classes": 0}, ["head.num_classes=0", "greater than 0"]),
    ({"channels": True}, ["head.channels=true"]),
    ({"neck_channels": "256"}, ["head.neck_channels=\"256\""]),
    ({"neck_channels": 256.0}, ["head.neck_channels=256.0"]),
    ({"classes": 3}, ["head.classes: unknown field", "type, num_classes, neck_channels, channels"]),
    (3, ["head:", "semantic-fpn"]),
])
def test_bad_head_is_a_one_line_config_error(head, words):
    with pytest.raises(ConfigError) as e:
        head_config(head)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg
    with pytest.raises(ConfigError):
        build_model(HAND_CFG, head=head)


def test_bad_num_classes_override():
    with pytest.raises(ConfigError, match="head.num_classes=-1"):
        head_config("semantic-fpn", num_classes=-1)


def test_report_is_plain_data():
    rep = analytic_dense_flops(ArchConfig.from_dict(HAND_CFG), HeadConfig(), (64, 96))
    d = rep.to_dict()
    assert set(d["parts"]["neck"]) == set(NECK_CATEGORIES) and set(d["parts"]["head"]) == set(HEAD_CATEGORIES)
    assert set(d["parts"]["backbone"]) == set(d["by_category"]) == set(CATEGORIES)
    assert d["total"] == rep.backbone.total + rep.neck_total + rep.head_total == rep.total
    assert rep.gmacs == rep.total / 1e9 and rep.attention == rep.backbone.attention > 0
    with pytest.raises(ValueError, match="unknown neck"):
        DenseFlopReport(backbone=rep.backbone, neck={"bogus": 1}, head={})


def test_count_flops_of_the_classifier_is_unchanged():
    cfg = ArchConfig.from_dict(HAND_CFG)
    assert count_flops(cfg, (70, 45)) == analytic_flops(cfg, (70, 45))


def test_too_small_input_is_a_config_error():
    with pytest.raises(ConfigError, match="too small"):
        analytic_dense_flops(ArchConfig.from_dict(HAND_CFG), HeadConfig(), (31, 64))


# ---- the presets with Semantic FPN (ADE20K: 150 classes, 512 x 512) --------------------------

def test_presets_at_512():
    head = HeadConfig()
    print()
    print(f"{'model + semantic-fpn':24s} {'params (M)':>10s} {'GMACs':>8s} {'backbone':>9s} {'neck':>7s} "
          f"{'head':>7s}  at 512x512, 150 classes")
    for name in PRESETS:
        cfg = get_preset(name)
        p = analytic_dense_params(cfg, head)
        f = analytic_dense_flops(cfg, head, 512)
        assert p["backbone"] == analytic_params(cfg) - (2 * cfg.embed_dims[-1] + cfg.embed_dims[-1] * 1000 + 1000)
        print(f"{name:24s} {p['total'] / 1e6:10.2f} {f.gmacs:8.2f} {f.backbone.gmacs:9.2f} "
              f"{f.neck_total / 1e9:7.2f} {f.head_total / 1e9:7.2f}")
    # mmseg's Semantic FPN on in_channels [64, 128, 320, 512] (PCPVT-S), by hand:
    # FPN: laterals 256 x C_i + 256, four 3x3 convs 256 x 256 x 9 + 256;
    # FPNHead: 4 first ConvModules 128 x 256 x 9 (+ BN 256), 3 more 128 x 128 x 9 (+ BN 256)
    # (head lengths 1, 1, 2, 3), conv_seg 128 x 150 + 150
    mmseg_neck = 256 * (64 + 128 + 320 + 512) + 4 * 256 + 4 * (256 * 256 * 9 + 256)
    mmseg_head = 4 * (128 * 256 * 9 + 256) + 3 * (128 * 128 * 9 + 256) + 128 * 150 + 150
    ours = neck_head_params(head, get_preset("twins-pcpvt-s"))
    assert ours["neck"] + ours["head"] == pytest.approx(mmseg_neck + mmseg_head, rel=0.02)
    with torch.device("meta"):
        model = build_model("twins-pcpvt-s", head=head)
    assert n_params(model) == analytic_dense_params(get_preset("twins-pcpvt-s"), head)["total"]
