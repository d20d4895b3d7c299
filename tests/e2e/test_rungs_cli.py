"""`twins-nas search` with rungs (successive halving on the front): the report ranks trials by
their highest-rung accuracy and says which rung; resume keeps every promotion and takes over
one left by a dead process; workers; the trial count stays exact."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
from strategies import load_study_file as load
from strategies import tiny_space_file as space_file
from typer.testing import CliRunner

from twins_nas.cli import app
from twins_nas.search.run.rungs import PREFIX, promotions

runner = CliRunner()
RUNGS = ["--set", "halving.rungs=2", "--set", "halving.eta=2", "--set", "halving.batch=2"]
FAST = ["--timing-budget", "0.02", "--threads", "1", "--no-png", "--device", "cpu", "--set", "proxy.epochs=1"]


def search(space: Path, out: Path, trials: int, *extra: str):
    return runner.invoke(app, ["search", "--space", str(space), "--out", str(out), "--trials", str(trials),
                               *RUNGS, *FAST, *extra])


def check_report(out: Path, n: int) -> pd.DataFrame:
    df = pd.read_csv(out / "trials.csv")
    assert len(df) == n and (df["state"] == "COMPLETE").all()
    ok = df[df["status"] == "ok"]
    for _, row in ok.iterrows():                     # the accuracy is the highest rung's
        assert row["accuracy"] == row[f"accuracy_rung{int(row['rung'])}"]
    assert (ok["rung"] == 1).sum() >= len(ok) // 2   # the last round promotes 1/eta of them
    assert ok.loc[ok["rung"] == 1, "seconds_promotion"].notna().all()
    pareto = json.loads((out / "pareto.json").read_text())
    for c in pareto["configs"]:
        m = c["meta"]["metrics"]
        assert m["accuracy"] == m[f"accuracy_rung{m['rung']}"]
    assert pareto["meta"]["halving"] == {"rungs": 2, "eta": 2, "batch": 2}
    best = json.loads((out / "best_config.json").read_text())["meta"]
    assert "rung" in best["metrics"]
    return df


def test_rungs_promote_and_report_the_highest_rung(tmp_path):
    out = tmp_path / "out"
    r = search(space_file(tmp_path), out, 6)
    assert r.exit_code == 0, r.output
    assert "6/6 trials finished" in r.stdout and "promotions:" in r.output
    check_report(out, 6)
    assert all(not rec.get("claim") for rec in promotions(load(out)).values())


def test_resume_keeps_promotions_and_takes_over_a_dead_claim(tmp_path):
    space, out = space_file(tmp_path), tmp_path / "out"
    assert search(space, out, 4).exit_code == 0
    study = load(out)
    first = promotions(study)
    assert first
    # a promotion left half-done by a process that died: its claim is taken over on resume
    victim = next(iter(first))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    study.set_user_attr(f"{PREFIX}{victim}", {"results": {}, "claim": {
        "rung": 1, "owner": {"host": socket.gethostname(), "pid": int(dead.stdout), "pid_start": "1"}}})
    r = search(space, out, 8)
    assert r.exit_code == 0, r.output
    assert "8/8 trials finished" in r.stdout
    after = promotions(load(out))
    assert after[victim]["claim"] is None and after[victim]["results"]["1"]["accuracy"] is not None
    for number, rec in first.items():            # every finished promotion is kept as it was
        if number != victim:
            assert after[number]["results"] == rec["results"]
    check_report(out, 8)


def test_two_workers_with_rungs_finish_exactly_n(tmp_path):
    out = tmp_path / "out"
    r = search(space_file(tmp_path), out, 6, "--workers", "2")
    assert r.exit_code == 0, r.output
    study = load(out, "study.journal")
    assert sum(t.state.name == "COMPLETE" for t in study.get_trials()) == 6 and len(study.get_trials()) == 6
    assert all(not rec.get("claim") for rec in promotions(study).values())
    check_report(out, 6)
