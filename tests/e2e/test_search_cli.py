"""`twins-nas search` / `twins-nas export` end to end on a tiny space with tiny budgets:
every output, resume, two workers with an exact trial count, dead-trial cleanup, failing
trials, constraint-rejected trials, the exact-N fallback, and one-line input errors."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState
from strategies import TINY_SPACE
from typer.testing import CliRunner

from twins_nas import build_model
from twins_nas.browser import find_chromium
from twins_nas.cli import app
from twins_nas.config import ArchConfig
from twins_nas.search.evaluate import objective as objective_mod
from twins_nas.search.evaluate.objective import Evaluator
from twins_nas.search.evaluate.status import TrialStatus
from twins_nas.search.proxy.data import load_proxy_data
from twins_nas.search.proxy.train import ProxyDiverged
from twins_nas.search.run import trials as trials_mod
from twins_nas.search.run.provenance import resolve_search_device
from twins_nas.search.run.samplers import make_sampler
from twins_nas.search.run.storage import existing_storage_file, resolve_storage
from twins_nas.search.run.trials import count_trials, fail_dead_trials, owner_attrs, run_worker
from twins_nas.search.space.measure import MeasureBudget
from twins_nas.search.space.space import load_space, space_from_dict

runner = CliRunner()

# time each model for ~20 ms (a few passes), one thread: robust on a shared 2-core machine
FAST = ["--timing-budget", "0.02", "--threads", "1"]



def write_space(folder: Path, text: str = TINY_SPACE) -> Path:
    p = folder / "tiny.yaml"
    p.write_text(text)
    return p


def load(out: Path, name: str = "tiny", file: str = "study.db") -> optuna.Study:
    path = out / file
    storage = (optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
               if file.endswith(".journal") else f"sqlite:///{path}")
    return optuna.load_study(study_name=name, storage=storage)


def states(study: optuna.Study) -> dict:
    out: dict = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


# ---- end to end ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search")
    space = write_space(tmp)
    out = tmp / "out"
    n = torch.get_num_threads()
    r = runner.invoke(app, ["search", "--space", str(space), "--trials", "4", "--out", str(out), "--seed", "3",
                            "--set", "proxy.epochs=1", "--device", "cpu", *FAST])
    torch.set_num_threads(n)
    return dict(result=r, out=out, space=space)


def test_search_writes_every_output(e2e):
    r, out = e2e["result"], e2e["out"]
    assert r.exit_code == 0, r.output
    assert "4/4 trials finished" in r.stdout
    expected = ["best_config.json", "pareto.json", "trials.csv", "pareto.html", "study.db"]
    if find_chromium():
        expected.append("pareto.png")
    for f in expected:
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    assert (out / "pareto.html").stat().st_size < 10e6
    study = load(out)
    assert states(study) == {"COMPLETE": 4}
    for t in study.trials:
        assert len(t.user_attrs["epoch_accuracies"]) == 1  # --set proxy.epochs=1 took effect
        assert t.user_attrs["status"] == "ok" and t.user_attrs["worker"]["pid"] > 0
        assert set(t.user_attrs["seconds"]) == {"build", "profile", "train", "eval", "total"}
        assert t.constraints == {"params_m<=5": pytest.approx((t.user_attrs["metrics"]["params_m"] - 5) / 5)}
    presets = study.user_attrs["presets"]
    assert len(presets) == 6 and all(p["throughput"] > 0 for p in presets.values())


def test_best_config_json_meta_and_model(e2e):
    out = e2e["out"]
    cfg = ArchConfig.from_json(out / "best_config.json")
    meta = json.loads((out / "best_config.json").read_text())["meta"]
    space = load_space(e2e["space"], ["proxy.epochs=1"])
    assert meta["schema_version"] == 1 and meta["kind"] == "best_config" and meta["pick"] == "knee"
    assert meta["space"] == {"name": "tiny", "file": str(e2e["space"]), "sha256": space.hash}
    assert meta["seed"] == 3 and meta["device"]["device"].startswith("cpu")
    assert meta["device"]["resolution"] == 64 and meta["device"]["batch_size"] == 1
    assert {"torch", "optuna", "twins_nas", "python"} <= set(meta["versions"])
    m = meta["metrics"]
    assert 0 <= m["accuracy"] <= 1 and m["throughput"] > 0 and m["params_m"] == pytest.approx(m["params"] / 1e6)
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) == m["params"]
    assert cfg.num_classes == 10 and space.contains(cfg)
    # the trial's parameters rebuild the same architecture through the space
    assert space.config_from_params(meta["params"]).model_dump(exclude={"name"}) == cfg.model_dump(exclude={"name"})


def test_pareto_json_loads_every_entry(e2e):
    out = e2e["out"]
    data = json.loads((out / "pareto.json").read_text())
    assert data["schema_version"] == 1 and data["meta"]["kind"] == "pareto"
    assert data["meta"]["space"]["sha256"] and data["meta"]["seed"] == 3 and data["meta"]["versions"]
    assert len(data["configs"]) == data["meta"]["count"] >= 1
    best = json.loads((out / "best_config.json").read_text())["meta"]["trial"]
    trials = [c["meta"]["trial"] for c in data["configs"]]
    assert best in trials
    accs = [c["meta"]["metrics"]["accuracy"] for c in data["configs"]]
    assert accs == sorted(accs, reverse=True)  # best first in the first objective
    for i, entry in enumerate(data["configs"]):
        cfg = ArchConfig.from_json(out / "pareto.json", index=i)
        assert sum(p.numel() for p in build_model(cfg).parameters()) == entry["meta"]["metrics"]["params"]


def test_trials_csv_has_every_trial_and_the_time_breakdown(e2e):
    df = pd.read_csv(e2e["out"] / "trials.csv")
    assert len(df) == 4 and set(df["state"]) == {"COMPLETE"}
    for col in ("accuracy", "throughput", "latency_ms", "params_m", "gmacs", "seconds_build", "seconds_profile",
                "seconds_train", "seconds_eval", "seconds_total", "epoch_accuracies", "on_front", "picked",
                "param.s0.depth", "worker", "depths"):
        assert col in df.columns, col
    assert (df["seconds_train"] > 0).all() and (df["seconds_profile"] > 0).all()
    assert set(df["runtime"]) == {"eager"} and set(df["latency_source"]) == {"measured"}  # timed, not predicted
    assert df["picked"].sum() == 1 and df.loc[df["picked"], "on_front"].all()
    assert (df["seconds_total"] >= df[["seconds_build", "seconds_profile", "seconds_train",
                                       "seconds_eval"]].sum(axis=1) * 0.99).all()


def test_show_and_profile_accept_the_exported_json(e2e, tmp_path):
    best = str(e2e["out"] / "best_config.json")
    r = runner.invoke(app, ["show", best, "--resolution", "64"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["show", str(e2e["out"] / "pareto.json"), "--index", "0", "--resolution", "64"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["profile", "--config", best, "--resolutions", "64", "--no-latency", "--no-png",
                            "--out", str(tmp_path / "prof")])
    assert r.exit_code == 0, r.output


def test_export_rewrites_with_another_pick(e2e, tmp_path):
    out = e2e["out"]
    r = runner.invoke(app, ["export", "--study", "tiny", "--out", str(tmp_path), "--storage", str(out / "study.db"),
                            "--pick", "max accuracy", "--no-png"])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out / "trials.csv")
    meta = json.loads((tmp_path / "best_config.json").read_text())["meta"]
    assert meta["metrics"]["accuracy"] == pytest.approx(df["accuracy"].max())
    assert meta["pick"] == "max accuracy"
    for f in ("pareto.json", "trials.csv", "pareto.html"):
        assert (tmp_path / f).is_file()
    # the default storage is OUT/study.db
    r = runner.invoke(app, ["export", "--study", "tiny", "--out", str(out), "--no-png"])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("args,needle", [
    (["--pick", "max accuracy where throughput>=1e12"], "no finished feasible trial has throughput>=1e+12"),
    (["--pick", "max speed"], "unknown metric 'speed'"),
    (["--study", "nope"], "'nope': no such study"),
])
def test_export_errors(e2e, tmp_path, args, needle):
    base = {"--study": "tiny", "--out": str(tmp_path), "--storage": str(e2e["out"] / "study.db")}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    r = runner.invoke(app, ["export", *[x for kv in base.items() for x in kv], "--no-png"])
    assert needle in one_line_error(r)


def test_export_without_storage_is_one_line(tmp_path):
    line = one_line_error(runner.invoke(app, ["export", "--study", "tiny", "--out", str(tmp_path)]))
    assert "--storage" in line
    line = one_line_error(runner.invoke(app, ["export", "--study", "tiny", "--out", str(tmp_path),
                                              "--storage", str(tmp_path / "missing.db")]))
    assert "no such file" in line and not (tmp_path / "missing.db").exists()


# ---- resume, dead trials, workers ------------------------------------------------------------
def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_resume_continues_to_n_and_fails_dead_trials(tmp_path):
    space, out = write_space(tmp_path), tmp_path / "out"
    args = ["search", "--space", str(space), "--out", str(out), "--no-png", *FAST]
    r = runner.invoke(app, args + ["--trials", "3"])
    assert r.exit_code == 0, r.output
    study = load(out)
    assert states(study) == {"COMPLETE": 3}
    # a worker killed with -9 mid-trial leaves a RUNNING trial owned by a dead process
    t = study.ask()
    t.set_user_attr("worker", dict(owner_attrs(), pid=dead_pid(), pid_start=None))
    r = runner.invoke(app, args + ["--trials", "5"])
    assert r.exit_code == 0, r.output
    assert "left running by a dead process" in r.stderr
    study = load(out)
    assert states(study) == {"COMPLETE": 5, "FAIL": 1}
    dead = study.trials[3]
    assert dead.state == TrialState.FAIL and "died" in dead.user_attrs["fail_reason"]
    assert len(pd.read_csv(out / "trials.csv")) == 6
    # already done: a third run changes nothing (--data-root is not part of the space's identity)
    r = runner.invoke(app, args + ["--trials", "5", "--data-root", "/usr/share/datasets/fashion-mnist"])
    assert r.exit_code == 0 and states(load(out)) == {"COMPLETE": 5, "FAIL": 1}


def test_resume_refuses_another_space(tmp_path):
    space, out = write_space(tmp_path), tmp_path / "out"
    r = runner.invoke(app, ["search", "--space", str(space), "--out", str(out), "--trials", "1", "--no-png", *FAST])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["search", "--space", str(space), "--out", str(out), "--trials", "2", "--no-png",
                            "--set", "proxy.lr=0.01", *FAST])
    assert "created from another space" in one_line_error(r)


def test_two_workers_finish_exactly_n(tmp_path):
    space, out = write_space(tmp_path), tmp_path / "out"
    r = runner.invoke(app, ["search", "--space", str(space), "--out", str(out), "--trials", "5", "--workers", "2",
                            "--no-png", "--set", "proxy.epochs=1", *FAST])
    assert r.exit_code == 0, r.output
    assert (out / "study.journal").is_file() and not (out / "study.db").exists()
    study = load(out, file="study.journal")
    assert states(study) == {"COMPLETE": 5}
    assert len(pd.read_csv(out / "trials.csv")) == 5


# ---- failures ---------------------------------------------------------------------------------
def test_a_failing_trial_does_not_stop_the_study(tmp_path, monkeypatch):
    real = objective_mod.train_proxy
    calls = []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise ProxyDiverged("training loss is nan at epoch 1, step 1/2")
        return real(*a, **k)

    monkeypatch.setattr(objective_mod, "train_proxy", flaky)
    space, out = write_space(tmp_path), tmp_path / "out"
    r = runner.invoke(app, ["search", "--space", str(space), "--out", str(out), "--trials", "3", "--no-png",
                            "--set", "proxy.epochs=1", *FAST])
    assert r.exit_code == 0, r.output
    study = load(out)
    assert states(study) == {"COMPLETE": 3, "FAIL": 1}
    failed = study.trials[1]
    assert failed.state == TrialState.FAIL and failed.user_attrs["status"] == "failed"
    assert failed.user_attrs["fail_reason"].startswith("ProxyDiverged: training loss is nan")
    assert "throughput" in failed.user_attrs["metrics"]  # what it measured before failing is kept
    df = pd.read_csv(out / "trials.csv")
    assert df.loc[df["number"] == 1, "reason"].item().startswith("ProxyDiverged")


def test_a_study_that_always_fails_stops_with_exit_1(tmp_path, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(objective_mod, "train_proxy", broken)
    space, out = write_space(tmp_path), tmp_path / "out"
    r = runner.invoke(app, ["search", "--space", str(space), "--out", str(out), "--trials", "2", "--no-png",
                            *FAST])
    assert r.exit_code == 1
    assert "10 trials in a row failed" in r.stderr and "CUDA out of memory" in r.stderr
    assert states(load(out)) == {"FAIL": 10}
    df = pd.read_csv(out / "trials.csv")  # the report still says what went wrong
    assert len(df) == 10 and df["reason"].str.contains("CUDA out of memory").all()
    assert not (out / "best_config.json").exists()


def _memory_study(space, name="mem") -> optuna.Study:
    return optuna.create_study(study_name=name, directions=list(space.objectives.values()),
                               sampler=optuna.samplers.RandomSampler(seed=0))


def test_constraint_rejected_configs_are_never_trained(tmp_path, monkeypatch):
    space = load_space(write_space(tmp_path), ["constraints.params_m.max=0.03", "proxy.epochs=1"])
    study = _memory_study(space)
    big = {"s0.depth": 2, "s0.embed_dim": 32, "s0.mlp_ratio": 4, "s0.pattern": "G", "s0.sr_ratio": 1,
           "s1.depth": 2, "s1.embed_dim": 48, "s1.pattern": "G"}
    small = dict(big, **{"s0.depth": 1, "s0.embed_dim": 16, "s0.mlp_ratio": 2, "s1.depth": 1, "s1.embed_dim": 32})
    study.enqueue_trial(big)
    study.enqueue_trial(small)
    trained = []
    real = objective_mod.train_proxy
    monkeypatch.setattr(objective_mod, "train_proxy", lambda *a, **k: trained.append(1) or real(*a, **k))
    ev = Evaluator(space=space, data=load_proxy_data(space.proxy), budget=MeasureBudget(budget_s=0.02))
    res = run_worker(study, ev, 2, tmp_path / "lock")
    assert res.status == "done" and len(trained) == 1
    bad, good = study.trials
    assert bad.state == good.state == TrialState.COMPLETE
    assert bad.user_attrs["status"] == TrialStatus.INFEASIBLE and bad.constraints["params_m<=0.03"] > 0
    assert "accuracy" not in bad.user_attrs["metrics"] and "throughput" not in bad.user_attrs["metrics"]
    assert bad.values == [0.0, 0.0]  # penalised: nothing measured for either objective
    assert good.user_attrs["status"] == "ok" and good.constraints["params_m<=0.03"] <= 0
    assert study.best_trials == [good]  # optuna itself sees the constraint
    assert count_trials(study)["infeasible"] == 1


def test_workers_wait_for_running_trials_and_lowest_numbers_win(tmp_path, monkeypatch):
    space = load_space(write_space(tmp_path), ["proxy.epochs=1"])
    study = _memory_study(space, "exact")
    ev = Evaluator(space=space, data=load_proxy_data(space.proxy), budget=MeasureBudget(budget_s=0.02))
    lock = tmp_path / "lock"
    assert run_worker(study, ev, 1, lock).status == "done"
    # a trial running on another machine (its liveness cannot be checked): N=2 is reached
    # when it finishes, so a worker waits instead of starting a third trial
    foreign = study.ask()
    foreign.set_user_attr("worker", {"host": "elsewhere", "pid": 1, "pid_start": None})
    assert run_worker(study, ev, 2, lock, deadline=time.time() + 1.5).status == "timeout"
    assert len(study.trials) == 2 and fail_dead_trials(study) == []
    # a process that does not share the lock and counted before the foreign trial started:
    # its own trial has a larger number, so it gives up (surplus) instead of overshooting N
    real_count = trials_mod.count_trials
    lies = iter([True])
    monkeypatch.setattr(trials_mod, "count_trials",
                        lambda s: dict(real_count(s), running=0) if next(lies, False) else real_count(s))
    assert run_worker(study, ev, 2, lock, deadline=time.time() + 1.5).status == "timeout"
    surplus = study.trials[2]
    assert surplus.state == TrialState.PRUNED and surplus.user_attrs["status"] == "surplus"
    # when the foreign trial fails, its place is taken: exactly 2 COMPLETE
    study.tell(foreign, state=TrialState.FAIL)
    assert run_worker(study, ev, 2, lock).status == "done"
    assert states(study) == {"COMPLETE": 2, "FAIL": 1, "PRUNED": 1}


def test_early_stop_prunes_a_trial_far_below_its_peers(tmp_path, monkeypatch):
    space = load_space(write_space(tmp_path))  # 2 proxy epochs: a check after epoch 1
    study = _memory_study(space, "early")
    dist = optuna.distributions.CategoricalDistribution([1, 2])
    for i in range(8):
        study.add_trial(optuna.trial.create_trial(
            values=[0.8, 100.0], params={"s0.depth": 1}, distributions={"s0.depth": dist},
            user_attrs={"status": "ok", "epoch_accuracies": [0.70 + 0.01 * i, 0.8], "metrics": {}}))
    ev = Evaluator(space=space, data=load_proxy_data(space.proxy), budget=MeasureBudget(budget_s=0.02))
    trial = study.ask()
    on_epoch = ev._on_epoch(trial, [])
    on_epoch(1, 0.68)  # below the 10th percentile, but not by 5 points: goes on
    with pytest.raises(optuna.TrialPruned, match="far below its 8 peers"):
        on_epoch(1, 0.60)
    on_epoch(2, 0.10)  # the last epoch is never cut
    study.tell(trial, state=TrialState.FAIL)
    # through a worker: the pruned trial is recorded and does not count toward N
    monkeypatch.setattr(objective_mod, "train_proxy",
                        lambda cfg, proxy, data, seed, device, on_epoch, **kw: on_epoch(1, 0.1))
    assert run_worker(study, ev, 9, tmp_path / "lock", deadline=time.time() + 2).status == "timeout"
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.user_attrs["status"] == "pruned" and t.user_attrs["epoch_accuracies"] == [0.1]
                          for t in pruned)
    assert count_trials(study)["complete"] == 8


@pytest.mark.parametrize("name", ["nsga2", "nsga3", "gp", "random"])
def test_every_sampler_runs_a_constrained_study(tmp_path, name):
    space = load_space(write_space(tmp_path), ["proxy.epochs=1", "proxy.train_samples=100", "proxy.val_samples=50",
                                                "proxy.batch_size=50"])
    study = optuna.create_study(directions=list(space.objectives.values()), sampler=make_sampler(name, 0, 2))
    ev = Evaluator(space=space, data=load_proxy_data(space.proxy), budget=MeasureBudget(budget_s=0.02))
    assert run_worker(study, ev, 2, tmp_path / "lock").status == "done"
    assert states(study) == {"COMPLETE": 2}
    assert all(set(t.constraints) == {"params_m<=5"} for t in study.trials)


def test_dead_trial_detection(tmp_path):
    study = optuna.create_study(directions=["maximize"])
    alive = study.ask()
    alive.set_user_attr("worker", owner_attrs())
    dead = study.ask()
    dead.set_user_attr("worker", dict(owner_attrs(), pid=dead_pid()))
    reused = study.ask()  # this pid is alive, but it is another process than the one recorded
    reused.set_user_attr("worker", dict(owner_attrs(), pid_start="1"))
    assert sorted(fail_dead_trials(study)) == [dead.number, reused.number]
    assert study.trials[alive.number].state == TrialState.RUNNING


# ---- input errors ---------------------------------------------------------------------------
BAD_SPACES = {
    "unknown key": (TINY_SPACE.replace("num_classes: 10", "num_classes: 10\ncolour: red"), "colour: unknown key"),
    "wrong type": (TINY_SPACE.replace("depth: [1, 2], embed_dim: [16, 32]", "depth: [1, two], embed_dim: [16, 32]"),
                   "stages[0].depth"),
    "empty choice list": (TINY_SPACE.replace("mlp_ratio: [2, 4]", "mlp_ratio: []"), "stages[0].mlp_ratio=[]"),
    "embed_dim vs head_dim": (TINY_SPACE.replace("embed_dim: [32, 48]", "embed_dim: [32, 50]"),
                              "stages[1].embed_dim=50: not divisible by head_dim=16"),
    "pattern letter": (TINY_SPACE.replace("pattern: [LG, G]}", "pattern: [LX, G]}", 1), "stages[0].pattern=\"LX\""),
}


@pytest.mark.parametrize("case", list(BAD_SPACES))
def test_bad_space_is_one_line_exit_2(tmp_path, case):
    text, needle = BAD_SPACES[case]
    space = write_space(tmp_path, text)
    r = runner.invoke(app, ["search", "--space", str(space), "--out", str(tmp_path / "out"), "--trials", "1"])
    assert needle in one_line_error(r)
    assert not (tmp_path / "out").exists()


def test_missing_space_file(tmp_path):
    r = runner.invoke(app, ["search", "--space", str(tmp_path / "nope.yaml"), "--trials", "1"])
    assert "nope.yaml: no such file" in one_line_error(r)


@pytest.mark.parametrize("args,needle", [
    (["--pick", "max speed"], "unknown metric 'speed'"),
    (["--sampler", "cmaes"], "--sampler='cmaes'"),
    (["--trials", "0"], "--trials=0"),
    (["--workers", "0"], "--workers=0"),
    (["--storage", "weird"], "--storage='weird'"),
    (["--study-name", "a b"], "--study-name='a b'"),
    (["--set", "proxy.epoch=1"], "proxy.epoch: unknown key"),
    (["--device", "tpu"], "tpu"),
    (["--timing-budget", "0"], "--timing-budget"),
    (["--threads", "0"], "--threads=0"),
])
def test_bad_options_are_one_line_exit_2(tmp_path, args, needle):
    space = write_space(tmp_path)
    r = runner.invoke(app, ["search", "--space", str(space), "--out", str(tmp_path / "out"), *args])
    assert needle in one_line_error(r)
    assert not (tmp_path / "out").exists()


def test_dry_run_writes_nothing(tmp_path):
    space = write_space(tmp_path)
    r = runner.invoke(app, ["search", "--space", str(space), "--out", str(tmp_path / "out"), "--dry-run",
                            "--set", "stages.1.depth=[1,2,3]"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.split())
    assert "distinct networks" in text and "sampled config 3" in text and "proxy data: fashion-mnist" in text
    assert str(load_space(space, ["stages.1.depth=[1,2,3]"]).size()) in text.replace(",", "")
    assert not (tmp_path / "out").exists()


def test_the_old_metric_name_is_accepted_with_one_note(tmp_path):
    space = write_space(tmp_path)
    r = runner.invoke(app, ["search", "--space", str(space), "--out", str(tmp_path / "out"), "--dry-run",
                            "--set", "constraints.gflops.max=3", "--pick", "max accuracy where gflops<=3"])
    assert r.exit_code == 0, r.output
    notes = [line for line in r.stderr.splitlines() if "'gflops' is now called 'gmacs'" in line]
    assert len(notes) == 1 and notes[0].startswith("note:")
    assert "gmacs <= 3" in " ".join(r.stdout.split())


def test_space_dump_round_trips_for_workers_and_export():
    space = load_space(Path(__file__).resolve().parents[2] / "search_spaces" / "svt.yaml")
    again = space_from_dict(space.model_dump(mode="json"), source=space.source)
    assert again.hash == space.hash and again.size() == space.size()


# ---- storage rule, and studies made when gmacs was called gflops --------------------------------
def test_search_and_export_take_the_same_storage_file(tmp_path):
    (tmp_path / "study.db").write_bytes(b"")
    (tmp_path / "study.journal").write_text("")
    assert existing_storage_file(tmp_path) == tmp_path / "study.journal"
    assert resolve_storage(None, tmp_path, workers=1) == f"journal:{(tmp_path / 'study.journal').resolve()}"
    assert existing_storage_file(tmp_path / "nothing") is None


def _legacy_names(d: dict) -> dict:
    return {k.replace("gmacs", "gflops"): v for k, v in d.items()}


def test_a_study_made_before_the_rename_continues_with_its_names(tmp_path):
    text = TINY_SPACE.replace("constraints: {params_m: {max: 5}}", "constraints: {params_m: {max: 5}, gmacs: {max: 5}}")
    space_file, out = write_space(tmp_path, text), tmp_path / "out"
    clamp = ["--set", "proxy.geometry=clamp", "--set", "proxy.patch_size=null"]
    args = ["search", "--space", str(space_file), "--no-png", "--set", "proxy.epochs=1", *clamp, *FAST]
    assert runner.invoke(app, args + ["--out", str(tmp_path / "first"), "--trials", "1"]).exit_code == 0
    # the same study as it was recorded before the rename: space hash, constraints, metrics, keys
    first = load(tmp_path / "first").trials[0]
    study = load(tmp_path / "first")
    out.mkdir()
    legacy = optuna.create_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}",
                                 directions=["maximize", "maximize"])
    for k, v in study.user_attrs.items():
        legacy.set_user_attr(k, v)
    legacy.set_user_attr("space_hash", load_space(
        space_file, ["proxy.epochs=1", "proxy.geometry=clamp", "proxy.patch_size=null"]).legacy_hash)
    legacy.set_user_attr("constraints", _legacy_names(study.user_attrs["constraints"]))
    old_space = json.loads(json.dumps(study.user_attrs["space"]))   # recorded before the proxy geometry
    del old_space["proxy"]["geometry"], old_space["proxy"]["patch_size"], old_space["halving"]
    legacy.set_user_attr("space", old_space)
    legacy.add_trial(optuna.trial.create_trial(
        values=first.values, params=first.params, distributions=first.distributions,
        user_attrs=dict(first.user_attrs, metrics=_legacy_names(first.user_attrs["metrics"])),
        constraints=_legacy_names(first.constraints)))
    # the default (faithful) proxy would train other networks: one line says how to continue
    plain = ["search", "--space", str(space_file), "--no-png", "--set", "proxy.epochs=1", *FAST]
    r = runner.invoke(app, plain + ["--out", str(out), "--trials", "2"])
    assert r.exit_code == 2 and "--set proxy.geometry=clamp --set proxy.patch_size=null" in r.output, r.output
    r = runner.invoke(app, args + ["--out", str(out), "--trials", "2"])
    assert r.exit_code == 0, r.output
    assert "2/2 trials finished" in r.stdout
    old, new = load(out).trials
    assert set(old.constraints) == set(new.constraints) == {"params_m<=5", "gflops<=5"}  # one set of keys
    df = pd.read_csv(out / "trials.csv")
    assert "gflops" not in df.columns and df["gmacs"].notna().all()
    assert df.loc[0, "gmacs"] == pytest.approx(first.user_attrs["metrics"]["gmacs"])
    meta = json.loads((out / "best_config.json").read_text())["meta"]
    assert "gmacs" in meta["metrics"] and set(meta["constraints"]) == {"params_m", "gmacs"}


REPORTS = Path(__file__).resolve().parents[2] / "reports"


@pytest.mark.skipif(not (REPORTS / "svt-200" / "study.db").is_file(), reason="the committed study is not here")
def test_the_committed_svt_study_still_exports_and_resumes(tmp_path):
    committed = json.loads((REPORTS / "svt-200" / "best_config.json").read_text())["meta"]
    knee = committed["trial"]
    out = tmp_path / "svt-200"
    out.mkdir()
    shutil.copy(REPORTS / "svt-200" / "study.db", out / "study.db")  # never the committed file itself
    r = runner.invoke(app, ["export", "--study", "svt", "--storage", str(out / "study.db"), "--out",
                            str(tmp_path / "export"), "--no-png"])
    assert r.exit_code == 0, r.output
    assert f"(trial {knee}, knee)" in r.stdout
    again = json.loads((tmp_path / "export" / "best_config.json").read_text())["meta"]
    assert again["metrics"] == committed["metrics"]          # the same numbers from the storage alone
    df = pd.read_csv(tmp_path / "export" / "trials.csv")
    assert (df["state"] == "COMPLETE").sum() == 200 and df["gmacs"].notna().all()
    # resume on this machine: the study was timed on another CPU, so say it was this one
    study = optuna.load_study(study_name="svt", storage=f"sqlite:///{out / 'study.db'}")
    study.set_user_attr("measure", dict(study.user_attrs["measure"], device=resolve_search_device("cpu")[1]))
    svt = str(REPORTS.parent / "search_spaces" / "svt.yaml")
    assert study.user_attrs["space_hash"] == load_space(svt).hash   # made with the committed space file
    r = runner.invoke(app, ["search", "--space", svt, "--trials", "200", "--out", str(out), "--device", "cpu",
                            "--no-png", "--set", "replicates.count=1"])   # no further training here
    assert r.exit_code == 0, r.output
    assert "200/200 trials finished" in r.stdout and f"(trial {knee}, " in r.stdout
    assert states(load(out, "svt"))["COMPLETE"] == 200 and "RUNNING" not in states(load(out, "svt"))
