"""`twins-nas search` with ``replicates:``: after the N trials the front (and what is within
2 SE of it) is trained again with further seeds; the trial count stays exact, the report counts
the trainings as replicates, a resume keeps them and takes over one left by a dead process, and
two workers share them."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
from strategies import load_study_file as load
from strategies import tiny_space_file as space_file
from typer.testing import CliRunner

from twins_nas.cli import app
from twins_nas.search.run.replication import PREFIX, replications

runner = CliRunner()
REPLICATES = ["--set", "replicates.count=3", "--set", "replicates.budget=2"]
FAST = ["--timing-budget", "0.02", "--threads", "1", "--no-png", "--device", "cpu", "--set", "proxy.epochs=1"]


def search(space: Path, out: Path, trials: int, *extra: str):
    return runner.invoke(app, ["search", "--space", str(space), "--out", str(out), "--trials", str(trials),
                               *REPLICATES, *FAST, *extra])


def check_report(out: Path, study: optuna.Study, n: int) -> None:
    trials = study.get_trials()
    assert len(trials) == n and all(t.state.name == "COMPLETE" for t in trials)  # extra work, not trials
    records = replications(study)
    assert records and all(not rec.get("claims") for rec in records.values())
    seeds = [r["seed"] for rec in records.values() for r in rec["results"].values()]
    assert len(set(seeds)) == len(seeds) and not set(seeds) & {t.user_attrs.get("proxy_seed") for t in trials}
    df = pd.read_csv(out / "trials.csv")
    assert len(df) == n
    pareto = json.loads((out / "pareto.json").read_text())
    rep = pareto["meta"]["replication"]
    assert rep["count"] == 3 and rep["trainings"] == sum(len(r["results"]) for r in records.values())
    for c in pareto["configs"]:                       # every front member has its 3 replicates
        meta = c["meta"]
        assert meta["replicates"] == 3, meta
        first = meta["trial"]
        accs = [t.values[0] for t in trials if t.number in meta["replicate_trials"]]
        accs += [r["accuracy"] for r in records.get(first, {}).get("results", {}).values()]
        assert len(accs) == 3 and abs(meta["metrics"]["accuracy"] - sum(accs) / 3) < 1e-6
        row = df[df["number"] == first].iloc[0]
        assert row["replicates"] == 3 and abs(row["accuracy_mean"] - sum(accs) / 3) < 1e-6
    ids = [c["meta"]["architecture"] for c in pareto["configs"]]
    assert len(ids) == len(set(ids))


def test_front_gets_its_replicates_and_the_trial_count_stays_exact(tmp_path):
    out = tmp_path / "out"
    r = search(space_file(tmp_path), out, 6)
    assert r.exit_code == 0, r.output
    assert "6/6 trials finished" in r.stdout and "replicates:" in r.output
    check_report(out, load(out), 6)


def test_raised_count_adds_replicates_on_resume_and_a_dead_claim_is_taken_over(tmp_path):
    space, out = space_file(tmp_path), tmp_path / "out"
    r = runner.invoke(app, ["search", "--space", str(space), "--out", str(out), "--trials", "4", *FAST])
    assert r.exit_code == 0, r.output
    study = load(out)
    assert not replications(study)
    # a replicate under way when its process died: the claim is dropped and the training is due again
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = {"host": socket.gethostname(), "pid": int(dead.stdout), "pid_start": "1"}
    study.set_user_attr(f"{PREFIX}0", {"results": {}, "claims": {"1": {"owner": owner}}})
    r = search(space, out, 5)                       # same space: the replicates: section is not hashed
    assert r.exit_code == 0, r.output
    assert "5/5 trials finished" in r.stdout
    first = replications(load(out))
    check_report(out, load(out), 5)
    r = search(space, out, 6)                       # one more trial: every replicate so far is kept
    assert r.exit_code == 0, r.output
    after = replications(load(out))
    for number, old in first.items():
        for i, res in old["results"].items():
            assert after[number]["results"][i] == res
    check_report(out, load(out), 6)


def test_two_workers_share_the_replicates(tmp_path):
    out = tmp_path / "out"
    r = search(space_file(tmp_path), out, 4, "--workers", "2")
    assert r.exit_code == 0, r.output
    study = load(out, "study.journal")
    check_report(out, study, 4)
