"""`twins-nas supernet` end to end on the tiny space: it trains and writes its checkpoint and
curve, a second run continues it to the planned steps, and bad input (a corrupt checkpoint, one
of another space, a bad setting or run length) is one line with exit code 2."""
from __future__ import annotations

import csv

import pytest
from strategies import tiny_space_file
from typer.testing import CliRunner

from twins_nas.cli import app

pytestmark = pytest.mark.usefixtures("single_thread")
runner = CliRunner()
SMALL = ["--set", "proxy.train_samples=100", "--set", "proxy.val_samples=100", "--set", "proxy.batch_size=50",
         "--set", "supernet.random_subnets=0", "--set", "supernet.eval_every=2"]


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_supernet_trains_then_continues_to_the_planned_steps(tmp_path):
    space, out = tiny_space_file(tmp_path), tmp_path / "sn"
    base = ["supernet", "--space", str(space), "--out", str(out), *SMALL]
    r = runner.invoke(app, [*base, "--steps", "3", "--set", "supernet.checkpoint_every=1"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.split())  # rich wraps at the terminal's width
    assert "a fresh supernet" in text and "3/3 steps" in text and f"wrote {out / 'curve.csv'}" in text
    rows = _rows(out / "curve.csv")
    assert [int(row["step"]) for row in rows] == [1, 2, 3]
    assert [bool(row["acc_largest"]) for row in rows] == [False, True, True]  # every 2 steps and at the end
    assert (out / "supernet.pt").is_file()
    r = runner.invoke(app, base)  # planned steps done: nothing to train, the same files
    assert r.exit_code == 0 and "continuing at step 3 of 3" in " ".join(r.stdout.split()), r.output
    assert len(_rows(out / "curve.csv")) == 3


def test_bad_input_is_one_line_with_exit_code_2(tmp_path):
    space, out = tiny_space_file(tmp_path), tmp_path / "sn"
    base = ["supernet", "--space", str(space), "--out", str(out), *SMALL]
    assert runner.invoke(app, [*base, "--steps", "1"]).exit_code == 0
    ckpt = out / "supernet.pt"
    for extra, says in ((["--set", "proxy.lr=0.001"], "the supernet of another space"),
                        (["--set", "proxy.lr=0.001"], "use another --out"),
                        (["--seed", "4"], "--seed=4: the supernet"),
                        (["--steps", "2"], "--steps=2: the supernet"),
                        (["--set", "supernet.random_subnets=1"], "supernet.random_subnets=1: the supernet"),
                        (["--set", "supernet.sandwich=3"], "supernet.sandwich: unknown setting"),
                        (["--minutes", "0"], "--minutes=0.0: must be > 0")):
        r = runner.invoke(app, base + extra)
        assert r.exit_code == 2 and says in r.output and "Traceback" not in r.output, (extra, r.output)
        assert len(r.output.strip().splitlines()) == 1, r.output
    ckpt.write_bytes(b"not a checkpoint")
    r = runner.invoke(app, base)
    assert r.exit_code == 2 and f"{ckpt}: not a readable supernet checkpoint" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1, r.output


def test_search_with_a_supernet_scores_every_trial_by_its_inherited_weights(tmp_path):
    import optuna
    import pandas as pd

    from twins_nas.config import ArchConfig
    from twins_nas.search.space.space import load_space
    from twins_nas.supernet import SupernetScorer
    space, sn, out = tiny_space_file(tmp_path), tmp_path / "sn", tmp_path / "out"
    proxy = ["--set", "proxy.train_samples=100", "--set", "proxy.val_samples=100", "--set", "proxy.batch_size=50"]
    trained = runner.invoke(app, ["supernet", "--space", str(space), "--out", str(sn), *SMALL, "--steps", "2"])
    assert trained.exit_code == 0, trained.output
    search = ["search", "--space", str(space), "--out", str(out), "--device", "cpu", "--no-png", "--timing-budget",
              "0.05", "--set", "replicates.count=1", *proxy]
    r = runner.invoke(app, [*search, "--trials", "3", "--supernet", str(sn)])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out / "trials.csv")
    done = df[df["state"] == "COMPLETE"]
    assert len(done) == 3 and set(done["accuracy_source"].dropna()) == {"inherited"}
    assert (done["seconds_train"].fillna(0) == 0).all()  # nothing trained
    scorer = SupernetScorer.load(sn, load_space(space, [a for a in proxy if a != "--set"]))
    configs = {int(row["number"]): row for _, row in done.iterrows()}
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}")
    for t in study.get_trials():
        if t.number in configs and t.user_attrs.get("status") == "ok":
            cfg = ArchConfig.from_dict(t.user_attrs["config"])
            assert configs[t.number]["accuracy"] == scorer.score(cfg)  # the inherited score, recomputed
    r = runner.invoke(app, [*search, "--trials", "4"])  # the same study, now training proxies: refused
    assert r.exit_code == 2 and "scored the inherited weights of the supernet" in r.stderr, r.output
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = runner.invoke(app, [*search, "--trials", "4", "--supernet", str(sn), "--set", "proxy.lr=0.001",
                            "--out", str(tmp_path / "other")])
    assert r.exit_code == 2 and "the supernet of another space" in r.stderr, r.output
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
