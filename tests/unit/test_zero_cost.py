"""Zero-cost scores (`twins_nas.search.evaluate.zero_cost`): each against a value worked out by hand or
by brute force (numpy, finite differences), the minibatch, determinism, and the metric table."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from twins_nas.config import ArchConfig
from twins_nas.models import build_model, fast_paths_enabled
from twins_nas.models.cpu_fast_paths import MLP_CHUNK_ELEMS, MLP_MIN_CHUNKS
from twins_nas.models.twins import Mlp
from twins_nas.search.evaluate.objective import Evaluator, needs_proxy_data
from twins_nas.search.evaluate.zero_cost import (
    DATA_SCORES,
    SCORES,
    naswot_kernel,
    naswot_score,
    scoring_batch,
    synflow_score,
    zero_cost_scores,
)
from twins_nas.search.proxy.data import ProxyData
from twins_nas.search.report import export
from twins_nas.search.space import metrics
from twins_nas.search.space.space import space_from_dict

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_cfg(**stage) -> ArchConfig:
    """A one-stage, one-block Twins (a few hundred parameters) on 1-channel 8 x 8 images."""
    s = dict(patch_size=4, embed_dim=8, depth=1, num_heads=1, mlp_ratio=1, sr_ratio=1, pattern="G")
    s.update(stage)
    return ArchConfig(stages=[s], num_classes=2, in_chans=1)


def small_cfg(**stage1) -> ArchConfig:
    """Two stages with L and G blocks, for 32-px inputs."""
    stages = [dict(patch_size=4, embed_dim=16, depth=2, num_heads=1, mlp_ratio=2, window=(4, 4), sr_ratio=2,
                   pattern="LG", subsample="conv"),
              dict(patch_size=2, embed_dim=32, depth=1, num_heads=2, mlp_ratio=2, sr_ratio=1, pattern="G")]
    stages[1].update(stage1)
    return ArchConfig(stages=stages, num_classes=10, in_chans=3)


@pytest.fixture(scope="module")
def data() -> ProxyData:
    """40 one-channel 12 x 12 images, labels 0..4 in a scrambled order (8 per class)."""
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([3, 0, 0, 1, 4, 2, 2, 1, 3, 4] * 4)
    x = torch.randn(40, 1, 12, 12, generator=g)
    return ProxyData("synthetic", 5, 1, x, y, x[:10], y[:10])


# ---- NASWOT ---------------------------------------------------------------------------------------
def _mlp(weight1, bias1, hidden_out: int = 1) -> Mlp:
    m = Mlp(len(weight1[0]), len(weight1))
    with torch.no_grad():
        m.fc1.weight.copy_(torch.tensor(weight1, dtype=torch.float32))
        m.fc1.bias.copy_(torch.tensor(bias1, dtype=torch.float32))
    return m


def test_naswot_by_hand():
    # fc1 = identity: image codes (one token each) [1,1], [1,0], [0,0]; N_A = 2
    m = _mlp([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])
    images = torch.tensor([[[1.0, 1.0]], [[1.0, -1.0]], [[-1.0, -1.0]]])  # (3 images, 1 token, 2)
    K = naswot_kernel(m, images)
    # K = N_A - Hamming = [[2,1,0],[1,2,1],[0,1,2]]; det = 2*3 - 1*2 = 4
    assert K.tolist() == [[2, 1, 0], [1, 2, 1], [0, 1, 2]]
    assert naswot_score(m, images) == pytest.approx(math.log(4.0))
    # a zero pre-activation is "off" (sign > 0 is on): the third image's code is [0, 0] again
    images[2, 0] = torch.tensor([0.0, -3.0])
    assert naswot_score(m, images) == pytest.approx(math.log(4.0))


def test_naswot_kernel_against_brute_force_with_a_fast_path_sized_mlp(gen):
    # rows x hidden above the chunked MLP's threshold: with the fast paths on, fc1 would see
    # chunks of rows that mix images; the score turns them off and sees (B, N, hidden)
    dim, hidden, tokens, batch = 8, 1024, 2100, 3
    assert batch * tokens * hidden > MLP_MIN_CHUNKS * MLP_CHUNK_ELEMS
    m = Mlp(dim, hidden)
    images = torch.randn(batch, tokens, dim, generator=gen)
    assert fast_paths_enabled()
    K = naswot_kernel(m, images).numpy()
    assert fast_paths_enabled()  # restored
    w, b = m.fc1.weight.detach().double().numpy(), m.fc1.bias.detach().double().numpy()
    codes = (images.double().numpy() @ w.T + b > 0).reshape(batch, -1)
    expected = np.array([[np.sum(codes[i] == codes[j]) for j in range(batch)] for i in range(batch)])
    # float64 vs float32 pre-activations may disagree on the sign of a few near-zero units
    assert np.abs(K - expected).max() <= 20 and K[0, 0] == tokens * hidden
    assert naswot_score(m, images) == pytest.approx(np.linalg.slogdet(expected)[1], abs=1e-3)


def test_naswot_codes_cover_every_mlp_unit_of_a_twins_exactly_once(gen):
    cfg = small_cfg()
    model = build_model(cfg, seed=0)
    K = naswot_kernel(model, torch.randn(4, 3, 32, 32, generator=gen))
    # N_A on the diagonal: every block's tokens x hidden units, once per image
    units = sum(h * w * s.mlp_hidden * s.depth for s, (h, w) in zip(cfg.stages, cfg.stage_sizes(32)))
    assert K.diagonal().tolist() == [units] * 4
    assert (K == K.T).all() and (K >= 0).all() and (K <= units).all()


# ---- SynFlow --------------------------------------------------------------------------------------
def test_synflow_by_hand():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Linear(3, 1))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, -2.0, 0.0, 1.0], [0.0, 1.0, -1.0, 0.0], [2.0, 0.0, 0.0, -1.0]]))
        model[1].bias.copy_(torch.tensor([0.5, -1.0, 0.0]))
        model[2].weight.copy_(torch.tensor([[-1.0, 2.0, 1.0]]))
        model[2].bias.copy_(torch.tensor([3.0]))
    # |W1| row sums 4, 2, 3; hidden h = row sum + |b1| = 4.5, 3, 3; |W2| = 1, 2, 1. R = |W2|.h + |b2|.
    # W2: sum |W2| h = 13.5; b2: 3; W1: sum_k |W2_k| * rowsum_k = 4 + 4 + 3 = 11; b1: 0.5 + 2 + 0 = 2.5
    assert synflow_score(model, resolution=2, in_chans=1) == pytest.approx(math.log(30.0))
    assert (model[1].weight >= 0).all()  # the model was changed for good, as documented


def test_synflow_of_a_tiny_twins_against_finite_differences():
    model = build_model(tiny_cfg(), seed=1).double()
    ref = copy.deepcopy(model).eval()
    got = synflow_score(model, resolution=8, in_chans=1)
    params = list(ref.parameters())
    with torch.no_grad():
        for p in params:
            p.abs_()
    x = torch.ones(1, 1, 8, 8, dtype=torch.float64)
    total, eps = 0.0, 1e-6
    with torch.no_grad():
        for p in params:
            flat = p.view(-1)
            for i in range(flat.numel()):
                v = flat[i].item()
                flat[i] = v + eps
                up = ref(x).sum().item()
                flat[i] = v - eps
                down = ref(x).sum().item()
                flat[i] = v
                total += abs(v * (up - down) / (2 * eps))
    assert sum(p.numel() for p in params) > 300
    assert got == pytest.approx(math.log(total), abs=1e-6)


# ---- the minibatch -----------------------------------------------------------------------------------
def test_scoring_batch_is_class_balanced_resized_and_fixed(data):
    b = scoring_batch(data, 7, resolution=20, in_chans=3)
    assert b.shape == (7, 3, 20, 20) and b.dtype == torch.float32
    assert torch.equal(b[:, 0], b[:, 1]) and torch.equal(b[:, 0], b[:, 2])  # one channel repeated
    # class 0, 1, 2, 3, 4 (their first images), then the second image of class 0 and of class 1
    first = {c: [i for i in range(40) if data.train_y[i] == c] for c in range(5)}
    picked = [first[0][0], first[1][0], first[2][0], first[3][0], first[4][0], first[0][1], first[1][1]]
    same = scoring_batch(data, 7, resolution=12, in_chans=1)
    assert torch.equal(same, data.train_x[picked])
    assert torch.equal(scoring_batch(data, 7, 20, 3), b)
    with pytest.raises(ValueError, match="41 images"):
        scoring_batch(data, 41, 12, 1)


# ---- the scores of configs ------------------------------------------------------------------------------
def test_scores_are_deterministic_and_tell_architectures_apart(gen):
    images = torch.randn(8, 3, 32, 32, generator=gen)
    a = zero_cost_scores(small_cfg(), SCORES, images, 32, seed=0)
    assert set(a) == {"naswot", "synflow"} and all(math.isfinite(v) for v in a.values())
    assert zero_cost_scores(small_cfg(), ["synflow", "naswot"], images, 32, seed=0) == a
    wider = zero_cost_scores(small_cfg(embed_dim=64, num_heads=2), SCORES, images, 32, seed=0)
    deeper = zero_cost_scores(small_cfg(depth=3), SCORES, images, 32, seed=0)
    for other in (wider, deeper):
        assert other["naswot"] != a["naswot"] and other["synflow"] != a["synflow"]
    assert wider["naswot"] > a["naswot"]  # more units: more distinct patterns
    assert zero_cost_scores(small_cfg(), SCORES, images, 32, seed=1) != a  # the seed draws the weights


def test_only_the_named_scores_and_clear_errors(gen):
    assert set(zero_cost_scores(small_cfg(), ["synflow"], None, 32)) == {"synflow"}  # data-free
    with pytest.raises(ValueError, match="naswot needs a minibatch"):
        zero_cost_scores(small_cfg(), ["naswot"], None, 32)
    with pytest.raises(ValueError, match="unknown zero-cost score"):
        zero_cost_scores(small_cfg(), ["snip"], None, 32)


# ---- the metric table ---------------------------------------------------------------------------------
def test_the_scores_are_metrics_with_a_cost_group_a_direction_and_a_label():
    assert set(SCORES) == set(metrics.ZERO_COST_METRICS) <= set(metrics.METRICS)
    assert set(DATA_SCORES) <= set(metrics.DATA_METRICS)
    assert all(metrics.NATURAL[m] == "maximize" for m in SCORES)
    assert set(metrics.NATURAL) == set(metrics.METRICS) == set(export.METRIC_LABELS)


SPACE = dict(name="t", resolution=32, stages=[dict(patch_size=4, depth=1, embed_dim=16, num_heads=1, mlp_ratio=2,
                                                   sr_ratio=1, pattern="G")])


@pytest.mark.parametrize("objectives,constraints,needs", [
    ({"throughput": "maximize"}, {}, False),
    ({"synflow": "maximize"}, {"params_m": {"max": 5}}, False),
    ({"naswot": "maximize"}, {}, True),
    ({"throughput": "maximize"}, {"naswot": {"min": 10}}, True),
    ({"accuracy": "maximize"}, {}, True),
])
def test_which_spaces_load_the_proxy_data(objectives, constraints, needs):
    space = space_from_dict(dict(SPACE, objectives=objectives, constraints=constraints))
    assert needs_proxy_data(space) is needs
    if needs:
        with pytest.raises(ValueError, match="proxy data is required"):
            Evaluator(space=space, data=None)
    else:
        assert Evaluator(space=space, data=None).scoring_images() is None
