"""Proxy training: the proxy architecture, determinism, per-epoch callback, divergence."""
from __future__ import annotations

import pytest
import torch

from twins_nas.config import ArchConfig
from twins_nas.search.proxy.data import ProxyData
from twins_nas.search.proxy.settings import ProxySettings
from twins_nas.search.proxy.train import ProxyDiverged, train_proxy

SMALL = ProxySettings(train_samples=256, val_samples=128, epochs=1, batch_size=64, resolution=32)


def tiny_cfg(**stage0) -> ArchConfig:
    stages = [dict(patch_size=4, embed_dim=32, depth=1, num_heads=1, mlp_ratio=2, window=(7, 7), sr_ratio=8,
                   pattern="LG", subsample="conv"),
              dict(patch_size=2, embed_dim=64, depth=2, num_heads=2, mlp_ratio=2, window=(7, 14), sr_ratio=4,
                   pattern="LG", subsample="avgpool"),
              dict(patch_size=2, embed_dim=128, depth=1, num_heads=4, mlp_ratio=2, sr_ratio=2, pattern="G")]
    stages[0].update(stage0)
    return ArchConfig(stages=stages)


@pytest.fixture(scope="module")
def data() -> ProxyData:
    """Synthetic, learnable 2-class images (class = bright top or bright bottom half)."""
    g = torch.Generator().manual_seed(0)

    def make(n):
        y = torch.arange(n) % 2
        x = torch.randn(n, 1, 32, 32, generator=g) * 0.5
        x[y == 0, :, :16] += 1.0
        x[y == 1, :, 16:] += 1.0
        return x, y
    tx, ty = make(256)
    vx, vy = make(128)
    return ProxyData("synthetic", 2, 1, tx, ty, vx, vy)


def test_same_config_and_seed_give_the_same_accuracy(data):
    cfg = tiny_cfg()
    a = train_proxy(cfg, SMALL, data, resolution=128, seed=3)
    b = train_proxy(cfg, SMALL, data, resolution=128, seed=3)
    assert a.accuracy == b.accuracy and a.final_loss == b.final_loss
    assert 0.0 <= a.accuracy <= 1.0 and a.steps == 4 and a.proxy_params > 0
    assert a.seconds == pytest.approx(a.build_seconds + a.train_seconds + a.eval_seconds)
    c = train_proxy(cfg, SMALL, data, resolution=128, seed=4)
    assert c.final_loss != a.final_loss
    # the caller's RNG is left alone
    torch.manual_seed(0)
    x = torch.rand(3)
    torch.manual_seed(0)
    train_proxy(cfg, SMALL, data, resolution=128, seed=3)
    assert torch.equal(torch.rand(3), x)


def test_learns_and_reports_every_epoch(data):
    calls = []
    settings = SMALL.model_copy(update={"epochs": 3, "batch_size": 32, "lr": 2e-3})
    r = train_proxy(tiny_cfg(), settings, data, resolution=128, seed=0, on_epoch=lambda e, acc: calls.append((e, acc)))
    assert [e for e, _ in calls] == [1, 2, 3]
    assert [acc for _, acc in calls] == r.epoch_accuracies and r.accuracy == r.epoch_accuracies[-1]
    assert r.accuracy > 0.9  # an easy task: the proxy really trains


def test_a_raising_callback_propagates(data):
    class Stop(Exception):
        pass

    def stop(epoch, acc):
        raise Stop(epoch)
    with pytest.raises(Stop):
        train_proxy(tiny_cfg(), SMALL.model_copy(update={"epochs": 2}), data, resolution=128, seed=0, on_epoch=stop)


def test_divergence_raises(data):
    with pytest.raises(ProxyDiverged, match="diverged"):
        train_proxy(tiny_cfg(), SMALL.model_copy(update={"lr": 1e6, "warmup_epochs": 0}), data, resolution=128, seed=0)


def test_evaluating_only_the_last_epoch_gives_the_same_accuracy(data):
    two = SMALL.model_copy(update={"epochs": 2})
    every = train_proxy(tiny_cfg(), two, data, resolution=128, seed=5)
    last = train_proxy(tiny_cfg(), two, data, resolution=128, seed=5, every_epoch=False)
    assert len(every.epoch_accuracies) == 2 and last.epoch_accuracies == every.epoch_accuracies[-1:]
    assert last.accuracy == every.accuracy and last.final_loss == every.final_loss
