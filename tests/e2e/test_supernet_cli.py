"""`twins-nas supernet` end to end on the tiny space: it trains and writes its checkpoint and
curve, a second run continues it to the planned steps, and bad input (a corrupt checkpoint, one
of another space, a bad setting or run length) is one line with exit code 2."""
from __future__ import annotations

import csv

import pandas as pd
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


def _dominated(row, rows) -> bool:
    """Brute force: another row is at least as accurate and as fast, and better in one."""
    return any(o["accuracy"] >= row["accuracy"] and o["throughput"] >= row["throughput"]
               and (o["accuracy"] > row["accuracy"] or o["throughput"] > row["throughput"]) for o in rows)


def check_standalone(study, space, out, done, top: int, seeds: int) -> None:
    """The top of the inherited front was trained stand-alone with `seeds` seeds each (each
    accuracy is what the proxy trained with that seed reaches), and the report ranks by it."""
    import json
    import statistics

    from twins_nas.config import ArchConfig
    from twins_nas.search.proxy.data import load_proxy_data
    from twins_nas.search.proxy.train import train_proxy
    records = {int(k.split(":")[1]): v for k, v in study.user_attrs.items() if k.startswith("standalone:")}
    ok = done[done["status"] == "ok"].drop_duplicates("architecture")
    rows = [dict(r) for _, r in ok.iterrows()]
    front = {int(r["number"]) for r in rows if not _dominated(r, rows)}
    assert len(records) == min(top, len(rows))
    assert set(records) <= front or front <= set(records)  # the front first
    assert all(len(rec["results"]) == seeds and not rec.get("claims") for rec in records.values())
    number, rec = next(iter(sorted(records.items())))
    res = rec["results"]["1"]
    cfg = ArchConfig.from_dict(study.trials[number].user_attrs["config"])
    again = train_proxy(cfg, space.proxy, load_proxy_data(space.proxy, seed=0), seed=res["seed"],
                        resolution=space.input_size, choices=space.geometry_choices(), every_epoch=False)
    assert again.accuracy == res["accuracy"]  # a proxy training of its own, with that seed
    pareto = json.loads((out / "pareto.json").read_text())
    assert pareto["meta"]["accuracy_source"]["ranked_by"] == "stand-alone"
    assert pareto["meta"]["accuracy_source"]["trainings"] == seeds * len(records)
    inherited = {int(r["number"]): r["accuracy"] for r in rows}
    for entry in pareto["configs"]:
        m, n = entry["meta"], entry["meta"]["trial"]
        assert m["accuracy_source"] == "stand-alone" and m["replicates"] == seeds and n in records
        mean = statistics.fmean(r["accuracy"] for r in records[n]["results"].values())
        assert abs(m["metrics"]["accuracy"] - mean) < 1e-6
        assert abs(m["metrics"]["accuracy_inherited"] - inherited[n]) < 1e-6
    df = pd.read_csv(out / "trials.csv")
    assert set(df.loc[df["accuracy_standalone"].notna(), "architecture"]) == {f"a{n}" for n in records}


def test_search_with_a_supernet_scores_every_trial_by_its_inherited_weights(tmp_path):
    import optuna

    from twins_nas.config import ArchConfig
    from twins_nas.search.space.space import load_space
    from twins_nas.supernet import SupernetScorer
    space, sn, out = tiny_space_file(tmp_path), tmp_path / "sn", tmp_path / "out"
    proxy = ["--set", "proxy.train_samples=100", "--set", "proxy.val_samples=100", "--set", "proxy.batch_size=50"]
    trained = runner.invoke(app, ["supernet", "--space", str(space), "--out", str(sn), *SMALL, "--steps", "2"])
    assert trained.exit_code == 0, trained.output
    search = ["search", "--space", str(space), "--out", str(out), "--device", "cpu", "--no-png", "--timing-budget",
              "0.05", "--set", "replicates.count=1", *proxy]
    r = runner.invoke(app, [*search, "--trials", "3", "--supernet", str(sn), "--retrain", "2"])
    assert r.exit_code == 0, r.output
    assert "stand-alone (inherited" in " ".join(r.stdout.split())  # the picked line says which accuracy
    df = pd.read_csv(out / "trials.csv")
    done = df[df["state"] == "COMPLETE"]
    assert len(df) == 3 and len(done) == 3 and set(done["accuracy_source"].dropna()) == {"inherited"}
    assert (done["seconds_train"].fillna(0) == 0).all()  # no trial trained
    sp = load_space(space, [a for a in proxy if a != "--set"])
    scorer = SupernetScorer.load(sn, sp)
    configs = {int(row["number"]): row for _, row in done.iterrows()}
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}")
    for t in study.get_trials():
        if t.number in configs and t.user_attrs.get("status") == "ok":
            cfg = ArchConfig.from_dict(t.user_attrs["config"])
            assert configs[t.number]["accuracy"] == scorer.score(cfg)  # the inherited score, recomputed
    check_standalone(study, sp, out, done, top=2, seeds=2)
    before = {k: v for k, v in study.user_attrs.items() if k.startswith("standalone:")}
    r = runner.invoke(app, [*search, "--trials", "3", "--supernet", str(sn), "--retrain", "2"])  # done: kept
    assert r.exit_code == 0, r.output
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}")
    assert {k: v for k, v in study.user_attrs.items() if k.startswith("standalone:")} == before
    r = runner.invoke(app, [*search, "--trials", "4", "--supernet", str(sn), "--supernet-samples", "50"])
    assert r.exit_code == 2 and "100 validation images" in r.stderr and "50 validation images" in r.stderr, r.output
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr  # scored on other images: not comparable
    r = runner.invoke(app, [*search, "--trials", "1", "--supernet", str(sn), "--supernet-samples", "101",
                            "--out", str(tmp_path / "more")])  # more than the 100 validation images
    assert r.exit_code == 2 and r.stderr.startswith("error: --supernet-samples=101: must be between 1"), r.output
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = runner.invoke(app, [*search, "--trials", "4"])  # the same study, now training proxies: refused
    assert r.exit_code == 2 and "scored the inherited weights of the supernet" in r.stderr, r.output
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = runner.invoke(app, [*search, "--trials", "4", "--supernet", str(sn), "--set", "proxy.lr=0.001",
                            "--out", str(tmp_path / "other")])
    assert r.exit_code == 2 and "the supernet of another space" in r.stderr, r.output
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_fidelity_with_a_supernet_scores_it_beside_the_others(tmp_path):
    import itertools
    import json

    from twins_nas.config import ArchConfig
    from twins_nas.search.space.space import load_space
    from twins_nas.supernet import SupernetScorer

    def tau_b(x, y):  # brute force over all pairs
        c = d = tx = ty = 0
        for i, j in itertools.combinations(range(len(x)), 2):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            tx, ty = tx + (dx == 0 and dy != 0), ty + (dy == 0 and dx != 0)
            if dx and dy:
                c, d = c + ((dx > 0) == (dy > 0)), d + ((dx > 0) != (dy > 0))
        return (c - d) / (((c + d + tx) * (c + d + ty)) ** 0.5)

    space, sn, out = tiny_space_file(tmp_path), tmp_path / "sn", tmp_path / "fid"
    proxy = ["--set", "proxy.train_samples=100", "--set", "proxy.val_samples=100", "--set", "proxy.batch_size=50"]
    trained = runner.invoke(app, ["supernet", "--space", str(space), "--out", str(sn), *SMALL, "--steps", "2"])
    assert trained.exit_code == 0, trained.output
    fid = ["fidelity", "--space", str(space), *proxy, "--reference", "proxy.epochs=2", "--archs", "5", "--pairs", "0",
           "--seeds", "2", "--seeded", "5", "--threads", "1", "--no-png", "--out", str(out)]
    r = runner.invoke(app, [*fid, "--supernet", str(sn)])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "fidelity.json").read_text())
    entry = summary["scorers"]["supernet"]
    assert entry["seed_tau"] == 1.0 and entry["seed_sd"] == 0.0  # deterministic: one score per architecture
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sum(1 for x in results if x["scorer"] == "supernet") == 5
    scorer = SupernetScorer.load(sn, load_space(space, [a for a in proxy if a != "--set"]))
    archs = [a for a in summary["archs"] if a["kind"] == "random"]
    for a in archs:  # each score is the subnet's inherited accuracy, recomputed
        assert a["scores"]["supernet"] == scorer.score(ArchConfig.from_dict(a["config"]))
    got = [a["scores"]["supernet"] for a in archs]
    ref = [a["scores"]["reference"] for a in archs]
    acc = [a["scores"]["accuracy"] for a in archs]  # the mean of its 2 seeds
    for value, truth in ((entry["kendall_tau"], ref), (entry["kendall_tau_vs_proxy"], acc)):
        want = tau_b(got, truth) if len(set(got)) > 1 and len(set(truth)) > 1 else None
        assert (value is None and want is None) or abs(value - want) < 1e-9, (value, want)
    r = runner.invoke(app, [*fid, "--supernet", str(sn), "--set", "proxy.lr=0.001", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "the supernet of another space" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
