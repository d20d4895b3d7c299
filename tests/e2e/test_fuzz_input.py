"""A fuzzer for bad input: hypothesis mutates the committed search spaces, preset config JSON,
`--set` overrides and whole CLI argument lists, and checks what a user would see: exit code
0 or 2, never a traceback, exactly one error line (naming a real field, for data), and that
whatever is accepted round-trips (load -> dump -> load gives the same object).

Cheap commands only (validation, `show`, `search --dry-run`): about 1,300 cases in the
default run. The data fuzzers go through the same functions the CLI calls (`load_space`,
`ArchConfig.from_dict`), the argument-list fuzzer through `twins_nas.cli.main` itself."""
from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twins_nas.cli import main
from twins_nas.config import ArchConfig, ConfigError, StageConfig
from twins_nas.presets import PRESETS
from twins_nas.search.proxy.settings import ProxySettings
from twins_nas.search.space.halving import HalvingSettings
from twins_nas.search.space.measure import MeasureSettings
from twins_nas.search.space.space import Bound, SearchSpace, StageSpace, load_space

ROOT = Path(__file__).resolve().parents[2]
SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))
SPACE_DATA = {p.name: yaml.safe_load(p.read_text()) for p in SPACES}
FAST = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

FIELDS = set()
for model in (SearchSpace, StageSpace, ProxySettings, MeasureSettings, HalvingSettings, Bound, ArchConfig,
              StageConfig):
    FIELDS |= set(model.model_fields)
for data in SPACE_DATA.values():
    FIELDS |= set(data) | {k for v in data.values() if isinstance(v, dict) for k in v}

JUNK = st.one_of(st.sampled_from([True, False, None, "4", "abc", "7x7", "", -1, 0, 1, 2, 3.5, 1e9, -0.0, 10 ** 12,
                                  float("nan"), float("inf"), float("-inf"), [], {}, [1, "x"], [0], [True],
                                  {"max": "x"}, {"min": 5, "max": 1}, "LG", "Q", [7, 14], [[7, 7], 3]]),
                 st.integers(-5, 300), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6))


def paths(node, prefix=()):
    """Every key path of a YAML / JSON document (dict keys and list indices)."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, prefix + (i,))


@st.composite
def mutated(draw, doc):
    """`doc` with 1-3 mutations: a value replaced by junk, a key deleted, or an unknown key added."""
    doc = json.loads(json.dumps(doc))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from([p for p in paths(doc) if p]))
        parent = doc
        for k in where[:-1]:
            parent = parent[k]
        kind = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add"]))
        if kind == "delete" and isinstance(parent, dict):
            del parent[where[-1]]
        elif kind == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["windw", "deph", "extra", "k"]))] = draw(JUNK)
        else:
            parent[where[-1]] = draw(JUNK)
    return doc


def one_line_naming_a_field(message: str) -> None:
    assert "\n" not in message and "Traceback" not in message, message
    words = set(re.findall(r"[A-Za-z_]+", message))
    assert words & FIELDS or "mapping" in message or "YAML" in message, message


@settings(FAST, max_examples=450)
@given(st.sampled_from(sorted(SPACE_DATA)).flatmap(lambda name: st.tuples(st.just(name),
                                                                          mutated(SPACE_DATA[name]))))
def test_mutated_spaces(tmp_path_factory, case):
    name, doc = case
    path = tmp_path_factory.mktemp("fz") / name
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    try:
        space = load_space(path)
    except ConfigError as e:
        one_line_naming_a_field(str(e))
        return
    again = path.with_name("again.yaml")  # accepted: dump and load again, the same space
    again.write_text(yaml.safe_dump(space.model_dump(mode="json")))
    assert load_space(again).model_dump() == space.model_dump()


@settings(FAST, max_examples=300)
@given(st.sampled_from(sorted(SPACE_DATA)), st.data())
def test_set_overrides(name, data):
    doc = SPACE_DATA[name]
    where = data.draw(st.sampled_from([p for p in paths(doc) if p] + [("proxy", "nope"), ("stages", 9, "depth")]))
    value = data.draw(st.one_of(st.sampled_from(["true", "abc", "[1,", "1e999", "-3", "{}", "null", ".nan", "'4'",
                                                 "[7, 14]", "7x14", "0", "2", "[]"]),
                                st.text(max_size=5)))
    override = ".".join(str(k) for k in where) + "=" + value
    try:
        space = load_space(ROOT / "search_spaces" / name, [override])
    except ConfigError as e:
        one_line_naming_a_field(str(e))
        return
    assert load_space(ROOT / "search_spaces" / name, [override]).hash == space.hash


@settings(FAST, max_examples=300)
@given(st.sampled_from(sorted(PRESETS)).flatmap(lambda n: mutated(ArchConfig.preset(n).to_dict())))
def test_mutated_config_json_through_show(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("cfg") / "config.json"
    path.write_text(json.dumps(doc))
    code, out, err = run_cli(["show", str(path)])
    assert code in (0, 2) and "Traceback" not in out + err, err
    if code == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), err
        one_line_naming_a_field(lines[0])
    else:
        cfg = ArchConfig.from_json(path)
        assert ArchConfig.from_dict(json.loads(cfg.to_json())) == cfg


OPTIONS = {
    "show": ["--resolution", "-r", "--size", "--index", "--proxy", "--json", "--set", "--nope", "-x"],
    "search": ["--trials", "--seed", "--workers", "--threads", "--timeout", "--sampler", "--set", "--pick",
               "--study-name", "--device", "--timing-budget", "--heartbeat", "--nope"],
}
VALUES = st.one_of(st.sampled_from(["0", "-1", "3", "abc", "", "1e9", "nan", "twins-svt-s", "cpu", "tpe", "knee",
                                    "proxy.epochs=1", "proxy.epochs=true", "x=1", "224", "31", "best accuracy",
                                    "max nope where x", "search_spaces/svt.yaml", "missing.yaml", "512x1024", "64x",
                                    "resolution=96x160"]),
                   st.text(max_size=4))


@st.composite
def argv(draw):
    cmd = draw(st.sampled_from(sorted(OPTIONS)))
    args = [cmd]
    if cmd == "show":
        args.append(draw(st.sampled_from(["twins-svt-s", "twins-pcpvt-b", "nope", "missing.json", "--json"])))
    else:
        args += ["--dry-run", "--space", draw(st.sampled_from(["search_spaces/svt.yaml", "search_spaces/twins.yaml",
                                                               "missing.yaml", "README.md"]))]
    for _ in range(draw(st.integers(0, 3))):
        args.append(draw(st.sampled_from(OPTIONS[cmd])))
        if draw(st.booleans()):
            args.append(draw(VALUES))
    return args


def run_cli(args: list) -> tuple:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()


@settings(FAST, max_examples=250)
@given(argv())
def test_argument_lists(monkeypatch, args):
    monkeypatch.chdir(ROOT)
    code, out, err = run_cli(args)
    assert code in (0, 2), (args, code, err)
    assert "Traceback" not in out + err, (args, err)
    if code == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, err)


def test_the_fuzzer_would_catch_a_lax_field():
    """The fuzzer's own check: a bool where a number belongs is rejected, with the field named."""
    d = ArchConfig.preset("twins-svt-s").to_dict()
    d["stages"][0]["depth"] = True
    with pytest.raises(ConfigError, match=r"stages\[0\]\.depth=true"):
        ArchConfig.from_dict(d)
