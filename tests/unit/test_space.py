"""Search spaces: YAML validation, one-line errors, overrides, sampling, size, membership."""
from __future__ import annotations

import hashlib
import itertools
import json
import random
import textwrap
import warnings
from pathlib import Path

import optuna
import pytest
import typer
import yaml

from twins_nas.cli.common import user_errors
from twins_nas.config import ArchConfig, ConfigError
from twins_nas.search.space.space import SearchSpace, load_space, space_from_dict

ROOT = Path(__file__).resolve().parents[2]
SPACES = ROOT / "search_spaces"

# the SVT space as the documentation spells it out (written out here, so that editing the
# committed search_spaces/svt.yaml does not change what these tests check)
SVT_EXAMPLE = """\
name: svt
resolution: 224          # input size at which params, GMACs and throughput are measured
num_classes: 1000        # classifier size of the measured full-size model
stages:                  # one mapping per stage; a list is a choice, a scalar is fixed
  - {patch_size: 4, depth: [1, 2, 3], embed_dim: [48, 64, 96], head_dim: 32, mlp_ratio: [3, 4],
     window: [[7, 7], [8, 8], [7, 14]], sr_ratio: [4, 8], pattern: [LG, LLG, L]}
  - {patch_size: 2, depth: [1, 2, 3], embed_dim: [96, 128, 192], head_dim: 32, mlp_ratio: [3, 4],
     window: [[7, 7], [14, 7]], sr_ratio: [2, 4], pattern: [LG, LLG]}
  - {patch_size: 2, depth: [6, 8, 10, 12], embed_dim: [192, 256, 320], head_dim: 32, mlp_ratio: [3, 4],
     window: [[7, 7]], sr_ratio: [1, 2], pattern: [LG, LLG, LGG]}
  - {patch_size: 2, depth: [2, 4], embed_dim: [384, 512], head_dim: 32, mlp_ratio: [3, 4],
     window: [[7, 7]], sr_ratio: 1, pattern: [LG, G]}
subsample: [conv, dwconv, avgpool]
objectives: {accuracy: maximize, throughput: maximize}
constraints: {params_m: {max: 30}, gmacs: {max: 4.0}}
measure: {batch_size: 8}
proxy: {dataset: fashion-mnist, resolution: 32, width_mult: 0.25, train_samples: 6000, epochs: 2,
        batch_size: 128, lr: 0.001}
"""

TINY = dict(
    name="tiny", resolution=64, num_classes=10,
    stages=[dict(patch_size=4, depth=[1, 2], embed_dim=[16, 32], head_dim=16, mlp_ratio=[2, 4],
                 window=[4, "4x8"], sr_ratio=[1, 2], pattern=["L", "G", "LG"]),
            dict(patch_size=[2, 4], depth=[1, 3], embed_dim=32, num_heads=[1, 2], mlp_ratio=4,
                 window=4, sr_ratio=["2x1", 2], pattern=["GL", "G"])],
    subsample=["conv", "avgpool"],
    objectives={"accuracy": "maximize"})


@pytest.fixture
def svt_file(tmp_path):
    p = tmp_path / "svt.yaml"
    p.write_text(SVT_EXAMPLE)
    return p


def write(tmp_path, data) -> Path:
    p = tmp_path / "space.yaml"
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


def test_svt_example_validates_as_written(svt_file):
    space = load_space(svt_file)
    assert space.name == "svt" and space.resolution == 224 and len(space.stages) == 4
    assert space.stages[0].window == [(7, 7), (8, 8), (7, 14)]
    assert space.objectives == {"accuracy": "maximize", "throughput": "maximize"}
    assert space.constraints["gmacs"].max == 4.0
    assert space.source == str(svt_file)
    assert space.contains(ArchConfig.preset("twins-svt-s"))


@pytest.mark.parametrize("name, members", [
    ("svt.yaml", ["twins-svt-s"]),
    ("pcpvt.yaml", ["twins-pcpvt-s"]),
    ("twins.yaml", ["twins-svt-s", "twins-pcpvt-s"]),
])
def test_committed_spaces_contain_their_published_models(name, members):
    space = load_space(SPACES / name)
    for m in members:
        assert space.contains(ArchConfig.preset(m)), m
        params = space.params_of(ArchConfig.preset(m))
        assert space.config_from_params(params).stages == ArchConfig.preset(m).stages
    assert space.size() > 1000


def test_committed_pcpvt_is_global_only_and_twins_is_hybrid():
    pcpvt, twins = load_space(SPACES / "pcpvt.yaml"), load_space(SPACES / "twins.yaml")
    assert all(set(st.pattern) == {"G"} for st in pcpvt.stages)
    patterns = set().union(*(st.pattern for st in twins.stages))
    assert {"L", "G", "LG", "LLG", "GL"} <= patterns
    subs = set().union(*((st.subsample or twins.subsample) for st in twins.stages))
    assert subs == {"conv", "dwconv", "avgpool"}
    assert any(m != n for st in twins.stages for (m, n) in (st.window or []))


def assert_one_line(err: ConfigError, *needles: str) -> str:
    msg = str(err)
    assert "\n" not in msg and "Traceback" not in msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


def mutate(**changes):
    data = yaml.safe_load(SVT_EXAMPLE)
    for path, value in changes.items():
        node = data
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[int(k)] if k.isdigit() else node[k]
        last = keys[-1]
        if value is KeyError:
            del node[last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return data


@pytest.mark.parametrize("data, needles", [
    # unknown key (top level and nested), with the valid keys
    (mutate(unknownkey=1), ["unknownkey: unknown key", "valid keys: name, "]),
    (mutate(stages__1__windw=7), ["stages[1].windw: unknown key", "valid keys:", "window"]),
    (mutate(proxy__epoch=3), ["proxy.epoch: unknown key", "epochs"]),
    (mutate(constraints__gmacs={"maxx": 3}), ["constraints.gmacs.maxx: unknown key", "max"]),
    # wrong type
    (mutate(resolution="big"), ["resolution=\"big\"", "expected H x W in pixels, e.g. 512x1024"]),
    (mutate(resolution=224.0), ["resolution=224.0", "or one number for a square"]),
    (mutate(measure__size="512x"), ["measure.size=\"512x\"", "expected H x W"]),
    (mutate(measure__head="fpn"), ["measure.head='fpn': valid heads are semantic-fpn, upernet"]),
    (mutate(measure__num_classes=19), ["num_classes=19", "give head too"]),
    (mutate(measure__head="semantic-fpn", measure__num_classes=0),
     ["measure.num_classes=0", "greater than or equal to 1"]),
    (mutate(stages__0__depth=["two"]), ["stages[0].depth[0]=\"two\"", "integer"]),
    (mutate(stages__1__window=["seven"]), ["stages[1].window=\"seven\"", "'mxn'"]),
    (mutate(measure="fast"), ["measure=\"fast\""]),
    # empty choice list
    (mutate(stages__2__depth=[]), ["stages[2].depth=[]: empty choice list"]),
    (mutate(subsample=[]), ["subsample=[]: empty choice list"]),
    # embed_dim not divisible by head_dim
    (mutate(stages__1__embed_dim=[96, 100]), ["stages[1].embed_dim=100: not divisible by head_dim=32"]),
    # unknown pattern letter
    (mutate(stages__1__pattern=["LG", "LXG"]), ["stages[1].pattern=\"LXG\": letters must be L", "or G"]),
    # choices with valid values listed
    (mutate(subsample=["conv", "maxpool"]), ["subsample[1]=\"maxpool\"", "'conv', 'dwconv' or 'avgpool'"]),
    (mutate(objectives={"acc": "maximize"}), ["objectives.acc: unknown metric", "accuracy, throughput"]),
    (mutate(objectives={"accuracy": "max"}), ["objectives.accuracy=\"max\"", "'maximize' or 'minimize'"]),
    (mutate(proxy__dataset="mnist"), ["proxy.dataset='mnist'", "fashion-mnist, cifar10"]),
    (mutate(constraints__gmacs={}), ["constraints.gmacs: give min and/or max"]),
    (mutate(measure__dtype="fp64"), ["measure.dtype='fp64': valid dtypes are fp32, bf16, fp16"]),
    (mutate(measure__device="tpu"), ["measure.device='tpu': valid devices are auto, cpu, cuda, cuda:N, mps"]),
    # cross-field rules
    (mutate(stages__0__window=KeyError), ["stages[0].window: required because pattern choice LG, LLG, L"]),
    (mutate(stages__0__head_dim=KeyError), ["stages[0]: give exactly one of head_dim"]),
    (mutate(stages__0__depth=[1, 1]), ["stages[0].depth: duplicate choice 1"]),
    (mutate(resolution=16), ["resolution=16", "at least 32 px"]),
    (mutate(resolution="32x16"), ["resolution=\"32x16\"", "at least 32 px"]),
    (mutate(name=KeyError), ["name: required key missing"]),
])
def test_bad_space_is_one_line_naming_the_key_path(tmp_path, data, needles):
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as e:
        load_space(path)
    assert_one_line(e.value, str(path) + ": ", *needles)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_space(tmp_path / "nope.yaml")
    assert str(e.value) == f"{tmp_path / 'nope.yaml'}: no such file"
    with pytest.raises(ConfigError) as e:
        load_space(write(tmp_path, "name: [unclosed\n"))
    assert_one_line(e.value, "not valid YAML")
    with pytest.raises(ConfigError) as e:
        load_space(write(tmp_path, "- just\n- a list\n"))
    assert_one_line(e.value, "must be a YAML mapping")


def test_cli_maps_config_error_to_exit_code_2(tmp_path):
    @user_errors
    def cmd():
        load_space(tmp_path / "missing.yaml")
    with pytest.raises(typer.Exit) as e:
        cmd()
    assert e.value.exit_code == 2


def test_overrides(svt_file):
    base = load_space(svt_file)
    space = load_space(svt_file, ["proxy.epochs=1", "stages.2.depth=[6,8]", "constraints.gmacs.max=3",
                                    "stages[0].window='7x7'", "constraints.latency_ms.max=50",
                                    "objectives.params_m=minimize", "measure.device=cpu"])
    assert space.proxy.epochs == 1 and space.stages[2].depth == [6, 8]
    assert space.constraints["gmacs"].max == 3 and space.constraints["params_m"].max == 30
    assert space.constraints["latency_ms"].max == 50 and space.objectives["params_m"] == "minimize"
    assert space.stages[0].window == [(7, 7)] and space.measure.device == "cpu"
    assert space.hash != base.hash
    assert load_space(svt_file).hash == base.hash
    # data_root does not change the hash: where the data lives is not part of the search
    assert load_space(svt_file, ["proxy.data_root=/somewhere"]).hash == base.hash


@pytest.mark.parametrize("override, needles", [
    ("proxy.epochz=1", ["proxy.epochz: unknown key", "valid keys:", "epochs"]),
    ("nosuch=1", ["nosuch: unknown key", "valid keys: name"]),
    ("stages.7.depth=2", ["stages[7]: no such stage", "4 stages"]),
    ("stages.1.bogus=2", ["stages[1].bogus: unknown key"]),
    ("constraints.speed.max=2", ["constraints.speed: unknown metric"]),
    ("proxy.epochs", ["expected key.path=value"]),
    ("proxy.epochs=0", ["proxy.epochs=0", "greater than or equal to 1"]),
    ("stages.1.pattern=[LG, LXG]", ["stages[1].pattern=\"LXG\""]),
])
def test_bad_override_fails_clearly(svt_file, override, needles):
    with pytest.raises(ConfigError) as e:
        load_space(svt_file, [override])
    assert_one_line(e.value, str(svt_file) + ": ", *needles)


def test_sample_with_random_sampler_roundtrips(svt_file):
    space = load_space(svt_file)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        cfg = space.sample(trial)
        assert cfg.name is None and cfg.num_classes == 1000 and cfg.in_chans == 3
        assert space.contains(cfg)
        assert space.config_from_params(trial.params) == cfg
        assert all(isinstance(v, (int, float, str)) for v in trial.params.values())
        assert "s0.patch_size" not in trial.params and "s3.sr_ratio" not in trial.params  # fixed
        seen.add(cfg.to_json(indent=None))
        study.tell(trial, 0.0)
    assert len(seen) > 50
    # pairs are encoded as strings and decoded again
    trial = study.ask({"s0.window": optuna.distributions.CategoricalDistribution(["7x7", "8x8", "7x14"])})
    assert isinstance(trial.params["s0.window"], str)


def test_config_from_params_rejects_bad_params(svt_file):
    space = load_space(svt_file)
    params = space.params_of(ArchConfig.preset("twins-svt-s"))
    with pytest.raises(ConfigError, match="s0.depth=7 is not a choice"):
        space.config_from_params(dict(params, **{"s0.depth": 7}))
    with pytest.raises(ConfigError, match="missing 's1.depth'"):
        space.config_from_params({k: v for k, v in params.items() if k != "s1.depth"})


def test_contains_rejects_outsiders(svt_file):
    space = load_space(svt_file)
    svt = ArchConfig.preset("twins-svt-s")
    assert not space.contains(ArchConfig.preset("twins-pcpvt-s"))
    assert not space.contains(ArchConfig.preset("twins-svt-b"))
    stages = [s.model_dump() for s in svt.stages]
    stages[1]["window"] = (8, 8)  # not a stage-1 choice
    assert not space.contains(svt.replace(stages=stages))
    stages = [s.model_dump() for s in svt.stages]
    stages[0]["subsample"] = "avgpool"  # model-wide choice: all sub-sampling stages must agree
    assert not space.contains(svt.replace(stages=stages))
    assert space.contains(svt.replace(name="x", num_classes=10))  # classifier size is not compared


def _brute_force_size(space: SearchSpace) -> int:
    """Enumerate every assignment of every choice, build the config, count distinct networks."""
    names, options = [], []
    for i, st in enumerate(space.stages):
        for f in ("patch_size", "depth", "embed_dim", "head_dim", "num_heads", "mlp_ratio", "window",
                  "sr_ratio", "pattern", "subsample"):
            choices = getattr(st, f)
            if choices and len(choices) > 1:
                names.append(f"s{i}.{f}")
                options.append([c if f not in ("window", "sr_ratio") else f"{c[0]}x{c[1]}" for c in choices])
    names.append("subsample")
    options.append(space.subsample)
    keys = set()
    for combo in itertools.product(*options):
        params = dict(zip(names, combo))
        params = {k: (int(v.split("x")[0]) if k.endswith("sr_ratio") and v.split("x")[0] == v.split("x")[1] else v)
                  for k, v in params.items()}
        cfg = space.config_from_params(params)
        key = []
        for s in cfg.stages:
            kinds = tuple(s.block_types)
            sr = s.sr_pair if "G" in kinds else None
            key.append((s.patch_size, s.depth, s.embed_dim, s.num_heads, s.mlp_ratio, kinds,
                        tuple(s.window) if "L" in kinds else None, sr,
                        s.subsample if sr not in (None, (1, 1)) else None))
        keys.add(tuple(key))
    return len(keys)


def test_size_matches_brute_force():
    space = space_from_dict(TINY)
    assert space.size() == _brute_force_size(space)
    per_stage = dict(TINY, stages=[dict(s, subsample=["conv", "dwconv"]) for s in TINY["stages"]])
    space = space_from_dict(per_stage)
    assert space.size() == _brute_force_size(space)
    # one stage with its own choices, the others on the model-wide one
    for own in (0, 1):
        mixed = dict(TINY, stages=[dict(s, subsample=["conv", "dwconv"]) if i == own else s
                                   for i, s in enumerate(TINY["stages"])])
        space = space_from_dict(mixed)
        assert space.size() == _brute_force_size(space), own


def test_random_config_and_tiny_space_roundtrip():
    space = space_from_dict(TINY)
    rng = random.Random(0)
    for _ in range(50):
        cfg = space.random_config(rng)
        assert space.contains(cfg)
        assert space.config_from_params(space.params_of(cfg)) == cfg
    assert len(space.hash) == 64 and space.source == "<memory>"


def test_window_syntax():
    spec = dict(TINY, stages=[dict(TINY["stages"][0], window=[7, [7, 14], "14x7"]), TINY["stages"][1]])
    assert space_from_dict(spec).stages[0].window == [(7, 7), (7, 14), (14, 7)]
    spec["stages"][0]["window"] = "7x14"
    assert space_from_dict(spec).stages[0].window == [(7, 14)]
    spec["stages"][0]["window"] = [7, 7]
    with pytest.raises(ConfigError, match=r"stages\[0\].window: duplicate choice 7x7 \(a list is a choice list"):
        space_from_dict(spec)


def test_committed_yaml_is_commented():
    for p in SPACES.glob("*.yaml"):
        assert textwrap.dedent(p.read_text()).lstrip().startswith("#"), p


def test_dumped_space_validates_again_with_the_same_hash():
    for p in SPACES.glob("*.yaml"):
        space = load_space(p)
        again = space_from_dict(space.model_dump(mode="json"))
        assert again.hash == space.hash and again.size() == space.size()


# ---- the legacy metric name gflops (now gmacs) ------------------------------------------------
LEGACY_WARNING = r"metric 'gflops' is now called 'gmacs' \(it holds GMACs\); 'gflops' will be removed"
MAX_THROUGHPUT = "objectives: {accuracy: maximize, throughput: maximize}"


def test_gflops_is_read_as_gmacs_with_a_warning(tmp_path):
    legacy = write(tmp_path, SVT_EXAMPLE.replace("gmacs: {max: 4.0}", "gflops: {max: 4.0}").replace(
        MAX_THROUGHPUT, "objectives: {accuracy: maximize, gflops: minimize}"))
    with pytest.warns(DeprecationWarning, match=LEGACY_WARNING):
        space = load_space(legacy)
    assert list(space.constraints) == ["params_m", "gmacs"] and space.objectives["gmacs"] == "minimize"
    # the same space written with the new name is the same space
    new = write(tmp_path, SVT_EXAMPLE.replace(MAX_THROUGHPUT, "objectives: {accuracy: maximize, gmacs: minimize}"))
    assert load_space(new).hash == space.hash


CLAMP = ["proxy.geometry=clamp", "proxy.patch_size=null"]


def test_legacy_hash_is_the_hash_spelled_with_gflops_without_the_proxy_geometry(svt_file):
    space = load_space(svt_file, CLAMP)
    d = space.model_dump(mode="json", exclude={"proxy": {"data_root"}})
    d["constraints"] = {("gflops" if k == "gmacs" else k): v for k, v in d["constraints"].items()}
    del d["proxy"]["geometry"], d["proxy"]["patch_size"], d["halving"], d["replicates"]  # sections newer than it
    old = hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert space.legacy_hash == old != space.hash
    # a space with the faithful geometry (the default) matches no study made before it existed
    assert len(load_space(svt_file).legacy_hash) != 64


@pytest.mark.parametrize("override", ["constraints.gflops.max=3", "constraints.gmacs.max=3"])
@pytest.mark.parametrize("spelling", ["gflops", "gmacs"])
def test_set_takes_either_name_over_a_file_with_either(tmp_path, spelling, override):
    path = write(tmp_path, SVT_EXAMPLE.replace("gmacs: {max: 4.0}", f"{spelling}: {{max: 4.0}}"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        space = load_space(path, [override])
    assert list(space.constraints) == ["params_m", "gmacs"] and space.constraints["gmacs"].max == 3


def test_both_names_of_one_metric_are_an_error(tmp_path):
    path = write(tmp_path, SVT_EXAMPLE.replace("gmacs: {max: 4.0}", "gmacs: {max: 4.0}, gflops: {max: 3}"))
    with pytest.raises(ConfigError) as e, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        load_space(path)
    assert_one_line(e.value, "constraints: 'gflops' and 'gmacs' are the same metric; keep 'gmacs'")


def test_old_fidelity_section_reads_as_halving_with_a_note_and_the_same_hash():
    """A space file written with ``fidelity:`` (successive halving's old name) loads as
    ``halving:``, says so once, and hashes as it did: the committed study made from it resumes."""
    import optuna

    from twins_nas.errors import RenamedWarning

    root = Path(__file__).resolve().parents[2]
    text = (root / "search_spaces" / "svt.yaml").read_text()
    new = yaml.safe_load(text)
    old = dict(new)
    old["fidelity"] = old.pop("halving")
    old["fidelity"] = {"rungs": 2, "eta": 3, "batch": 12}
    with pytest.warns(RenamedWarning, match="'fidelity:' is now called 'halving:'"):
        from_old = space_from_dict(old)
    assert from_old.halving.rungs == 2
    assert from_old.hash == space_from_dict(dict(new, halving={"rungs": 2, "eta": 3, "batch": 12})).hash
    # an override may still name the old section
    with pytest.warns(RenamedWarning):
        assert space_from_dict(old, overrides=["fidelity.eta=4"]).halving.eta == 4
    assert space_from_dict(new, overrides=["fidelity.eta=4"]).halving.eta == 4
    with pytest.raises(ConfigError, match="the same section twice"):
        space_from_dict(dict(old, halving={"rungs": 1}))
    # the hash recorded by the committed study (made before the rename) is the one svt.yaml has now
    db = root / "reports" / "svt-200" / "study.db"
    study = optuna.load_study(study_name="svt", storage=f"sqlite:///{db}")
    assert study.user_attrs["space_hash"] == space_from_dict(new).hash
