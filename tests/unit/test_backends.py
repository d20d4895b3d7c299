"""Timing backends and the one measuring spec: the backend a spec names runs the timed passes
(in `measure_latency`, the sweep and the search), the search's ``measure:`` section becomes the
spec it always gave, the sweep's old keywords mean the same spec, and `run_profile` is the
`profile` command as one call."""
from __future__ import annotations

import contextlib

import pytest
import torch
import yaml
from strategies import TINY_SPACE

import twins_nas.profile.sweep as sweep_mod
import twins_nas.search.evaluate.objective as objective_mod
from twins_nas.config import ArchConfig
from twins_nas.errors import ConfigError
from twins_nas.models import build_model
from twins_nas.profile import (
    BACKENDS,
    SWEEP_SPEC,
    EagerBackend,
    MeasureSpec,
    ProfileResult,
    get_backend,
    measure_latency,
    profile_sweep,
    register_backend,
    run_profile,
)
from twins_nas.search.evaluate.objective import time_model
from twins_nas.search.space.measure import MeasureBudget, MeasureSettings
from twins_nas.search.space.space import load_space, space_from_dict

TIMING_COLUMNS = {"latency_ms", "latency_iqr_ms", "latency_spread", "latency_repeats", "throughput", "latency_est_ms",
                  "prepare_s", "peak_mem_mb"}


pytestmark = pytest.mark.usefixtures("one_thread")  # every test on one torch thread (tests/conftest.py)


def small_cfg(name: str = "small") -> ArchConfig:
    return ArchConfig(name=name, num_classes=10, stages=[
        dict(patch_size=4, embed_dim=16, depth=1, num_heads=1, mlp_ratio=2, window=(4, 4), sr_ratio=2, pattern="LG"),
        dict(patch_size=2, embed_dim=32, depth=1, num_heads=2, mlp_ratio=2, window=(4, 4), sr_ratio=1, pattern="LG"),
    ])


class CountingBackend:
    """The eager passes, counted: every call of the timed callable, every example, every sync."""

    name = "counting"

    def __init__(self) -> None:
        self.calls = 0
        self.syncs = 0
        self.examples: list[tuple] = []

    @contextlib.contextmanager
    def prepare(self, model, example, spec):
        self.examples.append((tuple(example.shape), example.device.type))
        with EagerBackend().prepare(model, example, spec) as run:
            def counted(x):
                self.calls += 1
                return run(x)
            yield counted

    def synchronize(self, device) -> None:
        self.syncs += 1


@pytest.fixture
def counting():
    backend = register_backend(CountingBackend())
    yield backend
    del BACKENDS["counting"]


# ---- the backend a spec names runs the passes -----------------------------------------------

def test_measure_latency_runs_the_named_backend(counting):
    model = build_model(small_cfg(), seed=0)
    rep = measure_latency(model, (32, 64), spec=MeasureSpec(device="cpu", batch=2, backend="counting", warmup=2,
                                                            min_repeats=3, max_repeats=6, budget_s=60))
    assert counting.examples == [((2, 3, 32, 64), "cpu")]  # (batch, in_chans, H, W)
    assert 3 <= rep.repeats <= 6
    assert counting.calls == 2 + rep.repeats  # warm-up + timed passes, all through the backend
    assert counting.syncs >= 1
    assert model.training  # eager's prepare put the train mode back


def test_keywords_replace_fields_of_the_spec(counting):
    spec = MeasureSpec(device="cpu", batch=1, backend="counting", warmup=0, min_repeats=1, max_repeats=1)
    rep = measure_latency(small_cfg(), 32, spec=spec, batch=3, warmup=1)
    assert (rep.batch, rep.repeats) == (3, 1)
    assert counting.calls == 1 + 1 and counting.examples == [((3, 3, 32, 32), "cpu")]


def test_the_spec_threads_apply_while_measuring_only():
    torch.set_num_threads(2)
    rep = measure_latency(small_cfg(), 32, spec=MeasureSpec(device="cpu", threads=1, warmup=0, min_repeats=1,
                                                            max_repeats=1))
    assert rep.threads == 1 and rep.device == "cpu (1 thread)"
    assert torch.get_num_threads() == 2


def test_an_unknown_backend_is_one_line_naming_the_valid_ones(counting):
    for call in (lambda: get_backend("tensorrt"),
                 lambda: measure_latency(small_cfg(), 32, spec=MeasureSpec(device="cpu", backend="tensorrt"))):
        with pytest.raises(ConfigError) as err:
            call()
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith("backend='tensorrt'")
        assert "eager" in msg and "counting" in msg


def test_a_taken_name_is_refused_unless_replaced(counting):
    with pytest.raises(ConfigError, match="registered already"):
        register_backend(CountingBackend())
    other = CountingBackend()
    assert register_backend(other, replace=True) is other and get_backend("counting") is other
    with pytest.raises(ConfigError, match="prepare"):
        register_backend(object())


@pytest.mark.parametrize("fields, needle", [
    (dict(batch=0), "batch=0: "), (dict(threads=0), "threads=0: "), (dict(warmup=-1), "warmup=-1: "),
    (dict(min_repeats=4, max_repeats=3), "max_repeats=3: "), (dict(dtype="int8"), "dtype='int8': "),
    (dict(device="tpu"), "device='tpu' "), (dict(budget_s=-1.0), "budget_s=-1.0: "),
])
def test_bad_spec_fields_are_one_line_naming_the_field(fields, needle):
    with pytest.raises(ConfigError) as err:
        MeasureSpec(**fields)
    assert str(err.value).startswith(needle) and "\n" not in str(err.value)


# ---- the search's measure section is a spec ----------------------------------------------------

def space_with(measure: dict):
    data = yaml.safe_load(TINY_SPACE)
    data["measure"] = measure
    return space_from_dict(data)


def test_the_measure_section_gives_measure_latency_the_spec_it_always_gave(monkeypatch):
    """What time_model handed measure_latency: the measured size, the section's batch and dtype,
    the search's device and the budget's warm-up, repeats and seconds."""
    space = space_with(dict(batch_size=3, dtype="bf16", device="cuda:1"))
    seen = {}

    def record(model, resolution, *args, spec=None, **kw):
        seen.update(resolution=resolution, args=args, kw=kw, spec=spec)

    monkeypatch.setattr(objective_mod, "measure_latency", record)
    time_model(small_cfg(), space, "cpu", MeasureBudget(warmup=0, min_repeats=2, max_repeats=9, budget_s=0.25))
    spec = seen["spec"]
    assert seen["resolution"] == (64, 64) and not seen["args"] and not seen["kw"]
    assert spec.device == "cpu"  # the search's device, not the section's
    assert (spec.batch, spec.dtype) == (3, "bf16")
    assert (spec.warmup, spec.min_repeats, spec.max_repeats, spec.budget_s) == (0, 2, 9, 0.25)
    assert (spec.target_rel_iqr, spec.channels_last, spec.threads, spec.backend) == (0.05, None, None, "eager")
    # without a device, the section's; without a budget, MeasureBudget's defaults
    spec = space.measure.spec()
    assert (spec.device, spec.warmup, spec.min_repeats, spec.max_repeats, spec.budget_s) == ("cuda:1", 1, 3, 30, 1.0)


def test_the_search_times_with_the_sections_backend(counting):
    space = space_with(dict(batch_size=2, backend="counting"))
    rep = time_model(small_cfg(), space, "cpu", MeasureBudget(warmup=1, min_repeats=2, max_repeats=2))
    assert counting.examples == [((2, 3, 64, 64), "cpu")]
    assert counting.calls == 1 + rep.repeats == 3


def test_the_backend_key_leaves_existing_spaces_hashing_as_before(counting):
    # the committed study of reports/svt-200 resumes only with this hash
    assert load_space("search_spaces/svt.yaml").hash == \
        "a0d464138ccb11a6dc57b6b7d069695a0a4d5c9dbd0573d96ecbe84a6d0a56ef"
    plain = space_with(dict(batch_size=2))
    assert {"backend", "runtime"}.isdisjoint(plain.model_dump(mode="json")["measure"])
    assert space_with(dict(batch_size=2, backend="eager")).hash == plain.hash  # the default, named
    assert space_with(dict(batch_size=2, runtime="eager")).hash == plain.hash
    other = space_with(dict(batch_size=2, backend="counting"))  # the other name of runtime
    assert other.model_dump(mode="json")["measure"]["runtime"] == "counting" and other.hash != plain.hash
    assert space_with(dict(batch_size=2, runtime="counting")).hash == other.hash


def test_an_unknown_backend_in_a_space_is_one_line():
    with pytest.raises(ConfigError) as err:
        space_with(dict(batch_size=2, backend="tensorrt"))
    assert "\n" not in str(err.value) and "measure.runtime='tensorrt'" in str(err.value) and "eager" in str(err.value)
    assert MeasureSettings().spec().backend == "eager"


# ---- the sweep: one spec, the search's timed model ---------------------------------------------

def test_sweep_keywords_and_the_equivalent_spec_give_the_same_rows():
    cfgs = {"a": small_cfg("a"), "b": small_cfg("b")}
    old = profile_sweep(cfgs, [64, (64, 96)], batch=2, device="cpu", dtype="fp32", cell_budget_s=0.02, memory=False)
    spec = MeasureSpec(device="cpu", dtype="fp32", batch=2, warmup=1, min_repeats=3, max_repeats=30, budget_s=0.02)
    new = profile_sweep(cfgs, [64, (64, 96)], spec, memory=False)
    assert list(old.columns) == list(new.columns)
    same = [c for c in old.columns if c not in TIMING_COLUMNS]
    assert old[same].equals(new[same])
    assert list(new["batch"]) == [2] * 4 and set(new["dtype"]) == {"fp32"} and set(new["threads"]) == {1}
    assert new["latency_ms"].gt(0).all() and new["latency_repeats"].between(3, 30).all()
    assert SWEEP_SPEC == MeasureSpec(batch=1, warmup=1, min_repeats=3, max_repeats=30, budget_s=0.5)


def test_the_sweep_times_what_the_search_times(monkeypatch, counting):
    built = []

    def timing_model(cfg, head=None):
        built.append((cfg.name, head))
        return real(cfg, head)

    real = sweep_mod.timing_model
    monkeypatch.setattr(sweep_mod, "timing_model", timing_model)
    assert real is objective_mod.timing_model  # one builder of timed models
    spec = MeasureSpec(device="cpu", backend="counting", warmup=1, min_repeats=2, max_repeats=2)
    df = profile_sweep({"a": small_cfg("a"), "b": small_cfg("b")}, [64], spec, memory=False)
    assert sorted(built) == [("a", None), ("b", None)]  # once per model, in the order the sweep picks
    assert counting.calls == 2 * (1 + 2) and list(df["latency_repeats"]) == [2, 2]


# ---- run_profile: the profile command as one call ----------------------------------------------

def test_run_profile_writes_the_report_and_returns_it(tmp_path):
    res = run_profile({"tiny": small_cfg("tiny")}, [64, (64, 128)], out_dir=tmp_path, latency=False)
    assert isinstance(res, ProfileResult) and res.out_dir == tmp_path
    assert res.sizes == [(64, 64), (64, 128)] and list(res.frame["size"]) == ["64x64", "64x128"]
    assert len(res.optimality) == 2 * 2  # sizes x stages
    names = {f.name for f in res.files}
    assert {"profile.csv", "complexity.html", "optimality.csv", "optimality.json", "optimality.html"} <= names
    assert not any(n.endswith(".png") for n in names)  # analytic only: no PNGs unless asked for
    assert all(f.exists() for f in res.files) and res.estimated_cells == 0


@pytest.mark.parametrize("kwargs, start", [
    (dict(num_classes=3), "num_classes=3: give `head` too"),
    (dict(head="pspnet"), 'head="pspnet"'),
    (dict(min_keys=0), "min_keys=0"),
    (dict(budget_s=-1), "budget_s=-1"),
    (dict(sizes=["51x"]), "sizes='51x'"),
    (dict(sizes=[]), "sizes: no sizes"),
])
def test_run_profile_errors_name_the_field(tmp_path, kwargs, start):
    kwargs = dict(dict(sizes=[64]), **kwargs)
    with pytest.raises(ConfigError) as err:
        run_profile({"tiny": small_cfg("tiny")}, out_dir=tmp_path, latency=False, **kwargs)
    assert str(err.value).startswith(start) and "\n" not in str(err.value)
    assert not list(tmp_path.iterdir())  # checked before anything is written
