"""Trial bookkeeping: what became of each trial, who runs it and whether that process is
still alive, and the loop that runs trials until a study has exactly N finished ones.

Status: every trial records a ``status`` user attribute next to its Optuna state: ``ok`` and
``infeasible`` (COMPLETE; the second broke a constraint), ``pruned`` (PRUNED by the early
stop), ``surplus`` (PRUNED: it would have overshot N) and ``failed`` (FAIL).

Dead trials: a kill -9 loses at most the trials that were running; they stay RUNNING in the
storage until a live worker finds them dead (`fail_dead_trials`, before every new trial), marks
them FAILED and queues their config again (`retry_trial`: the same parameters as a WAITING
trial, which the next `ask` takes; at most `MAX_RETRIES` times per config). Two ways to tell:
- on a database server, heartbeats: the trial's process records one every `heartbeat`
  seconds while the trial runs (`Heartbeat`, the thread Optuna's own `Study.optimize` would
  start, which ask-and-tell does not), and a trial without one for the grace period is stale
  (Optuna's `fail_stale_trials`, whose callback is `on_stale_trial`), whatever its host;
- on this host, the process: each trial records its worker (host, pid and the process start
  time, against pid reuse) in ``worker``, and a RUNNING trial of this host whose process is
  gone is dead (also a trial with no owner, older than a minute).

Exact N (`run_worker`): a worker starts a trial only under the study's lock
(`storage.study_lock`: a PostgreSQL advisory lock across hosts, a file lock on one host), and
only when COMPLETE + RUNNING < N, so the number of COMPLETE trials never exceeds N; when
COMPLETE + RUNNING >= N but COMPLETE < N it sleeps and looks again, because a running trial
may still fail or die and then a worker takes over its place. Processes that do not share a
lock (a database server other than PostgreSQL, on several hosts) are covered by a second
check after the trial is created: a trial that finds COMPLETE + (RUNNING trials with a smaller
number) >= N gives up at once (PRUNED, status ``surplus``), so the lowest-numbered trials
always win. A worker stops when N are finished, at its deadline, after 10 failures in a row,
or when its database server has been unreachable for `STORAGE_PATIENCE_S` (it reconnects by
itself within that time, e.g. across a server restart).
"""
from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import optuna
from optuna.trial import FrozenTrial, TrialState

from ...profile.memory import free_memory, is_out_of_memory
from ..evaluate.status import StopReason, TrialStatus
from ..optuna_compat import fail_running_trial, heartbeat_interval, record_heartbeat
from .storage import as_lock, server_problem, storage_down

MAX_CONSECUTIVE_FAILURES = 10
MAX_RETRIES = 3  # a config whose trial died is queued again at most this many times
ORPHAN_GRACE_S = 60.0  # a RUNNING trial with no owner recorded is dead after this long
POLL_S = 1.0
STORAGE_PATIENCE_S = 120.0  # how long a worker waits for an unreachable database server

T = TypeVar("T")


# ---- counting ----------------------------------------------------------------------------------
def count_trials(study: optuna.Study) -> dict[str, int]:
    """Trials by state and by status: complete, running, failed, pruned, infeasible, surplus."""
    c = dict(complete=0, running=0, failed=0, pruned=0, infeasible=0, surplus=0, waiting=0)
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            c["complete"] += 1
            if t.user_attrs.get("status") == TrialStatus.INFEASIBLE:
                c["infeasible"] += 1
        elif t.state == TrialState.RUNNING:
            c["running"] += 1
        elif t.state == TrialState.FAIL:
            c["failed"] += 1
        elif t.state == TrialState.PRUNED:
            c["surplus" if t.user_attrs.get("status") == TrialStatus.SURPLUS else "pruned"] += 1
        else:
            c["waiting"] += 1
    return c


# ---- who runs a trial, and is it alive ---------------------------------------------------------
def _proc_stat(pid: int) -> tuple[str, str | None] | None:
    """(state letter, start time in clock ticks since boot) of process `pid` from
    /proc/PID/stat, or None when it cannot be read (no such process, or no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # after "pid (command) "; command may hold spaces
    return (fields[0] if fields else "", fields[19] if len(fields) > 19 else None)


def owner_attrs() -> dict:
    """The ``worker`` user attribute of a trial this process runs."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_start": (_proc_stat(pid) or ("", None))[1]}


def owner_alive(owner: dict) -> bool | None:
    """True / False for a worker of this host, None when it cannot be told (another host)."""
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return None
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return None
    start = owner.get("pid_start")
    if pid == os.getpid():
        return start in (None, (_proc_stat(pid) or ("", None))[1])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if Path("/proc").is_dir():
        stat = _proc_stat(pid)
        if stat is None:
            return False
        state, started = stat
        if state == "Z":  # a zombie: dead, not yet reaped
            return False
        if start is not None and started != start:  # pid reused by another process
            return False
    return True


def _is_dead(t: optuna.trial.FrozenTrial, now: datetime) -> bool:
    owner = t.user_attrs.get("worker")
    if owner is None:
        start = t.datetime_start
        if start is None:
            return False
        if start.tzinfo is None:
            start = start.astimezone()
        return (now - start).total_seconds() > ORPHAN_GRACE_S
    return owner_alive(owner) is False


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Mark FAILED the RUNNING trials whose worker is gone (no heartbeat on a database server,
    no process on this host: see the module docstring) and queue their configs again; returns
    the numbers of the trials failed here."""
    failed = []
    if heartbeat_interval(study):  # only storages with heartbeats: no extra reads on every step elsewhere
        with warnings.catch_warnings():  # fail_stale_trials is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
            optuna.storages.fail_stale_trials(study)  # calls on_stale_trial for each
            if before:
                failed += sorted(t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
                                 if t.number in before)
    now = datetime.now().astimezone()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _is_dead(t, now):
            continue
        owner = t.user_attrs.get("worker") or {}
        reason = (f"worker process {owner.get('pid')} on {owner.get('host')} died while the trial ran"
                  if owner else "no worker recorded: its process died before the trial started")
        if fail_running_trial(study, t, {"status": TrialStatus.FAILED, "fail_reason": reason}):
            failed.append(t.number)
            retry_trial(study, t, reason)
    return failed


def retry_trial(study: optuna.Study, trial: optuna.Trial | FrozenTrial, reason: str) -> int | None:
    """Queue the config of a trial that died (its parameters, as a WAITING trial the next
    `ask` takes), unless it was retried `MAX_RETRIES` times already or died before its config
    was complete (no ``config`` attribute yet: half the parameters would make another config,
    and the sampler proposes one anyway). Returns the original trial's number, or None when it
    is not retried."""
    if not trial.params or "config" not in trial.user_attrs:
        return None
    first = trial.user_attrs.get("retry_of", trial.number)
    retries = int(trial.user_attrs.get("retries", 0)) + 1
    if retries > MAX_RETRIES:
        return None
    study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": first, "retries": retries,
                                                         "retry_reason": reason})
    return first


def on_stale_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna's callback for a trial whose heartbeat stopped (it is FAILED already)."""
    retry_trial(study, trial, "no heartbeat: its worker died or lost the storage")


class Heartbeat:
    """`with Heartbeat(study, trial):` records the trial's heartbeat in the storage every
    interval from a thread while the block runs (nothing on storages without heartbeats). A
    beat that fails (the server is restarting) is skipped, not raised."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial | FrozenTrial) -> None:
        self.study, self.trial = study, trial
        self.interval = heartbeat_interval(study)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        if self.interval:
            record_heartbeat(self.study, self.trial)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):
                self.beat()

    def __enter__(self) -> Heartbeat:
        if self.interval:
            self._thread = threading.Thread(target=self._run, name="twins-nas-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def reconnecting(fn: Callable[[], T], patience: float = STORAGE_PATIENCE_S) -> T:
    """`fn()`, called again every second while the database server is unreachable, for at most
    `patience` seconds (then the last error propagates)."""
    t0 = time.monotonic()
    while True:
        try:
            return fn()
        except Exception as e:
            if not storage_down(e) or time.monotonic() - t0 > patience:
                raise
            time.sleep(POLL_S)


# ---- running trials ----------------------------------------------------------------------------
def error_line(e: BaseException) -> str:
    """An exception as one line: 'TypeName: first line of its message'."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


@dataclass
class WorkerResult:
    status: StopReason = StopReason.DONE
    ran: int = 0
    message: str = ""


def run_worker(study: optuna.Study, objective: Callable[[optuna.Trial], Sequence[float]], n_trials: int,
               lock: str | Path | AbstractContextManager, deadline: float | None = None,
               on_trial: Callable[[], None] | None = None,
               after_complete: Callable[[], object] | None = None,
               patience: float = STORAGE_PATIENCE_S) -> WorkerResult:
    """Run trials of `objective` until the study has `n_trials` COMPLETE trials (exact; see
    the module docstring). `lock`: the study's lock (`storage.study_lock`) or a lock file's
    path; `deadline` is a `time.time()`; `on_trial()` is called after every trial and every
    few seconds while waiting; `after_complete()` after every COMPLETE trial of this process
    (the promotions of `rungs.Promoter`); `patience`: seconds to wait for a database server
    that went away before stopping with status ``storage``."""
    lock = as_lock(lock)
    result = WorkerResult()
    fails = 0
    last_poll = 0.0
    lost_since: float | None = None
    while True:
        if deadline is not None and time.time() >= deadline:
            result.status = StopReason.TIMEOUT
            return result
        try:
            step = _step(study, objective, n_trials, lock)
        except Exception as e:
            if not storage_down(e):
                raise
            lost_since = lost_since or time.monotonic()
            if time.monotonic() - lost_since > patience:
                result.status = StopReason.STORAGE
                result.message = f"lost the storage for {patience:.0f} s ({server_problem(e)})"
                return result
            time.sleep(POLL_S)
            continue
        lost_since = None
        if step == "done":
            return result
        if step == "wait":  # the rest is running elsewhere: wait, one may fail
            if time.time() - last_poll > 2 * POLL_S:
                _call(on_trial)
                last_poll = time.time()
            time.sleep(POLL_S)
            continue
        if step == "surplus":
            continue
        trial, state = step
        result.ran += 1
        if state == TrialState.FAIL:
            fails += 1
            if fails >= MAX_CONSECUTIVE_FAILURES:
                result.status = StopReason.FAILING
                last = trial.user_attrs.get("fail_reason", "")
                result.message = f"{fails} trials in a row failed; the last one: {last}"
                return result
        else:
            fails = 0
        if state == TrialState.COMPLETE:
            _call(after_complete)
        _call(on_trial)


def _call(fn: Callable[[], object] | None) -> None:
    """`fn()` unless None; an unreachable database server is left to the next step."""
    if fn is None:
        return
    try:
        fn()
    except Exception as e:
        if not storage_down(e):
            raise


def _step(study: optuna.Study, objective: Callable[[optuna.Trial], Sequence[float]], n_trials: int,
          lock: AbstractContextManager) -> Any:
    """One step of `run_worker`: "done", "wait", "surplus", or (trial, state) of a trial run."""
    trial = None
    with lock:
        fail_dead_trials(study)
        c = count_trials(study)
        if c["complete"] >= n_trials:
            return "done"
        if c["complete"] + c["running"] < n_trials:
            trial = study.ask()
            Heartbeat(study, trial).beat()  # from now on a dead worker's trial goes stale
            trial.set_user_attr("worker", owner_attrs())
    if trial is None:
        return "wait"
    # processes that share no lock (several hosts, no advisory lock): the lowest numbers win
    ahead = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
             if t.state == TrialState.COMPLETE or t.number < trial.number]
    if len(ahead) >= n_trials:
        trial.set_user_attr("status", TrialStatus.SURPLUS)
        study.tell(trial, state=TrialState.PRUNED)
        return "surplus"
    with Heartbeat(study, trial):
        state = run_trial(study, trial, objective)
    return trial, state


def run_trial(study: optuna.Study, trial: optuna.Trial,
              objective: Callable[[optuna.Trial], Sequence[float]]) -> TrialState:
    """Evaluate one asked trial and tell the study how it ended (COMPLETE, PRUNED or FAIL, with
    ``status`` and ``fail_reason`` / ``prune_reason``). Only Ctrl-C and exit propagate, and a
    database server that stays unreachable (a trial that lost it is failed and its config
    queued again once the server is back)."""
    try:
        values = objective(trial)
    except optuna.TrialPruned as e:
        trial.set_user_attr("status", TrialStatus.PRUNED)
        if "prune_reason" not in trial.user_attrs:
            trial.set_user_attr("prune_reason", str(e))
        return _tell(study, trial, state=TrialState.PRUNED)
    except (KeyboardInterrupt, SystemExit) as e:
        fail_trial(study, trial, "interrupted" if isinstance(e, KeyboardInterrupt) else f"exit ({e})")
        raise
    except Exception as e:  # noqa: BLE001 (any failure of one trial must not stop the study)
        if is_out_of_memory(e):  # this config is too big here: give back what it held, go on
            detail = error_line(e)
            del e
            free_memory()
            fail_trial(study, trial, f"out of memory ({detail})")
            return TrialState.FAIL
        if storage_down(e):  # not the config's fault: run it again
            reason = f"lost the storage: {server_problem(e)}"
            reconnecting(lambda: fail_trial(study, trial, reason))
            reconnecting(lambda: retry_trial(study, trial, reason))
            return TrialState.FAIL
        fail_trial(study, trial, error_line(e))
        return TrialState.FAIL
    if any(not math.isfinite(v) for v in values):
        fail_trial(study, trial, f"non-finite objective values {values}")
        return TrialState.FAIL
    return _tell(study, trial, values=values)


def _tell(study: optuna.Study, trial: optuna.Trial, **kw: Any) -> TrialState:
    """`study.tell(trial, **kw)` through an outage of the database server; a trial that was
    failed meanwhile (its heartbeat went stale while the server was away) counts as FAIL."""
    frozen = reconnecting(lambda: study.tell(trial, skip_if_finished=True, **kw))
    wanted = kw.get("state", TrialState.COMPLETE)
    return wanted if frozen.state == wanted else TrialState.FAIL


def fail_trial(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """Tell the study that a trial this process runs FAILED, and why."""
    with contextlib.suppress(Exception):
        trial.set_user_attr("status", TrialStatus.FAILED)
        trial.set_user_attr("fail_reason", reason)
    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
