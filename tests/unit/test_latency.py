"""Latency, peak memory and the sweep's time budget, on the CPU (fast: tiny networks)."""
from __future__ import annotations

import contextlib
import math
import time

import pytest
import torch
import torch.nn as nn

from twins_nas.config import ArchConfig
from twins_nas.models import build_model
from twins_nas.profile.backends import BACKENDS, MeasureSpec
from twins_nas.profile.latency import LatencyReport, measure_latency, resolve_device, time_forward
from twins_nas.profile.memory import measure_peak_memory_many
from twins_nas.profile.sweep import default_resolutions, profile_sweep

pytestmark = pytest.mark.usefixtures("one_thread")  # every test on one torch thread (tests/conftest.py)


def small_cfg(name: str = "small") -> ArchConfig:
    """A two-stage SVT-like network: LSA + GSA, big enough for memory to show."""
    return ArchConfig(name=name, num_classes=10, stages=[
        dict(patch_size=4, embed_dim=32, depth=2, num_heads=1, mlp_ratio=4, window=(7, 7), sr_ratio=4, pattern="LG"),
        dict(patch_size=2, embed_dim=64, depth=2, num_heads=2, mlp_ratio=4, window=(7, 7), sr_ratio=1, pattern="LG"),
    ])


def test_auto_device_is_cpu_without_gpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"


@pytest.mark.parametrize("bad", ["tpu", "gpu0", "cuda:x", ""])
def test_bad_device_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="device="):
        resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_gpu_says_so():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


def test_cpu_latency_is_sane():
    model = build_model(small_cfg(), seed=0)  # left in train mode: measured in eval, restored
    rep = measure_latency(model, 64, batch=2, device="auto", warmup=1, min_repeats=3, max_repeats=10, budget_s=0.5)
    assert isinstance(rep, LatencyReport)
    assert model.training
    assert rep.device.startswith("cpu (") and rep.threads == torch.get_num_threads()
    assert (rep.batch, rep.resolution, rep.dtype) == (2, 64, "fp32")
    assert 3 <= rep.repeats <= 10
    assert 0 < rep.median_ms < 10_000 and 0 <= rep.iqr_ms < 10 * rep.median_ms
    # the default figure is the fastest pass: never above the median of all passes
    assert rep.statistic == "min" and 0 < rep.latency_ms <= rep.median_ms
    assert rep.throughput == pytest.approx(rep.batch * 1000 / rep.latency_ms)
    assert rep.spread >= 0 and rep.runtime == "eager" and rep.prepare_s >= 0


class ScriptedBackend:
    """Each timed call sleeps the next duration of a script: known pass times."""

    name = "scripted"

    def __init__(self, script_ms: list[float]) -> None:
        self.script = list(script_ms)

    @contextlib.contextmanager
    def prepare(self, model, example, spec):
        yield lambda x: time.sleep(self.script.pop(0) / 1e3 if self.script else 0.0)

    def synchronize(self, device) -> None:
        pass


@pytest.mark.parametrize("statistic, expected_ms", [("best-round", 20.0), ("median", 40.0), ("min", 10.0)])
def test_statistic_and_spread_from_known_pass_times(statistic, expected_ms, monkeypatch):
    # two rounds of three passes: medians 20 and 40 ms -> spread 1.0; fastest pass 10 ms
    script = [10, 20, 30, 40, 40, 50]
    monkeypatch.setitem(BACKENDS, "scripted", ScriptedBackend(script))
    spec = MeasureSpec(device="cpu", warmup=0, min_repeats=6, max_repeats=6, rounds=2, budget_s=60,
                       backend="scripted", statistic=statistic)
    t = time_forward(nn.Identity(), torch.zeros(1), spec)
    assert [len(r) for r in t.rounds] == [3, 3]
    assert t.latency_ms == pytest.approx(expected_ms, rel=0.2)
    assert t.spread == pytest.approx(1.0, rel=0.2)


def test_rounds_and_statistic_are_validated():
    with pytest.raises(ValueError, match="statistic="):
        MeasureSpec(statistic="mean")
    with pytest.raises(ValueError, match="rounds="):
        MeasureSpec(rounds=0)


def test_latency_from_a_config_and_bad_arguments():
    rep = measure_latency(small_cfg(), 32, device="cpu", dtype="bf16", warmup=0, min_repeats=1, max_repeats=2)
    assert rep.dtype == "bf16" and 1 <= rep.repeats <= 2
    with pytest.raises(ValueError, match="dtype"):
        measure_latency(small_cfg(), 32, dtype="int8")
    with pytest.raises(ValueError, match="device"):
        measure_latency(small_cfg(), 32, device="npu")


def test_cpu_peak_memory_is_real_and_grows_with_resolution():
    # a fresh process builds the model from its config (the weights of this one do not matter)
    mem = measure_peak_memory_many(build_model(small_cfg()), [96, 320], batch=1, device="cpu")
    assert set(mem) == {96, 320}
    assert all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in mem.values())
    # 11x the pixels: activations of the big input clearly dominate
    assert mem[320] > 2 * mem[96]


def test_default_resolutions():
    assert default_resolutions(1024) == [224, 320, 448, 512, 640, 768, 896, 1024]
    assert default_resolutions(600) == [224, 320, 448, 512, 600]
    assert default_resolutions(224) == [224] and default_resolutions(96) == [96]
    with pytest.raises(ValueError):
        default_resolutions(16)


def test_sweep_budget_measures_cheap_cells_and_estimates_the_rest():
    cfgs = {"a": small_cfg("a"), "b": small_cfg("b")}
    df = profile_sweep(cfgs, [64, 96], device="cpu", budget_s=None, cell_budget_s=0.1)
    assert df["latency_ms"].notna().all() and df["peak_mem_mb"].notna().all()
    assert df["latency_est_ms"].isna().all()
    # no time at all: nothing is measured, every cell gets an estimate instead
    df = profile_sweep(cfgs, [64, 96], device="cpu", budget_s=1e-9)
    assert df["latency_ms"].isna().all() and df["peak_mem_mb"].isna().all()
    assert (df["latency_est_ms"] > 0).all()
    # analytic only: no forward pass, no device
    df = profile_sweep(cfgs, [64, 96], latency=False)
    assert df["latency_ms"].isna().all() and df["peak_mem_mb"].isna().all() and df["device"].isna().all()
