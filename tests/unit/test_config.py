"""ArchConfig as data: JSON round trips (same config, same network, same outputs), schema
versions, collections, and invalid configs rejected with ONE line that names the field and
the rule."""
from __future__ import annotations

import copy
import json

import pydantic
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from strategies import arch_configs

from twins_nas import PRESETS, SCHEMA_VERSION, ArchConfig, ConfigError, build_model, get_preset, load_config

pytestmark = pytest.mark.usefixtures("single_thread")


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def svt_s_dict() -> dict:
    return copy.deepcopy(PRESETS["twins-svt-s"])


# ---- round trips ---------------------------------------------------------------------------

@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(cfg_dict=arch_configs(max_stages=3))
def test_json_round_trip_gives_the_same_config_and_network(cfg_dict, tmp_path_factory):
    cfg = ArchConfig.from_dict(cfg_dict)
    path = tmp_path_factory.mktemp("rt") / "cfg.json"
    cfg.to_json(path)
    back = ArchConfig.from_json(path)
    assert back == cfg
    assert back.to_dict() == cfg.to_dict() == json.loads(path.read_text())
    a, b = build_model(cfg, seed=3).eval(), build_model(back, seed=3).eval()
    assert n_params(a) == n_params(b)
    x = torch.randn(1, cfg.in_chans, 40, 56, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_round_trip_and_param_count(name, tmp_path):
    cfg = get_preset(name)
    cfg.to_json(tmp_path / "p.json", meta={"note": "anything"})
    back = ArchConfig.from_json(tmp_path / "p.json")
    assert back == cfg and back.name == name
    if name == "twins-svt-s":  # the cheapest preset: build both, compare parameter counts and weights
        a, b = build_model(cfg, seed=1), build_model(back, seed=1)
        assert n_params(a) == n_params(b) == 24_060_776
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_to_dict_is_plain_json_with_schema_version():
    d = get_preset("twins-svt-s").to_dict()
    assert d["schema_version"] == SCHEMA_VERSION == 1
    assert json.loads(json.dumps(d)) == d
    assert d["stages"][0]["window"] == [7, 7] and d["stages"][0]["sr_ratio"] == 8


def test_newer_schema_version_fails_clearly(tmp_path):
    d = get_preset("twins-svt-s").to_dict()
    d["schema_version"] = SCHEMA_VERSION + 1
    (tmp_path / "new.json").write_text(json.dumps(d))
    with pytest.raises(ConfigError) as info:
        ArchConfig.from_json(tmp_path / "new.json")
    msg = str(info.value)
    assert "\n" not in msg
    assert f"schema_version={SCHEMA_VERSION + 1} is newer than this twins-nas supports ({SCHEMA_VERSION})" in msg
    assert "new.json" in msg


def test_collection_loads_by_index(tmp_path):
    names = ["twins-svt-s", "twins-pcpvt-s", "twins-svt-b"]
    path = tmp_path / "pareto.json"
    path.write_text(json.dumps({"configs": [get_preset(n).to_dict() for n in names], "meta": {"x": 1}}))
    assert ArchConfig.from_json(path).name == names[0]  # default: the first entry
    for i, n in enumerate(names):
        assert ArchConfig.from_json(path, index=i) == get_preset(n)
        assert load_config(str(path), index=i).name == n
    assert ArchConfig.from_json(path, index=-1).name == names[-1]
    with pytest.raises(ConfigError, match=r"index=3 is out of range: the file holds 3 configs"):
        ArchConfig.from_json(path, index=3)


def test_entry_with_meta_loads(tmp_path):
    cfg = get_preset("twins-pcpvt-s")
    text = cfg.to_json(meta={"metrics": {"accuracy": 0.5}})
    assert json.loads(text)["meta"] == {"metrics": {"accuracy": 0.5}}
    (tmp_path / "best_config.json").write_text(text)
    assert ArchConfig.from_json(tmp_path / "best_config.json") == cfg


@pytest.mark.parametrize("content, needle", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "config must be a JSON object, got list"),
    ('{"configs": []}', "configs: expected a non-empty list"),
])
def test_malformed_files_fail_with_one_line(tmp_path, content, needle):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        ArchConfig.from_json(path)
    assert needle in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(str(path))


def test_missing_file_and_unknown_name():
    with pytest.raises(ConfigError, match="no such config file"):
        ArchConfig.from_json("/nonexistent/cfg.json")
    with pytest.raises(ConfigError, match="'nope' is neither a preset .*twins-svt-s.* nor a JSON file"):
        load_config("nope")
    with pytest.raises(ConfigError, match="unknown preset 'twins-svt-x'; choose one of: twins-pcpvt-s"):
        get_preset("twins-svt-x")
    assert get_preset("twins_svt_s") == get_preset("TWINS-SVT-S")


# ---- invalid configs: one line naming the field and the rule ------------------------------

def _stage(i: int, **changes):
    def edit(d):
        d["stages"][i].update(changes)
    return edit


def _pop(i: int, key: str):
    def edit(d):
        d["stages"][i].pop(key)
    return edit


INVALID = [
    ("heads", _stage(2, embed_dim=100, num_heads=3), "stages[2].embed_dim=100 is not divisible by num_heads=3", True),
    ("extra-stage-key", _stage(0, foo=1),
     "stages[0].foo: unknown field; valid fields: patch_size, embed_dim, depth, num_heads, mlp_ratio, window, "
     "sr_ratio, subsample, pattern", True),
    ("extra-top-key", lambda d: d.update(depthz=[1]), "depthz: unknown field; valid fields: schema_version", False),
    ("pattern", _stage(1, pattern="LXG"),
     "stages[1].pattern: must be a non-empty string of 'L' (local) and 'G' (global) letters, got 'LXG'", True),
    ("pattern-empty", _stage(1, pattern=""), "stages[1].pattern: must be a non-empty string", False),
    ("subsample", _stage(1, subsample="maxpool"), "stages[1].subsample=\"maxpool\":", False),
    ("window-missing", _stage(1, window=None),
     "stages[1].window is required because pattern='LG' has local (L) blocks", True),
    ("window-short", _stage(0, window=[7]),
     "stages[0].window=[7]: must be a pair [m, n] of positive integers (window rows, cols)", True),
    ("window-zero", _stage(0, window=[7, 0]), "stages[0].window=[7, 0]: must be a pair [m, n]", False),
    ("sr-triple", _stage(3, sr_ratio=[2, 3, 4]),
     "stages[3].sr_ratio=[2, 3, 4]: must be a positive integer k or a pair [k1, k2] of positive integers", True),
    ("sr-zero", _stage(3, sr_ratio=0), "stages[3].sr_ratio=0: must be a positive integer k", False),
    ("depth-negative", _stage(1, depth=-1), "stages[1].depth=-1: Input should be greater than 0", True),
    ("depth-missing", _pop(1, "depth"), "stages[1].depth: required field missing", True),
    ("mlp-zero", _stage(0, mlp_ratio=0), "stages[0].mlp_ratio=0: Input should be greater than 0", True),
    ("stages-empty", lambda d: d.update(stages=[]), "stages=[]: at least one stage is required", True),
    ("stage-not-object", lambda d: d.update(stages=[1]), "stages[0]=1: must be an object", False),
    ("drop-path", lambda d: d.update(drop_path_rate=1.0), "drop_path_rate=1.0: Input should be less than 1", True),
    ("classes", lambda d: d.update(num_classes=-1), "num_classes=-1: Input should be greater than or equal to 0",
     True),
]


@pytest.mark.parametrize("edit, expected, exact", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_config_is_one_line_naming_field_and_rule(edit, expected, exact):
    d = svt_s_dict()
    edit(d)
    with pytest.raises(ConfigError) as info:
        ArchConfig.from_dict(d)
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "\n" not in msg, msg
    if exact:
        assert msg == expected
    else:
        assert msg.startswith(expected), msg


def test_subsample_error_lists_every_valid_choice():
    d = svt_s_dict()
    d["stages"][1]["subsample"] = "maxpool"
    with pytest.raises(ConfigError) as info:
        ArchConfig.from_dict(d)
    msg = str(info.value)
    assert all(f"'{c}'" in msg for c in ("conv", "dwconv", "avgpool")), msg


def test_several_problems_are_all_reported_on_one_line():
    d = svt_s_dict()
    d["stages"][0]["window"] = [3]
    d["stages"][2]["depth"] = 0
    with pytest.raises(ConfigError) as info:
        ArchConfig.from_dict(d)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("stages[0].window=[3]: must be a pair") and "; stages[2].depth=0: " in msg


def test_errors_from_a_file_name_the_file(tmp_path):
    d = svt_s_dict()
    d["stages"][2].update(embed_dim=100, num_heads=3)
    (tmp_path / "c.json").write_text(json.dumps(d))
    with pytest.raises(ConfigError) as info:
        ArchConfig.from_json(tmp_path / "c.json")
    assert str(info.value) == f"{tmp_path / 'c.json'}: stages[2].embed_dim=100 is not divisible by num_heads=3"


def test_config_is_immutable_and_replace_validates():
    cfg = get_preset("twins-svt-s")
    with pytest.raises(pydantic.ValidationError):  # frozen
        cfg.num_classes = 5
    assert cfg.replace(num_classes=5).num_classes == 5
    with pytest.raises(ConfigError, match="num_classes=-2"):
        cfg.replace(num_classes=-2)


def test_stage_sizes_floor_and_reject_empty_maps():
    cfg = get_preset("twins-pcpvt-s")
    assert cfg.stage_sizes(224) == [(56, 56), (28, 28), (14, 14), (7, 7)]
    assert cfg.stage_sizes((225, 100)) == [(56, 25), (28, 12), (14, 6), (7, 3)]
    with pytest.raises(ConfigError, match="too small: stage 3"):
        cfg.stage_sizes((224, 20))
    assert get_preset("twins-svt-s").stages[2].block_types == ["L", "G"] * 5
