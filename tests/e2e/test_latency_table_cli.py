"""`twins-nas latency-table`, `profile --predictor` and a search with `measure.predictor`:
what they write, and one-line errors (exit 2) for a table that cannot answer."""
from __future__ import annotations

import json
import random
import shutil

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from tests.strategies import TINY_SPACE, load_study_file
from twins_nas.cli import app
from twins_nas.search.latency import space_blocks
from twins_nas.search.space.space import load_space

runner = CliRunner()
SMALL = (TINY_SPACE.replace("depth: [1, 2], embed_dim: [16, 32]", "depth: [1, 2], embed_dim: 16")
         .replace("mlp_ratio: [2, 4]", "mlp_ratio: 2")
         .replace("objectives: {accuracy: maximize, throughput: maximize}",
                  "objectives: {params_m: minimize, throughput: maximize}")
         .replace("constraints: {params_m: {max: 5}}\n", ""))
BUILD = ["--device", "cpu", "--threads", "1", "--calibration", "2", "--budget", "0.03", "--no-presets"]


def one_line_error(r) -> str:
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("latency")
    (tmp / "small.yaml").write_text(SMALL)
    n = torch.get_num_threads()
    r = runner.invoke(app, ["latency-table", "--space", str(tmp / "small.yaml"), "--out", str(tmp / "t.json"), *BUILD])
    torch.set_num_threads(n)
    assert r.exit_code == 0, r.output
    return tmp


def test_the_table_holds_every_block_of_the_space(table):
    data = json.loads((table / "t.json").read_text())
    assert set(data["blocks"]) == {k.id for k in space_blocks(load_space(table / "small.yaml"))}
    assert data["runtime"] == "eager" and data["device"] == "cpu" and len(data["calibration"]) == 2


def _config(table) -> str:
    cfg = load_space(table / "small.yaml").random_config(random.Random(2))
    path = table / "cfg.json"
    cfg.to_json(path)
    return str(path)


def test_profile_with_a_predictor_writes_predicted_latency(table, tmp_path):
    r = runner.invoke(app, ["profile", "--config", _config(table), "--resolutions", "64", "--no-png",
                            "--predictor", str(table / "t.json"), "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    row = pd.read_csv(tmp_path / "profile.csv").iloc[0]
    assert row["latency_source"] == "predicted" and row["latency_ms"] > 0
    assert row["throughput"] == pytest.approx(1e3 / row["latency_ms"])
    r = runner.invoke(app, ["profile", "--config", _config(table), "--resolutions", "64", "--no-latency",
                            "--out", str(tmp_path / "plain")])
    assert r.exit_code == 0, r.output
    assert pd.read_csv(tmp_path / "plain" / "profile.csv").iloc[0]["latency_source"] == "measured"


def _edited(table, tmp_path, edit) -> str:
    data = json.loads((table / "t.json").read_text())
    edit(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("args, msg", [
    (["--batch", "2"], "measured at batch 1, not 2"),
    (["--resolutions", "96"], "measured at 64x64 px, not 96x96"),
    (["--head", "semantic-fpn"], "with the classifier, not head semantic-fpn"),
])
def test_profile_refuses_what_the_table_was_not_measured_at(table, tmp_path, args, msg):
    r = runner.invoke(app, ["profile", "--config", _config(table), "--resolutions", "64", "--no-png",
                            "--predictor", str(table / "t.json"), "--out", str(tmp_path), *args])
    assert msg in one_line_error(r)
    assert not (tmp_path / "profile.csv").exists()


def test_profile_refuses_a_truncated_table(table, tmp_path):
    cut = tmp_path / "cut.json"
    cut.write_text((table / "t.json").read_text()[:100])
    r = runner.invoke(app, ["profile", "--config", _config(table), "--resolutions", "64",
                            "--predictor", str(cut), "--out", str(tmp_path)])
    assert "not valid JSON" in one_line_error(r)


def _search(space_dir, out, *extra):
    n = torch.get_num_threads()
    r = runner.invoke(app, ["search", "--space", str(space_dir / "s.yaml"), "--trials", "2", "--out", str(out),
                            "--device", "cpu", "--timing-budget", "0.05", "--no-png", *extra])
    torch.set_num_threads(n)
    return r


def test_search_predicts_its_timed_metrics(table, tmp_path):
    shutil.copy(table / "t.json", tmp_path / "t.json")
    (tmp_path / "s.yaml").write_text(SMALL.replace("measure: {batch_size: 1}",
                                                   "measure: {batch_size: 1, predictor: t.json}"))
    from twins_nas.search.run.settings import SearchSettings
    from twins_nas.search.study import run_search
    space = load_space(tmp_path / "s.yaml")
    settings = SearchSettings.for_space(space, 2, out_dir=tmp_path / "out", device="cpu", png=False, threads=1,
                                        presets=False)  # the published models would be timed
    n = torch.get_num_threads()
    run_search(space, settings)
    torch.set_num_threads(n)
    trials = load_study_file(tmp_path / "out", name="tiny").get_trials()
    assert len(trials) == 2
    for t in trials:
        assert t.user_attrs["speed"] == {"runtime": "eager", "source": "predicted"}
        assert t.user_attrs["seconds"]["build"] == 0.0  # no model built for the timing
    df = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert set(df["latency_source"]) == {"predicted"} and set(df["runtime"]) == {"eager"}


def test_search_with_a_table_lacking_a_block_stops_before_any_trial(table, tmp_path):
    victim = next(k for k in json.loads((table / "t.json").read_text())["blocks"] if k.startswith("L "))
    _edited(table, tmp_path, lambda d: d["blocks"].pop(victim))
    (tmp_path / "s.yaml").write_text(SMALL.replace("measure: {batch_size: 1}",
                                                   "measure: {batch_size: 1, predictor: edited.json}"))
    line = one_line_error(_search(tmp_path, tmp_path / "out"))
    assert "edited.json has no L block dim=" in line and "twins-nas latency-table --space" in line
    assert not (tmp_path / "out" / "study.db").exists()


@pytest.mark.parametrize("args, msg", [
    (["--runtime", "tensorrt"], "unknown timing backend"),
    (["--budget", "0"], "--budget 0"),
    (["--set", "measure.batch_size=0"], "measure.batch_size"),
])
def test_latency_table_bad_input_is_one_line(table, tmp_path, args, msg):
    r = runner.invoke(app, ["latency-table", "--space", str(table / "small.yaml"), "--out", str(tmp_path / "x.json"),
                            *BUILD, *args])
    assert msg in one_line_error(r)
    assert not (tmp_path / "x.json").exists()


def test_a_study_does_not_mix_measured_and_predicted_speed(table, tmp_path):
    shutil.copy(table / "t.json", tmp_path / "t.json")
    (tmp_path / "s.yaml").write_text(SMALL.replace("measure: {batch_size: 1}",
                                                   "measure: {batch_size: 1, predictor: t.json}"))
    assert _search(tmp_path, tmp_path / "out").exit_code == 0
    line = one_line_error(_search(tmp_path, tmp_path / "out", "--trials", "3", "--set", "measure.predictor=null"))
    assert "predicted its speed from a latency table" in line and "would measure it with runtime 'eager'" in line
    # measured with eager, then resumed with another runtime: refused the same way
    (tmp_path / "s.yaml").write_text(SMALL)
    assert _search(tmp_path, tmp_path / "eager").exit_code == 0
    resumed = _search(tmp_path, tmp_path / "eager", "--trials", "3", "--set", "measure.runtime=onnxruntime")
    line = one_line_error(resumed)
    assert "measured its speed with runtime 'eager'" in line and "would measure it with runtime 'onnxruntime'" in line


def test_with_the_published_models_blocks_a_predicting_search_predicts_theirs_too(tmp_path):
    from twins_nas.presets import presets_for
    from twins_nas.search.latency import model_blocks
    from twins_nas.search.run.settings import SearchSettings
    from twins_nas.search.study import run_search
    (tmp_path / "s.yaml").write_text(SMALL.replace("measure: {batch_size: 1}",
                                                   "measure: {batch_size: 1, predictor: t.json}"))
    space = load_space(tmp_path / "s.yaml")
    n = torch.get_num_threads()
    build = [a for a in BUILD if a != "--no-presets"]
    r = runner.invoke(app, ["latency-table", "--space", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "t.json"),
                            "--set", "measure.predictor=null", *build])
    torch.set_num_threads(n)
    assert r.exit_code == 0, r.output
    blocks = set(json.loads((tmp_path / "t.json").read_text())["blocks"])
    presets = presets_for(space.num_classes, space.in_chans)
    for cfg in presets.values():  # every block each published model runs at the space's size and batch
        assert {k.id for k in model_blocks(cfg, space.measure_size, 1)} <= blocks
    settings = SearchSettings.for_space(space, 1, out_dir=tmp_path / "out", device="cpu", png=False, threads=1)
    run_search(space, settings)
    torch.set_num_threads(n)
    rows = load_study_file(tmp_path / "out", name="tiny").user_attrs["presets"]
    assert set(rows) == set(presets)
    assert all(row["latency_source"] == "predicted" and row["throughput"] > 0 for row in rows.values()), rows


def test_a_search_measures_its_speed_in_onnx_runtime(tmp_path):
    (tmp_path / "s.yaml").write_text(SMALL)
    r = _search(tmp_path, tmp_path / "out", "--set", "measure.runtime=onnxruntime")
    assert r.exit_code == 0, r.output
    df = pd.read_csv(tmp_path / "out" / "trials.csv")
    timed = df[df["throughput"].notna()]
    assert len(timed) == 2 and set(timed["runtime"]) == {"onnxruntime"} and set(timed["latency_source"]) == {"measured"}
    assert (timed["throughput"] > 0).all()
