"""Deployment runtimes (compile, onnxruntime): what each one times computes what eager PyTorch
computes, on odd sizes with padded LSA windows and every sub-sampler; compiling happens before
the timed passes; a runtime that cannot run is one line naming it and the reason; the
``measure:`` section's ``runtime`` key (``backend`` still read)."""
from __future__ import annotations

import sys
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from strategies import arch_configs

from twins_nas.config import ArchConfig
from twins_nas.errors import ConfigError, RenamedWarning
from twins_nas.models import build_model
from twins_nas.profile import BACKENDS, MeasureSpec, measure_latency
from twins_nas.profile.backends import timing_model
from twins_nas.profile.output_check import check_outputs
from twins_nas.profile.runtimes import check_runtime
from twins_nas.profile.stage_time import stage_latency
from twins_nas.search.space.measure import MeasureSettings

pytestmark = pytest.mark.usefixtures("one_thread")  # every test on one torch thread (tests/conftest.py)

ORT = pytest.importorskip("onnxruntime")


def odd_cfg(subsample: str = "dwconv") -> ArchConfig:
    """Windows that divide neither side of 225x161's maps (padding and masks), GSA with k that
    does not divide them either."""
    return ArchConfig(name="odd", num_classes=10, stages=[
        dict(patch_size=4, embed_dim=16, depth=1, num_heads=1, mlp_ratio=2, window=(5, 3), sr_ratio=3,
             pattern="LG", subsample=subsample),
        dict(patch_size=2, embed_dim=32, depth=1, num_heads=2, mlp_ratio=2, window=(4, 6), sr_ratio=2,
             pattern="GL", subsample="avgpool"),
    ])


@pytest.fixture
def ort_outputs(monkeypatch) -> list:
    """The outputs (as tensors) of the onnxruntime runtime's last timed call, one getter per prepare."""
    import twins_nas.profile.runtimes as runtimes
    getters: list = []
    original = runtimes._bound

    def bound(ort_session, device):
        run, outputs = original(ort_session, device)
        getters.append(lambda: [torch.from_numpy(a) for a in outputs()])
        return run, outputs

    monkeypatch.setattr(runtimes, "_bound", bound)
    return getters


def assert_close(out: torch.Tensor, ref: torch.Tensor) -> None:
    """fp32: |out - ref| <= 1e-4 max|ref| + 1e-3 |ref| (the runtimes' tolerance)."""
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, rtol=1e-3, atol=1e-4 * float(ref.abs().max()))


@pytest.mark.parametrize("size", [(225, 161), (97, 131)])
@pytest.mark.parametrize("subsample", ["dwconv", "avgpool", "conv"])
def test_onnxruntime_computes_what_eager_pytorch_computes(size, subsample, ort_outputs):
    model = timing_model(odd_cfg(subsample)).train()
    x = torch.randn(2, 3, *size)
    with torch.inference_mode():
        ref = model.eval()(x)
    model.train()
    with BACKENDS["onnxruntime"].prepare(model, x, MeasureSpec(device="cpu", batch=2)) as run:
        y = 3 * x  # the timed callable runs on what it is given
        run(y)
        (out,) = ort_outputs[-1]()
    assert model.training  # its mode restored
    with torch.inference_mode():
        assert_close(out, model.eval()(y))
    assert not torch.allclose(out, ref)


def test_the_onnxruntime_runtime_output_is_eagers_at_random_configs(ort_outputs):
    @settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
    @given(arch_configs(max_stages=3))
    def check(cfg_dict):
        cfg = ArchConfig(**cfg_dict)
        h, w = 167, 105
        try:
            cfg.stage_sizes((h, w))
        except ConfigError:
            return
        model = build_model(cfg, seed=0).eval()
        x = torch.randn(1, cfg.in_chans, h, w)
        with torch.inference_mode():
            ref = model(x)
        with BACKENDS["onnxruntime"].prepare(model, x, MeasureSpec(device="cpu")) as run:
            run(x)
            (out,) = ort_outputs[-1]()
        assert_close(out, ref)
    check()


def test_measure_latency_with_onnxruntime_times_the_runtime(monkeypatch):
    import twins_nas.profile.runtimes as runtimes
    calls: list = []
    original = runtimes._bound

    def counted(ort_session, device):
        run, outputs = original(ort_session, device)
        return (lambda x: calls.append(tuple(x.shape)) or run(x)), outputs

    monkeypatch.setattr(runtimes, "_bound", counted)
    rep = measure_latency(odd_cfg(), (225, 161), spec=MeasureSpec(device="cpu", backend="onnxruntime", warmup=1,
                                                                  min_repeats=2, max_repeats=2))
    # the check in prepare, the warm-up and the timed passes: all through onnxruntime
    assert rep.repeats == 2 and calls == [(1, 3, 225, 161)] * 4


def test_compile_is_done_in_prepare_and_matches_eager():
    """The one torch.compile test (compiling takes tens of seconds on a small CPU)."""
    import torch._dynamo
    model = timing_model(odd_cfg("avgpool")).train()
    x = torch.randn(1, 3, 225, 161)
    with torch.inference_mode():
        ref = model.eval()(x)
    model.train()
    with BACKENDS["compile"].prepare(model, x, MeasureSpec(device="cpu")) as run:
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        out = run(x)
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs  # compiled in prepare: none now
    assert graphs == 1  # one whole graph
    assert model.training
    assert_close(out, ref)


def test_a_wrong_output_is_one_line_naming_the_runtime_the_error_and_the_tolerance():
    ref = torch.tensor([0.02, -0.01, 0.0])
    assert check_outputs("runtime='x'", ref + 1e-6, ref) == pytest.approx(1e-6, rel=1e-2)  # within 2e-6
    with pytest.raises(ConfigError) as err:
        check_outputs("runtime='onnxruntime'", ref + torch.tensor([0.0, 0.0, 1e-4]), ref)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("runtime='onnxruntime'") and "0.0001" in msg and "2e-06" in msg


def test_a_runtime_that_disagrees_with_eager_is_refused_before_timing(monkeypatch):
    import twins_nas.profile.runtimes as runtimes

    class Skewed(runtimes.OnnxRuntimeBackend):
        name = "skewed"

    original = runtimes._bound

    def skewed(ort_session, device):
        run, outputs = original(ort_session, device)
        return run, lambda: [a * 1.1 for a in outputs()]

    monkeypatch.setattr(runtimes, "_bound", skewed)
    with pytest.raises(ConfigError) as err:
        with Skewed().prepare(timing_model(odd_cfg()), torch.randn(1, 3, 97, 131), MeasureSpec(device="cpu")):
            pytest.fail("timed a wrong graph")
    assert "\n" not in str(err.value) and "differs from eager" in str(err.value)


def test_onnxruntime_missing_is_one_line_with_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    for call in (lambda: check_runtime("onnxruntime", torch.device("cpu")),
                 lambda: measure_latency(odd_cfg(), 97, spec=MeasureSpec(device="cpu", backend="onnxruntime"))):
        with pytest.raises(ConfigError) as err:
            call()
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith("runtime='onnxruntime'") and "twins-nas[onnx]" in msg


def test_an_unknown_runtime_is_one_line_naming_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        check_runtime("tensorrt")
    assert str(err.value).startswith("runtime='tensorrt'") and "eager, compile, onnxruntime" in str(err.value)


def test_onnxruntime_refuses_bf16():
    with pytest.raises(ConfigError) as err:
        measure_latency(odd_cfg(), 97, spec=MeasureSpec(device="cpu", dtype="bf16", backend="onnxruntime"))
    assert "\n" not in str(err.value) and "fp32" in str(err.value)


def test_stage_times_through_a_runtime_cover_every_stage():
    cfg = odd_cfg()
    t = stage_latency(cfg, (225, 161), "cpu", budget_s=0.5, max_repeats=2, runtime="onnxruntime")
    assert len(t.stage_ms) == len(cfg.stages) and all(ms > 0 for ms in t.stage_ms) and t.repeats >= 1


def test_forward_stage_chains_to_forward_features():
    model = build_model(odd_cfg(), seed=0).eval()
    x = torch.randn(1, 3, 97, 131)
    with torch.inference_mode():
        feats = model.forward_features(x)
        y = x
        for i, f in enumerate(feats):
            y = model.forward_stage(i, y)
            assert torch.equal(y, f)


def test_the_runtime_key_of_the_measure_section():
    assert set(BACKENDS) >= {"eager", "compile", "onnxruntime"}
    assert MeasureSettings(runtime="compile").spec().backend == "compile"
    assert "runtime" not in MeasureSettings(runtime="eager").model_dump()  # the default hashes as unset
    assert MeasureSettings(runtime="onnxruntime").model_dump()["runtime"] == "onnxruntime"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        alias = MeasureSettings.model_validate(dict(backend="onnxruntime"))
    assert alias.runtime == "onnxruntime" and any(issubclass(w.category, RenamedWarning) for w in caught)
    assert alias.model_dump() == MeasureSettings(runtime="onnxruntime").model_dump()
    with pytest.raises(ValueError) as err:
        MeasureSettings(runtime="tensorrt")
    assert "eager, compile, onnxruntime" in str(err.value)
