"""fvcore counting (`count_flops`): the published GMACs, the attention handle by hand, the
category split, and what it tolerates (built models, non-square inputs, batches)."""
from __future__ import annotations

import logging

import pytest
import torch
import torch.nn as nn
from strategies import Unsupported

from twins_nas import ArchConfig, ConfigError, build_model, get_preset
from twins_nas.models.cost_model import CATEGORIES
from twins_nas.models.cpu_fast_paths import fast_paths
from twins_nas.models.twins import GlobalSubSampleAttn, LocallyGroupedAttn
from twins_nas.profile import analytic_flops, count_flops
from twins_nas.profile.flops import SDPA, ZERO_COST_OPS, _fvcore, sdpa_flop_jit

# Paper, Table 1/2: GMACs at 224 x 224, attention matmuls included.
PAPER_GMACS = {"twins-pcpvt-s": 3.83, "twins-pcpvt-b": 6.68, "twins-pcpvt-l": 9.84,
               "twins-svt-s": 2.94, "twins-svt-b": 8.59, "twins-svt-l": 15.15}


@pytest.fixture(scope="module")
def traced_224():
    cache, warned = {}, {}

    def get(name, warnings=False):
        if name not in cache:
            handler, logger = Unsupported(), logging.getLogger("fvcore")
            logger.addHandler(handler)
            try:
                cache[name] = count_flops(get_preset(name), 224)
            finally:
                logger.removeHandler(handler)
            warned[name] = handler.messages
        return (cache[name], warned[name]) if warnings else cache[name]
    return get


@pytest.mark.parametrize("name", PAPER_GMACS)
def test_presets_match_the_paper(name, traced_224):
    rep, warned = traced_224(name, warnings=True)
    assert not warned  # every op fvcore does not know is a deliberate zero-cost op
    assert rep.gmacs == pytest.approx(PAPER_GMACS[name], rel=0.01)
    assert set(rep.by_category) == set(CATEGORIES)
    assert sum(rep.by_category.values()) == rep.total
    assert rep.by_category["lsa_matmul"] + rep.by_category["gsa_matmul"] > 0


@pytest.mark.parametrize("name", PAPER_GMACS)
def test_analytic_presets_match_the_paper(name):
    assert analytic_flops(get_preset(name), 224).gmacs == pytest.approx(PAPER_GMACS[name], rel=0.01)


def test_pcpvt_has_no_lsa_and_svt_has_both(traced_224):
    pcpvt, svt = traced_224("twins-pcpvt-s").by_category, traced_224("twins-svt-s").by_category
    assert pcpvt["lsa_matmul"] == pcpvt["attn_qkv"] == 0 and pcpvt["gsa_matmul"] > 0
    assert svt["lsa_matmul"] > 0 and svt["gsa_matmul"] > 0 and svt["attn_qkv"] > 0


# ---- the attention handle, by hand ------------------------------------------------------

class OnMap(nn.Module):
    """Runs one attention module on a fixed H x W token map."""

    def __init__(self, attn: nn.Module, size):
        super().__init__()
        self.attn, self.size = attn, size

    def forward(self, x):
        return self.attn(x, self.size)


def fvcore_ops(module: nn.Module, x: torch.Tensor) -> dict:
    fca = _fvcore()(module.eval(), x).set_op_handle(SDPA, sdpa_flop_jit)
    fca.set_op_handle(**{op: None for op in ZERO_COST_OPS})
    with torch.no_grad():
        return dict(fca.tracer_warnings("none").by_operator())


def test_sdpa_handle_global_attention_by_hand():
    B, H, W, C, heads = 2, 5, 7, 12, 3
    hd, N = C // heads, H * W
    ops = fvcore_ops(OnMap(GlobalSubSampleAttn(C, heads, (1, 1)), (H, W)), torch.randn(B, N, C))
    assert ops["scaled_dot_product_attention"] == B * heads * N * N * hd * 2  # Q·Kᵀ + A·V
    assert ops["linear"] == B * N * C * C + B * N * C * 2 * C + B * N * C * C  # q, kv, proj


def test_sdpa_handle_subsampled_and_windowed_by_hand():
    B, H, W, C, heads = 2, 5, 7, 12, 3
    hd, N = C // heads, H * W
    # GSA k = (2, 3): keys = ceil(5/2) * ceil(7/3) = 9
    ops = fvcore_ops(OnMap(GlobalSubSampleAttn(C, heads, (2, 3)), (H, W)), torch.randn(B, N, C))
    assert ops["scaled_dot_product_attention"] == B * heads * N * 9 * hd * 2
    # LSA 3 x 4 windows: padded to 6 x 8 = 4 windows of 12 tokens; the mask costs nothing.
    # Through SDPA (the handle), and through the explicit matmuls small windows use on CPU
    lsa = LocallyGroupedAttn(C, heads, (3, 4))
    with fast_paths(False):
        ops = fvcore_ops(OnMap(lsa, (H, W)), torch.randn(B, N, C))
    assert ops["scaled_dot_product_attention"] == B * 4 * heads * 12 * 12 * hd * 2
    with fast_paths(True):
        ops = fvcore_ops(OnMap(lsa, (H, W)), torch.randn(B, N, C))
    assert "scaled_dot_product_attention" not in ops
    assert ops["matmul"] == B * 4 * heads * 12 * 12 * hd * 2


# ---- behaviour ------------------------------------------------------------------------------

def test_attention_share_grows_with_resolution_for_pcpvt(traced_224):
    cfg = get_preset("twins-pcpvt-s")

    def share(rep):
        return (rep.by_category["lsa_matmul"] + rep.by_category["gsa_matmul"]) / rep.total
    traced = [share(traced_224("twins-pcpvt-s")), share(count_flops(cfg, 448))]
    assert traced[0] < traced[1]
    analytic = [share(analytic_flops(cfg, r)) for r in (224, 320, 448, 512, 768, 1024, 2048)]
    assert all(a < b for a, b in zip(analytic, analytic[1:]))
    assert analytic[0] == pytest.approx(traced[0], rel=1e-12) and analytic[2] == pytest.approx(traced[1], rel=1e-12)


SMALL = ArchConfig(num_classes=10, stages=[
    dict(patch_size=4, embed_dim=8, depth=3, num_heads=2, mlp_ratio=2, window=(5, 3), sr_ratio=3, pattern="LG"),
    dict(patch_size=2, embed_dim=16, depth=2, num_heads=4, mlp_ratio=2, window=(2, 2), sr_ratio=(2, 5),
         subsample="dwconv", pattern="GL"),
    dict(patch_size=2, embed_dim=16, depth=1, num_heads=2, mlp_ratio=1.5, sr_ratio=2, subsample="avgpool"),
    dict(patch_size=2, embed_dim=16, depth=1, num_heads=2, mlp_ratio=1.5, sr_ratio=1),
])


def test_no_unsupported_op_warnings(caplog):
    with caplog.at_level(logging.WARNING):
        count_flops(SMALL, (70, 90))
    assert not [r for r in caplog.records if "nsupported" in r.getMessage()], caplog.text


def test_built_model_batch_and_non_square_input():
    model = build_model(SMALL).train()
    one = count_flops(model, (70, 90))
    assert model.training  # count_flops evaluates in eval mode and restores the mode
    assert count_flops(model, (70, 90), batch=3).total == 3 * one.total
    assert one.total == analytic_flops(SMALL, (70, 90)).total
    assert count_flops(model, (90, 70)).total != one.total  # per-resolution trace, not reused


def test_too_small_input_is_a_config_error():
    with pytest.raises(ConfigError, match="too small"):
        count_flops(SMALL, 8)
