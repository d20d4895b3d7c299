"""`twins-nas search` with zero-cost scores named in the space: as an objective (the column in
trials.csv, no proxy training) and as a constraint (a pre-filter: hopeless configs complete as
infeasible before any training)."""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
from strategies import TINY_SPACE
from typer.testing import CliRunner

from twins_nas.cli import app
from twins_nas.search.evaluate import objective as objective_mod

runner = CliRunner()

FAST = ["--timing-budget", "0.02", "--threads", "1", "--no-png", "--device", "cpu"]



def search(tmp_path: Path, objectives: str, trials: int = 2) -> tuple:
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE.replace("objectives: {accuracy: maximize, throughput: maximize}\n"
                                        "constraints: {params_m: {max: 5}}", objectives))
    out = tmp_path / "out"
    r = runner.invoke(app, ["search", "--space", str(space), "--trials", str(trials), "--out", str(out), *FAST])
    return r, out


def test_naswot_and_synflow_as_objectives(tmp_path, monkeypatch):
    monkeypatch.setattr(objective_mod, "train_proxy", lambda *a, **k: pytest.fail("no accuracy is named"))
    r, out = search(tmp_path, "objectives: {naswot: maximize, throughput: maximize, synflow: maximize}")
    assert r.exit_code == 0, r.output
    assert "2/2 trials finished" in r.stdout
    df = pd.read_csv(out / "trials.csv")
    assert len(df) == 2 and set(df["status"]) == {"ok"}
    for col in ("naswot", "synflow", "throughput", "seconds_zero_cost"):
        assert col in df.columns and df[col].notna().all(), col
    assert "accuracy" not in df.columns and (df["seconds_train"] == 0).all()
    assert (df["seconds_zero_cost"] > 0).all() and (df["naswot"] > 0).all()
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}")
    for t in study.trials:  # the objective values are the recorded scores
        m = t.user_attrs["metrics"]
        assert t.values == [m["naswot"], m["throughput"], m["synflow"]]
    meta = json.loads((out / "best_config.json").read_text())["meta"]
    assert {"naswot", "synflow"} <= set(meta["metrics"])


def test_a_naswot_constraint_rejects_configs_before_training(tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(objective_mod, "train_proxy", lambda *a, **k: trained.append(1))
    r, out = search(tmp_path, "objectives: {accuracy: maximize, throughput: maximize}\n"
                              "constraints: {naswot: {min: 1.0e+9}}")
    assert r.exit_code == 0, r.output
    assert trained == []
    df = pd.read_csv(out / "trials.csv")
    assert len(df) == 2 and set(df["status"]) == {"infeasible"} and not df["feasible"].any()
    assert df["naswot"].notna().all() and "accuracy" not in df.columns
    assert (df["seconds_train"] == 0).all() and df["reason"].str.contains("naswot>=1e+09 broken", regex=False).all()
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}")
    for t in study.trials:
        assert t.constraints["naswot>=1e+09"] > 0 and t.values[0] == 0.0  # penalised: accuracy not measured
