"""The paper's counting conventions: each reproduces its table of the Twins paper within 2 %
(the published figures, typed here from the paper, are the truth), and each correction is
checked against an independent count: the attention matmuls by brute force from the shapes,
mmcv's module hooks run on the built model, fvcore's trace."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from twins_nas import ConfigError, build_model, get_preset
from twins_nas.models.cpu_fast_paths import TokenConv, fast_paths
from twins_nas.models.head_config import HEADS
from twins_nas.profile import count_flops
from twins_nas.profile.conventions import CONVENTIONS, padded_lsa_qkv_macs, paper_count

pytestmark = pytest.mark.usefixtures("single_thread")

# Twins paper (NeurIPS 2021) Table 1: params M, GFLOPs at 224; Table 2 (ADE20K, 512x512):
# Semantic FPN GFLOPs / params M, UperNet GFLOPs / params M.
TABLE1 = {"twins-pcpvt-s": (24.11, 3.83), "twins-pcpvt-b": (43.83, 6.68), "twins-pcpvt-l": (60.99, 9.84),
          "twins-svt-s": (24.06, 2.94), "twins-svt-b": (56.07, 8.59), "twins-svt-l": (99.27, 15.15)}
FPN = {"twins-pcpvt-s": (40, 28.4), "twins-pcpvt-b": (55, 48.1), "twins-pcpvt-l": (71, 65.3),
       "twins-svt-s": (37, 28.3), "twins-svt-b": (67, 60.4), "twins-svt-l": (102, 103.7)}
UPERNET = {"twins-pcpvt-s": (234, 54.6), "twins-pcpvt-b": (250, 74.3), "twins-pcpvt-l": (269, 91.5),
           "twins-svt-s": (228, 54.4), "twins-svt-b": (261, 88.5), "twins-svt-l": (297, 133)}


def within(ours: float, paper: float, pct: float = 2.0) -> bool:
    return abs(ours / paper - 1) * 100 <= pct


@pytest.mark.parametrize("name", TABLE1)
def test_table1_is_twins_nas_default(name):
    c = paper_count(get_preset(name), 224, None, "twins-nas")
    params, gflops = TABLE1[name]
    assert within(c.params_m, params, 0.1) and within(c.gmacs, gflops, 0.2), (c.params_m, c.gmacs)


@pytest.mark.parametrize("name", FPN)
def test_semantic_fpn_is_mmcv(name):
    cfg = get_preset(name)
    gflops, params = FPN[name]
    c = paper_count(cfg, 512, "semantic-fpn", "mmcv")
    assert within(c.gmacs, gflops) and within(c.params_m, params), (c.gmacs, c.params_m)
    default = paper_count(cfg, 512, "semantic-fpn", "twins-nas")
    assert not within(default.gmacs, gflops)  # the default counts attention: 3-13 % above


@pytest.mark.skipif("upernet" not in HEADS, reason="the upernet head is not available")
@pytest.mark.parametrize("name", UPERNET)
def test_upernet_is_fvcore_official(name):
    gflops, params = UPERNET[name]
    c = paper_count(get_preset(name), 512, "upernet", "fvcore-official")
    assert within(c.gmacs, gflops) and within(c.params_m, params), (c.gmacs, c.params_m)


def test_gflops_are_macs_not_twice():
    """2 x MACs would put Table 1 100 % above the paper."""
    c = paper_count(get_preset("twins-svt-s"), 224)
    assert not within(2 * c.gmacs, TABLE1["twins-svt-s"][1], 50)


def brute_force_attention_macs(cfg, size) -> int:
    """Q·Kᵀ + A·V of every block, window by window (LSA, the padded map's windows) or against
    the sub-sampled keys (GSA), each (queries x keys x head_dim) per head, twice."""
    total = 0
    h, w = size
    for s in cfg.stages:
        h, w = h // s.patch_size, w // s.patch_size
        for kind in s.block_types:
            if kind == "L":
                m, n = min(s.window[0], h), min(s.window[1], w)
                for _ in range(math.ceil(h / m) * math.ceil(w / n)):
                    total += 2 * s.num_heads * (m * n) * (m * n) * s.head_dim
            else:
                k1, k2 = s.sr_pair
                keys = math.ceil(h / k1) * math.ceil(w / k2)
                total += 2 * s.num_heads * (h * w) * keys * s.head_dim
    return total


class MmcvHooks:
    """mmcv's get_model_complexity_info rules as forward hooks on module types: Conv2d (and
    twins-nas's TokenConv, the official nn.Conv2d) = MACs + bias per output element, Linear =
    numel(input) x out_features, LayerNorm / BatchNorm (affine) = 2 per input element, ReLU = 1
    per output element; nothing else. BatchNorm is skipped: the official configs use SyncBN."""

    def __init__(self, model: nn.Module):
        self.total = 0
        self.handles = [m.register_forward_hook(self.hook) for m in model.modules()]

    def hook(self, m, inputs, out):
        x = inputs[0]
        if isinstance(m, nn.Conv2d):
            per_pos = m.kernel_size[0] * m.kernel_size[1] * m.in_channels * m.out_channels // m.groups
            positions = out.numel() // m.out_channels
            self.total += per_pos * positions + (out.numel() if m.bias is not None else 0)
        elif isinstance(m, TokenConv):
            tokens = out.shape[0] * out.shape[1]
            self.total += tokens * m.out_channels * m.in_channels * m.kernel_size[0] * m.kernel_size[1] + out.numel()
        elif isinstance(m, nn.Linear):
            self.total += x.numel() * m.out_features
        elif isinstance(m, nn.LayerNorm):
            self.total += 2 * x.numel()
        elif isinstance(m, nn.ReLU):
            self.total += out.numel()


@pytest.mark.parametrize("name,size", [("twins-svt-s", (160, 160)), ("twins-pcpvt-s", (128, 96))])
def test_mmcv_pieces_against_hooks_and_brute_force(name, size):
    """mmcv convention = the hooks' count on twins-nas's model + what the official model adds
    (q/k/v on the padded map, SVT's stage norms, the backbone's attention matmuls already out);
    and the attention matmuls removed are the brute-force count."""
    cfg = get_preset(name)
    c = paper_count(cfg, size, "semantic-fpn", "mmcv")
    assert -c.macs_pieces["attention matmuls"] == brute_force_attention_macs(cfg, size)
    model = build_model(cfg, head="semantic-fpn").eval()
    hooks = MmcvHooks(model)
    with torch.no_grad(), fast_paths(False):  # the plain layers: every hook fires
        model(torch.zeros(1, 3, *size))
    official_only = c.macs_pieces["LSA q/k/v on the padded map"] + c.macs_pieces["stage norms"]
    assert c.macs - official_only == hooks.total


def test_mmcv_classifier_is_fvcore_without_attention():
    """At 224 (no padding, no stage norms) mmcv's count of the classifier is fvcore's trace less
    the brute-force attention matmuls, with LayerNorm at 2 instead of 5 and conv biases added:
    about 3.68 / 2.82 G for PCPVT-S / SVT-S, the reference's attention-free figures."""
    for name, expected in (("twins-pcpvt-s", 3.68), ("twins-svt-s", 2.82)):
        c = paper_count(get_preset(name), 224, None, "mmcv")
        assert abs(c.gmacs - expected) < 0.01


def test_fvcore_official_against_trace():
    """fvcore-official = fvcore's trace of twins-nas's model + the padded q/k/v projections
    (the padded token count read from F.pad as the official LSA pads) + 5 per stage-norm element."""
    cfg, size = get_preset("twins-svt-s"), (160, 160)
    c = paper_count(cfg, size, "semantic-fpn", "fvcore-official")
    assert c.macs_pieces["twins-nas"] == count_flops(cfg, size, head="semantic-fpn").total
    padded = 0
    for s, (h, w) in zip(cfg.stages, cfg.stage_sizes(size)):
        x = torch.zeros(1, h, w, 1)
        ws = min(s.window[0], h)
        xp = F.pad(x, (0, 0, 0, (ws - w % ws) % ws, 0, (ws - h % ws) % ws))
        padded += s.block_types.count("L") * (xp.numel() - x.numel()) * 3 * s.embed_dim ** 2
    assert padded > 0 and padded_lsa_qkv_macs(cfg, size) == padded == c.macs_pieces["LSA q/k/v on the padded map"]
    norms = sum(5 * h * w * s.embed_dim for s, (h, w) in zip(cfg.stages, cfg.stage_sizes(size)))
    assert c.macs_pieces["stage norms"] == norms


def test_dense_params_hold_the_classifier_and_stage_norms():
    cfg = get_preset("twins-svt-s")
    c = paper_count(cfg, 512, "semantic-fpn", "mmcv")
    assert c.params_pieces["unused ImageNet classifier"] == 512 * 1000 + 1000 + 2 * 512
    assert c.params_pieces["stage norms"] == 2 * (64 + 128 + 256 + 512)
    assert "stage norms" not in paper_count(get_preset("twins-pcpvt-s"), 512, "semantic-fpn", "mmcv").params_pieces


def test_bad_convention_is_one_line():
    with pytest.raises(ConfigError, match="convention='fvcore2'.*twins-nas, mmcv, fvcore-official") as err:
        paper_count(get_preset("twins-svt-s"), 224, convention="fvcore2")
    assert "\n" not in str(err.value) and set(CONVENTIONS) == {"twins-nas", "mmcv", "fvcore-official"}
