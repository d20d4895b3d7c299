"""The weight-sharing supernet: every config of a space is a subnet (the tiny space exhaustively,
random configs of every committed space), a subnet's weights are the leading slices of the
supernet's (its extracted Twins computes what the supernet computes for it), a config outside
the space is refused, training continued after a stop or a kill gives the weights of an
uninterrupted run, and checkpoints of another space or corrupt ones are refused in one line."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import yaml
from strategies import TINY_SPACE, randomize_

from twins_nas.config import ArchConfig
from twins_nas.errors import ConfigError
from twins_nas.search.proxy.train import evaluate
from twins_nas.search.space.space import SearchSpace, load_space, network_key, space_from_dict
from twins_nas.supernet import (
    Supernet,
    SupernetScorer,
    SupernetSettings,
    extract_subnet,
    largest_config,
    smallest_config,
    subnet_of,
    supernet_shape,
    train_supernet,
)
from twins_nas.supernet.checkpoint import CHECKPOINT

pytestmark = pytest.mark.usefixtures("single_thread")
ROOT = Path(__file__).resolve().parents[2]
COMMITTED = sorted((ROOT / "search_spaces").glob("*.yaml"))


def tiny(**proxy) -> SearchSpace:
    data = yaml.safe_load(TINY_SPACE)
    data["proxy"].update(proxy)
    return space_from_dict(data)


class _Trial:
    """An Optuna-like trial that answers from a list of choice indices and records the size of
    every choice list it was asked."""

    def __init__(self, prefix: list[int]):
        self.prefix, self.sizes = prefix, []

    def suggest_categorical(self, name, choices):
        k = len(self.sizes)
        self.sizes.append(len(choices))
        return choices[self.prefix[k] if k < len(self.prefix) else 0]


def every_config(space: SearchSpace) -> list[ArchConfig]:
    """Every config `space.sample` can return: depth-first over the choices it asks for."""
    out = []

    def walk(prefix: list[int]) -> None:
        trial = _Trial(prefix)
        out.append(space.sample(trial))
        for pos in range(len(prefix), len(trial.sizes)):
            for alt in range(1, trial.sizes[pos]):
                walk(prefix + [0] * (pos - len(prefix)) + [alt])

    walk([])
    return out


def _supernet(space: SearchSpace, seed: int = 0) -> Supernet:
    torch.manual_seed(seed)
    net = Supernet(supernet_shape(space)).eval()
    randomize_(net, torch.Generator().manual_seed(seed), scale=0.1)  # norms and biases not 1 / 0
    return net


def _images(net: Supernet, space: SearchSpace, n: int = 3) -> torch.Tensor:
    r = space.proxy.resolution
    return torch.randn(n, net.shape.in_chans, r, r, generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def _assert_extraction_matches(net: Supernet, space: SearchSpace, cfg: ArchConfig, x: torch.Tensor) -> None:
    sub = subnet_of(space, cfg)
    model = extract_subnet(net, cfg, space)
    assert model.cfg == sub
    expected = model(x)
    assert torch.allclose(net(x, sub), expected, atol=1e-5, rtol=1e-5), cfg


def test_every_config_of_the_tiny_space_is_a_subnet_and_extracts_to_the_same_outputs():
    """All 320 networks run in the supernet; every third one (a sample that still takes every
    value of every choice) is extracted and compared (a Twins build per config is the cost)."""
    space = tiny()
    configs = every_config(space)
    assert len({network_key(c) for c in configs}) == space.size() == 320  # the walk is exhaustive
    net = _supernet(space)
    x = _images(net, space)
    with torch.no_grad():
        for cfg in configs:
            out = net(x, subnet_of(space, cfg))
            assert out.shape == (3, 10) and torch.isfinite(out).all()
    sample = configs[::3]
    for i, st in enumerate(space.stages):  # the sample takes every value of every choice
        for field in ("depth", "embed_dim", "mlp_ratio", "pattern"):
            assert {getattr(c.stages[i], field) for c in sample} == set(getattr(st, field)), (i, field)
    assert {c.stages[0].sr_pair for c in sample} == set(space.stages[0].sr_ratio)
    assert {c.stages[0].window for c in sample if "L" in c.stages[0].block_types} == set(space.stages[0].window)
    for cfg in sample:
        _assert_extraction_matches(net, space, cfg, x)


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.stem)
def test_random_configs_of_every_committed_space_build_run_and_extract(path):
    space = load_space(path)
    net = _supernet(space)
    x = _images(net, space, 2)
    rng = random.Random(0)
    for cfg in [largest_config(space), smallest_config(space)] + [space.random_config(rng) for _ in range(3)]:
        _assert_extraction_matches(net, space, cfg, x)


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.stem)
def test_the_largest_subnet_trains_every_channel_unit_and_block_and_the_smallest_is_below_it(path):
    """The sandwich's largest subnet reaches the supernet's widest width, MLP and deepest depth in
    every stage (so every slice of the shared weights gets a gradient each step); the smallest
    is nowhere larger. The maxima are those of the proxy of every width choice of the space."""
    space = load_space(path)
    shape = supernet_shape(space)
    largest, smallest = subnet_of(space, largest_config(space)), subnet_of(space, smallest_config(space))
    for i, (st, big, small) in enumerate(zip(space.stages, largest.stages, smallest.stages)):
        assert (big.embed_dim, big.mlp_hidden, big.depth) == (shape.stages[i].width, shape.stages[i].hidden,
                                                              shape.stages[i].depth)
        assert big.depth == max(st.depth) and small.depth == min(st.depth)
        assert small.embed_dim <= big.embed_dim and small.mlp_hidden <= big.mlp_hidden


def test_subnet_weights_are_the_leading_slices_shared_by_every_subnet():
    """Two subnets of one stage: the narrower one's weights are the top-left corner of the wider
    one's; an L block's qkv rows are a G block's q rows then its kv rows (shared projections)."""
    space = tiny()
    net = _supernet(space)
    wide = subnet_of(space, largest_config(space))
    narrow = subnet_of(space, smallest_config(space))
    assert narrow.stages[0].embed_dim < wide.stages[0].embed_dim
    a, b = net.subnet_state(narrow), net.subnet_state(wide)
    c, C = narrow.stages[0].embed_dim, wide.stages[0].embed_dim
    h = narrow.stages[0].mlp_hidden
    assert torch.equal(a["blocks.0.0.mlp.fc1.weight"], b["blocks.0.0.mlp.fc1.weight"][:h, :c])
    assert torch.equal(a["blocks.0.0.mlp.fc2.weight"], b["blocks.0.0.mlp.fc2.weight"][:c, :h])
    assert torch.equal(a["patch_embeds.0.proj.weight"], b["patch_embeds.0.proj.weight"][:c])
    # the largest subnet's block 0 is G (pattern G), the smallest one's L (pattern LG): qkv = q | k | v
    assert (wide.stages[0].block_types[0], narrow.stages[0].block_types[0]) == ("G", "L")
    qkv = a["blocks.0.0.attn.qkv.weight"].view(3, c, c)
    assert torch.equal(qkv[0], b["blocks.0.0.attn.q.weight"][:c, :c])
    assert torch.equal(qkv[1:], b["blocks.0.0.attn.kv.weight"].view(2, C, C)[:, :c, :c])
    # the largest subnet takes every weight at full size where its stage is the widest
    assert b["blocks.0.0.mlp.fc1.weight"].shape == net.blocks[0][0].mlp.fc1.weight.shape
    assert torch.equal(b["blocks.0.0.mlp.fc1.weight"], net.blocks[0][0].mlp.fc1.weight)


def test_a_config_outside_the_space_is_refused_in_one_line():
    space = tiny()
    cfg = largest_config(space)
    outside = cfg.replace(stages=[{**cfg.stages[0].model_dump(), "embed_dim": 64, "num_heads": 4},
                                  cfg.stages[1].model_dump()])
    with pytest.raises(ConfigError, match="not a network of space 'tiny'") as e:
        subnet_of(space, outside)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError):
        extract_subnet(_supernet(space), outside, space)
    net = _supernet(space)
    too_wide = subnet_of(space, cfg).replace(stages=[
        {**subnet_of(space, cfg).stages[0].model_dump(), "embed_dim": 64, "num_heads": 4},
        subnet_of(space, cfg).stages[1].model_dump()])
    with pytest.raises(ConfigError, match=r"stages\[0\].embed_dim=64 exceeds the supernet's 16"):
        net.check(too_wide)


# ---- training -------------------------------------------------------------------------------

SETTINGS = dict(checkpoint_every=2, eval_every=3)


class _Killed(Exception):
    pass


@pytest.mark.parametrize("distill", [False, True])
@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_a_run_continued_after_a_stop_or_a_kill_ends_with_the_uninterrupted_weights(tmp_path, how, distill):
    space = tiny(train_samples=100, val_samples=100, batch_size=50, epochs=2, warmup_epochs=0.5)
    settings = SupernetSettings(random_subnets=1, distill=distill, **SETTINGS)
    whole = train_supernet(space, tmp_path / "whole", steps=5, seed=3, settings=settings)
    assert whole.complete and whole.step == 5
    part = tmp_path / "part"
    if how == "stopped":
        first = train_supernet(space, part, steps=5, seed=3, settings=settings, stop_after=3)
        assert (first.step, first.complete) == (3, False)
    else:  # killed in step 3, after the checkpoint of step 2
        def kill(row, total):
            if row["step"] == 3:
                raise _Killed
        with pytest.raises(_Killed):
            train_supernet(space, part, steps=5, seed=3, settings=settings, progress=kill)
    rest = train_supernet(space, part, seed=3, settings=settings)
    assert rest.started_at == (3 if how == "stopped" else 2) and rest.complete
    a = torch.load(whole.checkpoint, weights_only=True)
    b = torch.load(rest.checkpoint, weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["loss"] for r in a["curve"]] == [r["loss"] for r in b["curve"]]
    lines = (part / "curve.csv").read_text().splitlines()
    assert lines[0].startswith("step,lr,loss") and len(lines) == 6
    assert [bool(line.split(",")[5]) for line in lines[1:]] == [False, False, True, False, True]  # every 3, last


def test_training_lowers_the_loss_and_the_scorer_reads_the_extracted_networks_accuracy(tmp_path):
    space = tiny(train_samples=100, val_samples=100, batch_size=50, epochs=2, warmup_epochs=0.5)
    run = train_supernet(space, tmp_path, steps=6, seed=0,
                         settings=SupernetSettings(random_subnets=0, eval_every=6))
    curve = torch.load(run.checkpoint, weights_only=True)["curve"]
    assert curve[-1]["loss_largest"] < curve[0]["loss_largest"]
    scorer = SupernetScorer.load(tmp_path, space)
    assert scorer.complete and scorer.steps == 6
    rng = random.Random(5)
    for cfg in [largest_config(space)] + [space.random_config(rng) for _ in range(2)]:
        acc = scorer.score(cfg)
        assert acc == scorer.score(cfg)  # deterministic
        model = scorer.subnet(cfg)        # the standalone Twins on the same images (independent forward)
        assert acc == pytest.approx(evaluate(model, scorer.data.val_x, scorer.data.val_y), abs=0.011)
    assert curve[-1]["acc_largest"] == scorer.score(largest_config(space))
    few = SupernetScorer.load(tmp_path, space, samples=20)
    assert torch.bincount(few.val_y, minlength=10).tolist() == [2] * 10


def test_another_space_or_a_corrupt_checkpoint_is_refused_in_one_line(tmp_path):
    space = tiny(train_samples=100, val_samples=100, batch_size=50, epochs=2, warmup_epochs=0.5)
    train_supernet(space, tmp_path, steps=1, settings=SupernetSettings(random_subnets=0))
    other = tiny(train_samples=100, val_samples=100, batch_size=50, epochs=2, warmup_epochs=0.5, lr=0.001)
    ckpt = tmp_path / CHECKPOINT
    for call in (lambda: train_supernet(other, tmp_path, steps=1), lambda: SupernetScorer.load(tmp_path, other)):
        with pytest.raises(ConfigError, match="the supernet of another space") as e:
            call()
        assert str(ckpt) in str(e.value) and "\n" not in str(e.value)
    # what changes no supernet: the objectives, constraints, the proxy's own epochs, the name
    data = yaml.safe_load(TINY_SPACE)
    data.update(name="renamed", constraints={"gmacs": {"max": 1}}, objectives={"accuracy": "maximize"})
    data["proxy"].update(train_samples=100, val_samples=100, batch_size=50, epochs=3, warmup_epochs=0.5)
    assert SupernetScorer.load(tmp_path, space_from_dict(data)).steps == 1
    with pytest.raises(ConfigError, match="seed=1: the supernet .* was started with seed 0"):
        train_supernet(space, tmp_path, seed=1)
    with pytest.raises(ConfigError, match="steps=2: .* planned for 1 steps"):
        train_supernet(space, tmp_path, steps=2)
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(ConfigError, match="not a readable supernet checkpoint") as e:
        SupernetScorer.load(tmp_path, space)
    assert str(ckpt) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="no supernet checkpoint"):
        SupernetScorer.load(tmp_path / "none", space)
