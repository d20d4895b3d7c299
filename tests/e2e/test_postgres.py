"""Searches on a real PostgreSQL server (started here on 127.0.0.1 in a temporary folder, see
scripts/local_postgres.py): workers as separate processes with their own folders, as on
separate machines (with their own host names where `unshare` can give them one), exact N,
kill -9 and heartbeats, a server restart, connection errors, and no password in any output.

Skipped where PostgreSQL is not installed, unless TWINS_NAS_REQUIRE_POSTGRES=1 (CI)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from local_postgres import LocalPostgres, find_bindir  # noqa: E402
from strategies import tiny_space  # noqa: E402

from twins_nas.search.run.storage import open_storage  # noqa: E402
from twins_nas.search.run.trials import Heartbeat, fail_dead_trials, on_stale_trial  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed")  # Heartbeat records them

# accuracy vs GMACs (nothing timed): each trial is a ~1 s proxy training on one thread
PG_SPACE = tiny_space("pg", objectives="{accuracy: maximize, gmacs: minimize}", constraints=False, train_samples=300)


@pytest.fixture(scope="module")
def pg():
    if find_bindir() is None:
        if os.environ.get("TWINS_NAS_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL is not installed, and TWINS_NAS_REQUIRE_POSTGRES=1")
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="twins-nas-pg-"))  # not under pytest's 0700 tmp: the server's user reads it
    server = LocalPostgres(root).start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def db(pg):
    return pg.create_database(f"t{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("pgspace") / "pg.yaml"
    p.write_text(PG_SPACE)
    return p


def host_cmd(host: str) -> list:
    """Run a command under its own host name (a UTS namespace) when this machine allows it."""
    if os.geteuid() == 0 and shutil.which("unshare"):
        probe = subprocess.run(["unshare", "-u", "true"], capture_output=True)
        if probe.returncode == 0:
            return ["unshare", "-u", "sh", "-c", f'hostname {host} && exec "$0" "$@"']
    return []


def search_cmd(space: Path, out: Path, trials: int, *extra: str, host: str = "") -> list:
    return [*host_cmd(host), sys.executable, "-m", "twins_nas", "search", "--space", str(space), "--trials",
            str(trials), "--out", str(out), "--device", "cpu", "--threads", "1", "--no-png", *extra]


def child_env(**kw: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TWINS_NAS_STORAGE", "PGPASSWORD")}
    return dict(env, **kw)


def load(url: str, name: str = "pg") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def by_state(study: optuna.Study) -> dict:
    out: dict = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def test_three_hosts_started_together_finish_exactly_n(db, space_file, tmp_path):
    procs = [subprocess.Popen(search_cmd(space_file, tmp_path / f"host{i}", 7, "--storage", db, "--seed", str(i),
                                         host=f"host{i}"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
             for i in range(3)]
    outs = [p.communicate(timeout=400) for p in procs]
    for p, (_so, se) in zip(procs, outs):
        assert p.returncode == 0, se
        assert "Traceback" not in se
    study = load(db)
    assert by_state(study) == {"COMPLETE": 7}  # no surplus, no failure: the database was the arbiter
    assert optuna.get_all_study_names(db) == ["pg"]
    hosts = {t.user_attrs["worker"]["host"] for t in study.trials}
    assert len(hosts) >= 2 or not host_cmd("x")  # trials ran on several "machines"


def test_kill9_mid_trial_is_failed_by_heartbeat_and_retried(db, space_file, tmp_path):
    n = 8
    common = ["--storage", db, "--heartbeat", "1"]
    # kill a victim while it runs a sampled trial once a few have finished; the trial seen running
    # may finish just before the kill lands, so what counts is what is still RUNNING afterwards
    deadline = time.time() + 240
    killed, attempt = None, 0
    while time.time() < deadline and killed is None:
        victim = subprocess.Popen(search_cmd(space_file, tmp_path / f"a{attempt}", n, *common, "--seed",
                                             str(attempt + 1), host="hostA"),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env(),
                                  start_new_session=True)
        attempt += 1
        while time.time() < deadline and victim.poll() is None:
            time.sleep(0.2)
            try:
                trials = load(db).get_trials(deepcopy=False)
            except KeyError:
                continue
            done = [t for t in trials if t.state == TrialState.COMPLETE]
            if len(done) >= 2 and any(t.state == TrialState.RUNNING and "config" in t.user_attrs for t in trials):
                before = {t.number: (t.params, t.values) for t in done}
                os.killpg(victim.pid, signal.SIGKILL)
                victim.wait()
                left = [t for t in load(db).get_trials(deepcopy=False)
                        if t.state == TrialState.RUNNING and "config" in t.user_attrs]
                killed = left[0].number if left else None
                break
    assert killed is not None, "the victim never ran a trial"
    survivor = subprocess.run(search_cmd(space_file, tmp_path / "b", n, *common, "--seed", "2", host="hostB"),
                              capture_output=True, text=True, env=child_env(), timeout=400)
    assert survivor.returncode == 0, survivor.stderr
    study = load(db)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert sum(t.state == TrialState.COMPLETE for t in trials.values()) == n
    assert not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials.values())
    assert trials[killed].state == TrialState.FAIL
    retried = [t for t in trials.values() if t.user_attrs.get("retry_of") == killed]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == trials[killed].params  # the same config, run again
    for number, (params, values) in before.items():  # what finished before the kill is untouched
        assert trials[number].state == TrialState.COMPLETE
        assert trials[number].params == params and trials[number].values == values


def test_heartbeat_of_another_host_goes_stale(db):
    """A RUNNING trial of another host (its process cannot be checked) is failed once its
    heartbeat stops, and its config is queued again."""
    storage = open_storage(db, heartbeat=1, on_stale=on_stale_trial)
    study = optuna.create_study(study_name="hb", storage=storage, directions=["maximize"])
    trial = study.ask({"x": optuna.distributions.IntDistribution(0, 9)})
    trial.set_user_attr("worker", {"host": "elsewhere", "pid": 1, "pid_start": None})
    trial.set_user_attr("config", {"x": trial.params["x"]})  # its config was complete: it is run again
    with Heartbeat(study, trial) as hb:
        hb.beat()
        time.sleep(4)  # beats keep it alive beyond the 3 s grace period
        assert fail_dead_trials(study) == []
    time.sleep(4.5)  # no beats: stale
    assert fail_dead_trials(study) == [trial.number]
    trials = study.get_trials(deepcopy=False)
    assert trials[trial.number].state == TrialState.FAIL
    assert [(t.state, t.user_attrs["retry_of"]) for t in trials[1:]] == [(TrialState.WAITING, trial.number)]
    assert study.ask({"x": optuna.distributions.IntDistribution(0, 9)}).params == trial.params  # the same config


def test_server_restart_mid_search(pg, db, space_file, tmp_path):
    n = 8
    cmd = search_cmd(space_file, tmp_path / "r", n, "--storage", db, "--heartbeat", "1")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    deadline = time.time() + 180
    while time.time() < deadline:
        time.sleep(0.3)
        try:
            if sum(t.state == TrialState.COMPLETE for t in load(db).get_trials(deepcopy=False)) >= 2:
                break
        except KeyError:
            pass
    pg.stop()
    time.sleep(4)  # longer than the grace period: the running trial's heartbeat goes stale
    pg.start()
    so, se = p.communicate(timeout=400)
    lines = [ln for ln in se.splitlines() if ln.strip() and not ln.startswith("note:")]
    assert "Traceback" not in se
    if p.returncode != 0:  # it may stop, with one line, and the same command then completes
        assert p.returncode == 1 and len([ln for ln in lines if ln.startswith("error:")]) == 1, se
        again = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), timeout=400)
        assert again.returncode == 0, again.stderr
    trials = load(db).get_trials(deepcopy=False)
    assert sum(t.state == TrialState.COMPLETE for t in trials) == n
    assert not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    retried = {t.user_attrs.get("retry_of") for t in trials if t.state == TrialState.COMPLETE}
    # every lost trial whose config was complete ran again (a retry that fails too is retried under the
    # first trial's number); one lost while its config was being sampled is replaced by a new config
    lost = [t for t in trials if t.state == TrialState.FAIL and "config" in t.user_attrs]
    assert all(t.user_attrs.get("retry_of", t.number) in retried for t in lost), [
        (t.number, t.user_attrs.get("fail_reason"), t.user_attrs.get("retry_of")) for t in lost]


@pytest.mark.parametrize("problem", ["password", "host", "database"])
def test_bad_server_is_one_line_and_writes_nothing(pg, db, space_file, tmp_path, problem):
    url = {"password": db.replace(pg.password, "not-the-password"),
           "host": f"postgresql://postgres:{pg.password}@127.0.0.1:1/x",
           "database": pg.url("no_such_database")}[problem]
    out = tmp_path / "out"
    r = subprocess.run(search_cmd(space_file, out, 2, "--storage", url), capture_output=True, text=True,
                       env=child_env(), timeout=120)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert {"password": "password authentication failed", "host": "Connection refused",
            "database": 'database "no_such_database" does not exist'}[problem] in lines[0]
    assert pg.password not in r.stdout + r.stderr
    assert not out.exists()


def test_password_never_written_and_environment_url(pg, db, space_file, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(search_cmd(space_file, out, 2, "--storage", db, "--png"), capture_output=True, text=True,
                       env=child_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    assert "postgres:***@" in r.stdout
    texts = [r.stdout, r.stderr] + [f.read_bytes().decode("utf-8", "replace") for f in out.rglob("*") if f.is_file()]
    assert len(texts) > 4 and not any(pg.password in t for t in texts)
    # the URL from TWINS_NAS_STORAGE, the password from PGPASSWORD: the same study continues
    env = child_env(TWINS_NAS_STORAGE=db.replace(f":{pg.password}@", "@"), PGPASSWORD=pg.password)
    r = subprocess.run(search_cmd(space_file, tmp_path / "out2", 3), capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "3/3 trials finished" in r.stdout
    assert by_state(load(db)) == {"COMPLETE": 3}
