"""Latency tables: the blocks of a config and of a space (exact), the table file and its
errors, and the predictor against measurements (within the measured noise)."""
from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import TINY_SPACE
from twins_nas.config import ArchConfig
from twins_nas.errors import ConfigError
from twins_nas.models import HeadConfig
from twins_nas.models.twins import Block, LocallyGroupedAttn, PatchEmbed, PosConv
from twins_nas.profile.backends import MeasureSpec, timing_model
from twins_nas.profile.latency import measure_latency
from twins_nas.search.latency import LatencyPredictor, model_blocks, space_blocks
from twins_nas.search.latency.build import build_latency_table, fit_overhead
from twins_nas.search.space.space import load_space, network_key, space_from_dict

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = sorted((ROOT / "search_spaces").glob("*.yaml"))
DENSE = ([], ["measure.head=semantic-fpn", "measure.size=512"], ["measure.head=upernet", "measure.size='512x640'"])


# ---- which blocks ------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides", DENSE, ids=["classifier", "semantic-fpn", "upernet"])
@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.stem)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_every_block_of_a_sampled_config_is_in_the_space_set(path, overrides, seed):
    space = load_space(path, overrides)
    blocks = _space_blocks(str(path), tuple(overrides))
    cfg = space.random_config(random.Random(seed))
    for key in model_blocks(cfg, space.measure_size, space.measure.batch_size, space.measure.head_config):
        assert key in blocks, key.describe()


_CACHE: dict = {}


def _space_blocks(path: str, overrides: tuple) -> set:
    if (path, overrides) not in _CACHE:
        _CACHE[path, overrides] = space_blocks(load_space(path, list(overrides)))
    return _CACHE[path, overrides]


class _Script:
    """A `random.Random` stand-in whose `choice` follows a script of indices (then takes 0),
    recording how many options each call had: walking the scripts enumerates every config."""

    def __init__(self, script: list[int]):
        self.script, self.sizes = script, []

    def choice(self, options):
        i = self.script[len(self.sizes)] if len(self.sizes) < len(self.script) else 0
        self.sizes.append(len(options))
        return options[i]


def all_configs(space) -> list[ArchConfig]:
    """Every config `random_config` can draw (depth-first over its choice calls)."""
    out, script = [], []
    while True:
        rng = _Script(script)
        out.append(space.random_config(rng))
        script = script + [0] * (len(rng.sizes) - len(script))
        while script and script[-1] + 1 >= rng.sizes[len(script) - 1]:
            script.pop()
        if not script:
            return out
        script[-1] += 1


WIDE = TINY_SPACE.replace("patch_size: 2, depth: [1, 2], embed_dim: [32, 48]",
                          "patch_size: [2, 4], depth: [1, 2], embed_dim: [32, 48]").replace(
    "window: 2, sr_ratio: 1,", "window: [2, '1x3'], sr_ratio: [1, '2x1'], subsample: [avgpool, dwconv],")


@pytest.mark.parametrize("text", [TINY_SPACE, WIDE], ids=["tiny", "tiny-wide"])
@pytest.mark.parametrize("overrides", [[], ["measure.head=semantic-fpn"], ["measure.head=upernet", "measure.size=72"],
                                       ["measure.size='40x96'", "measure.batch_size=3"]],
                         ids=["classifier", "semantic-fpn", "upernet", "non-square"])
def test_space_set_is_exactly_the_union_over_all_configs(text, overrides):
    import yaml
    space = space_from_dict(yaml.safe_load(text), overrides=overrides)
    configs = all_configs(space)
    if text == TINY_SPACE:  # the enumeration is complete (`size` miscounts a space mixing per-stage and
        assert len({network_key(c) for c in configs}) == space.size()  # model-wide sub-sampling choices)
    union = {k for c in configs
             for k in model_blocks(c, space.measure_size, space.measure.batch_size, space.measure.head_config)}
    assert space_blocks(space) == union


def _forward_calls(cfg: ArchConfig, size: tuple[int, int], head=None) -> Counter:
    """What a real forward runs, read by hooks: (kind, width, map) per module call."""
    model = timing_model(cfg, head)
    calls: Counter = Counter()

    def hook(module, args):
        x = args[0]
        if isinstance(module, PatchEmbed):
            calls["embed", x.shape[1], tuple(x.shape[-2:])] += 1
        elif isinstance(module, Block):
            kind = "L" if isinstance(module.attn, LocallyGroupedAttn) else "G"
            calls[kind, x.shape[-1], tuple(args[1])] += 1
        elif isinstance(module, PosConv):
            calls["peg", x.shape[-1], tuple(args[1])] += 1
    for m in model.modules():
        if isinstance(m, (PatchEmbed, Block, PosConv)):
            m.register_forward_pre_hook(hook)
    if head is not None:
        for conv in model.neck.lateral_convs:
            conv.register_forward_pre_hook(lambda m, a: calls.update([("fpn-lateral", a[0].shape[1],
                                                                         tuple(a[0].shape[-2:]))]))
    with torch.inference_mode():
        model.eval()(torch.randn(2, cfg.in_chans, *size))
    return calls


@pytest.mark.parametrize("head", [None, HeadConfig(num_classes=5)], ids=["classifier", "semantic-fpn"])
def test_model_blocks_are_what_the_forward_runs(head):
    space = space_from_dict(__import__("yaml").safe_load(WIDE))
    rng = random.Random(3)
    for _ in range(4):
        cfg = space.random_config(rng)
        size = (40, 72)
        keys = model_blocks(cfg, size, 2, head)
        got = Counter((k.kind if k.kind != "embed" else "embed",
                       int(k.param("in") if k.kind in ("embed", "fpn-lateral") else k.param("dim")),
                       k.size) for k in keys if k.kind in ("embed", "L", "G", "peg", "fpn-lateral"))
        assert got == _forward_calls(cfg, size, head)
        rest = [k for k in keys if k.kind in ("classifier", "fpn-rest")]
        assert len(rest) == 1 and rest[0].kind == ("classifier" if head is None else "fpn-rest")
        for k in keys:  # an L block's window is clamped to its map; k = 1x1 has no sub-sampler
            if k.kind == "L":
                m, n = (int(v) for v in str(k.param("win")).split("x"))
                assert m <= k.size[0] and n <= k.size[1]
            if k.kind == "G":
                assert ("sub" in dict(k.params)) == (k.param("k") != "1x1")


def test_a_block_id_and_its_words():
    cfg = ArchConfig.preset("twins-svt-s")
    keys = model_blocks(cfg, 224, 8)
    assert [k.kind for k in keys[:4]] == ["embed", "L", "peg", "G"]
    g = keys[3]
    assert g.id == "G dim=64 heads=2 mlp=256 k=8x8 sub=conv @56x56 b8"
    assert g.describe() == "G block dim=64 heads=2 mlp=256 k=8x8 conv at 56x56 (batch 8)"
    assert sum(k.kind in "LG" for k in keys) == sum(cfg.depths)


# ---- the table and the predictor ---------------------------------------------------------------
SMALL = TINY_SPACE.replace("depth: [1, 2], embed_dim: [16, 32]", "depth: [1, 2], embed_dim: 16").replace(
    "mlp_ratio: [2, 4]", "mlp_ratio: 2")
FAST = MeasureSpec(device="cpu", threads=1, warmup=1, min_repeats=4, max_repeats=20, budget_s=0.05, rounds=2)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    import yaml
    folder = tmp_path_factory.mktemp("table")
    (folder / "small.yaml").write_text(SMALL)
    space = load_space(folder / "small.yaml")
    table = build_latency_table(space, FAST, folder / "t.json", calibration=3)
    return space, folder / "t.json", table, yaml


def test_the_table_records_every_block_and_how_it_was_made(built):
    space, path, table, _ = built
    data = json.loads(path.read_text())
    assert set(data["blocks"]) == {k.id for k in space_blocks(space)}
    assert data["batch"] == 1 and data["size"] == [64, 64] and data["head"] is None and data["runtime"] == "eager"
    assert data["space"]["hash"] == space.hash and data["threads"] == 1 and "torch" in data["libraries"]
    assert len(data["calibration"]) == 3 and all(r["measured_ms"] > 0 for r in data["calibration"])
    assert all(b["latency_ms"] > 0 and b["repeats"] >= 4 for b in data["blocks"].values())


def test_prediction_is_within_the_measured_noise(built):
    space, path, table, _ = built
    predictor = LatencyPredictor.load(path)
    predictor.check_space(space)
    held_out = {network_key(ArchConfig.from_dict(r["config"])) for r in table.calibration}
    rng = random.Random(11)
    cfg = next(c for c in iter(lambda: space.random_config(rng), None) if network_key(c) not in held_out)
    spec = replace(FAST, batch=1, budget_s=0.3, rounds=3)
    model = timing_model(cfg)
    first, second = (measure_latency(model, 64, spec=spec) for _ in range(2))
    noise = abs(first.latency_ms / second.latency_ms - 1) + first.spread + second.spread
    error = abs(predictor.predict(cfg) / first.latency_ms - 1)
    assert error <= max(0.5, 3 * noise), (error, noise)


def test_fit_overhead_recovers_a_line():
    fit = fit_overhead([1.0, 2.0, 4.0], [3.5, 5.0, 8.0])
    assert (round(fit.a, 6), round(fit.b, 6), fit.method) == (1.5, 2.0, "least squares")
    assert (fit_overhead([2.0], [3.0]).a, fit_overhead([2.0], [3.0]).b) == (1.5, 0.0)  # one model: its ratio
    assert fit_overhead([], []).a == 1.0


def test_a_fit_that_noise_bends_never_predicts_a_negative_time():
    # blocks timed under load (sums far above the whole models): a line through these points
    # would predict a negative time for the smallest; the median ratio is used instead
    blocks, whole = [505.0, 4235.0, 1666.0, 1965.0, 1376.0], [277.0, 750.0, 294.0, 249.0, 3306.0]
    fit = fit_overhead(blocks, whole)
    assert fit.method == "median ratio" and fit.b == 0.0
    assert fit.a == sorted(w / b for w, b in zip(whole, blocks))[2]


def _copy(path: Path, tmp_path: Path, edit) -> Path:
    data = json.loads(path.read_text())
    edit(data)
    out = tmp_path / "edited.json"
    out.write_text(json.dumps(data))
    return out


def test_a_missing_block_is_named_in_words(built, tmp_path):
    space, path, _, _ = built
    victim = sorted(k for k in json.loads(path.read_text())["blocks"] if k.startswith("G "))[0]
    edited = _copy(path, tmp_path, lambda d: d["blocks"].pop(victim))
    with pytest.raises(ConfigError) as e:
        LatencyPredictor.load(edited).check_space(space)
    msg = str(e.value)
    assert "\n" not in msg and "edited.json has no G block dim=" in msg and "(batch 1)" in msg
    assert "twins-nas latency-table --space" in msg


@pytest.mark.parametrize("edit, msg", [
    (lambda d: d.update(version=99), "version 99"),
    (lambda d: d.pop("fit"), "missing field fit"),
    (lambda d: d["blocks"][next(iter(d["blocks"]))].update(latency_ms="fast"), "latency_ms=\"fast\""),
    (lambda d: d.update(format="other"), "not a latency table"),
    (lambda d: d.update(size=[64]), "size=[64]"),
])
def test_a_bad_table_is_one_line_naming_the_file(built, tmp_path, edit, msg):
    edited = _copy(built[1], tmp_path, edit)
    with pytest.raises(ConfigError) as e:
        LatencyPredictor.load(edited)
    assert "\n" not in str(e.value) and str(edited) in str(e.value) and msg in str(e.value)


def test_a_truncated_table_is_one_line(built, tmp_path):
    cut = tmp_path / "cut.json"
    cut.write_text(built[1].read_text()[:200])
    with pytest.raises(ConfigError, match="not valid JSON.*corrupt or truncated"):
        LatencyPredictor.load(cut)


def test_another_size_batch_head_or_runtime_is_refused(built):
    space, path, _, _ = built
    predictor = LatencyPredictor.load(path)
    cfg = space.random_config(random.Random(0))
    with pytest.raises(ConfigError, match="measured at 64x64 px, not 96x96"):
        predictor.predict(cfg, size=96)
    with pytest.raises(ConfigError, match="batch 1, not 4"):
        predictor.predict(cfg, batch=4)
    with pytest.raises(ConfigError, match="with the classifier, not head semantic-fpn"):
        predictor.predict(cfg, head="semantic-fpn")
    for override, msg in (("measure.batch_size=2", "batch 1, space .* measures with 2"),
                          ("measure.size=96", "at 64x64 px, space .* measures at 96x96"),
                          ("measure.dtype=bf16", "dtype fp32"),
                          ("measure.head=upernet", "measures head upernet")):
        with pytest.raises(ConfigError, match=msg):
            predictor.check_space(space_from_dict(built[3].safe_load(SMALL), overrides=[override]))


def test_predicting_a_config_is_fast(built):
    predictor = LatencyPredictor.load(built[1])
    space = load_space(ROOT / "search_spaces" / "svt.yaml")
    cfg = space.random_config(random.Random(0))
    import time
    predictor.table.blocks.update({k.id: predictor.table.blocks[next(iter(predictor.table.blocks))]
                                   for k in model_blocks(cfg, 64, 1)})
    t = time.perf_counter()
    for _ in range(50):
        predictor.predict(cfg)
    assert (time.perf_counter() - t) / 50 < 0.02


def test_measure_predictor_is_read_from_the_space_folder_and_absent_when_unset(tmp_path):
    svt = load_space(ROOT / "search_spaces" / "svt.yaml")
    assert "predictor" not in svt.measure.model_dump(mode="json") and svt.predictor_path is None
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "s.yaml").write_text(SMALL.replace("measure: {batch_size: 1}",
                                                           "measure: {batch_size: 1, predictor: t.json}"))
    space = load_space(tmp_path / "sub" / "s.yaml")
    assert space.predictor_path == tmp_path / "sub" / "t.json"
    assert space.hash != load_space(tmp_path / "sub" / "s.yaml", ["measure.predictor=null"]).hash


@pytest.mark.parametrize("overrides", [["measure.head=semantic-fpn"], ["measure.head=upernet", "measure.size='64x96'"]],
                         ids=["semantic-fpn", "upernet"])
def test_every_dense_block_runs_on_its_example(overrides):
    from twins_nas.search.latency.modules import block_example, block_module
    space = space_from_dict(__import__("yaml").safe_load(SMALL), overrides=overrides)
    with torch.inference_mode():
        for key in space_blocks(space):
            y = block_module(key).eval()(block_example(key))
            if key.kind.endswith("-rest"):  # the logits at the input size
                assert tuple(y.shape) == (1, 150, *space.measure_size)
