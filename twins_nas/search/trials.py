"""Trial bookkeeping: what became of each trial, who runs it and whether that process is
still alive, and the loop that runs trials until a study has exactly N finished ones.

Status: every trial records a ``status`` user attribute next to its Optuna state: ``ok`` and
``infeasible`` (COMPLETE; the second broke a constraint), ``pruned`` (PRUNED by the early
stop), ``surplus`` (PRUNED: it would have overshot N) and ``failed`` (FAIL).

Dead trials: a kill -9 loses at most the trials that were running; they stay RUNNING in the
storage. Each trial records its worker (host, pid and the process start time, against pid
reuse) in ``worker``, and before every new trial a worker marks FAILED every RUNNING trial of
its host whose process is gone (also trials with no owner, older than a minute). Trials of
other hosts are left alone (their liveness cannot be checked without heartbeats).

Exact N with several workers (`run_worker`): a worker starts a trial only under an exclusive
file lock (`storage.exclusive` on `storage.lock_path`), and only when COMPLETE + RUNNING < N,
so the number of COMPLETE trials never exceeds N; when COMPLETE + RUNNING >= N but
COMPLETE < N it waits, because a running trial may still fail or be pruned and then a worker
takes over its place. Processes that do not share the lock (other machines) are covered by a
second check after the trial is created: a trial that finds COMPLETE + (RUNNING trials with a
smaller number) >= N gives up at once (PRUNED, status ``surplus``), so the lowest-numbered
trials always win. A worker stops when N are finished, at its deadline, or after 10 failures
in a row.
"""
from __future__ import annotations

import contextlib
import math
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional, Sequence

import optuna
from optuna.trial import TrialState

from .optuna_compat import fail_running_trial
from .storage import exclusive

STATUS_OK, STATUS_INFEASIBLE, STATUS_PRUNED, STATUS_FAILED, STATUS_SURPLUS = (
    "ok", "infeasible", "pruned", "failed", "surplus")

MAX_CONSECUTIVE_FAILURES = 10
ORPHAN_GRACE_S = 60.0  # a RUNNING trial with no owner recorded is dead after this long
POLL_S = 1.0


# ---- counting ----------------------------------------------------------------------------------
def count_trials(study: optuna.Study) -> dict[str, int]:
    """Trials by state and by status: complete, running, failed, pruned, infeasible, surplus."""
    c = dict(complete=0, running=0, failed=0, pruned=0, infeasible=0, surplus=0, waiting=0)
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            c["complete"] += 1
            if t.user_attrs.get("status") == STATUS_INFEASIBLE:
                c["infeasible"] += 1
        elif t.state == TrialState.RUNNING:
            c["running"] += 1
        elif t.state == TrialState.FAIL:
            c["failed"] += 1
        elif t.state == TrialState.PRUNED:
            c["surplus" if t.user_attrs.get("status") == STATUS_SURPLUS else "pruned"] += 1
        else:
            c["waiting"] += 1
    return c


# ---- who runs a trial, and is it alive ---------------------------------------------------------
def _proc_stat(pid: int) -> Optional[tuple[str, Optional[str]]]:
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


def owner_alive(owner: dict) -> Optional[bool]:
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
    """Mark FAILED the RUNNING trials whose worker process is gone (see the module docstring);
    returns their numbers."""
    now = datetime.now().astimezone()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _is_dead(t, now):
            continue
        owner = t.user_attrs.get("worker") or {}
        reason = (f"worker process {owner.get('pid')} on {owner.get('host')} died while the trial ran"
                  if owner else "no worker recorded: its process died before the trial started")
        if fail_running_trial(study, t, {"status": STATUS_FAILED, "fail_reason": reason}):
            failed.append(t.number)
    return failed


# ---- running trials ----------------------------------------------------------------------------
def error_line(e: BaseException) -> str:
    """An exception as one line: 'TypeName: first line of its message'."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


@dataclass
class WorkerResult:
    status: str = "done"    # done | timeout | failing
    ran: int = 0
    message: str = ""


def run_worker(study: optuna.Study, objective: Callable[[optuna.Trial], Sequence[float]], n_trials: int,
               lock_path: Path, deadline: Optional[float] = None,
               on_trial: Optional[Callable[[], None]] = None,
               after_complete: Optional[Callable[[], None]] = None) -> WorkerResult:
    """Run trials of `objective` until the study has `n_trials` COMPLETE trials (exact; see
    the module docstring). `deadline` is a `time.time()`; `on_trial()` is called after every
    trial and every few seconds while waiting; `after_complete()` after every COMPLETE trial
    of this process (the promotions of `rungs.Promoter`)."""
    result = WorkerResult()
    fails = 0
    last_poll = 0.0
    while True:
        if deadline is not None and time.time() >= deadline:
            result.status = "timeout"
            return result
        trial = None
        with exclusive(lock_path):
            fail_dead_trials(study)
            c = count_trials(study)
            if c["complete"] >= n_trials:
                return result
            if c["complete"] + c["running"] < n_trials:
                trial = study.ask()
                trial.set_user_attr("worker", owner_attrs())
        if trial is None:  # the rest is running elsewhere: wait, one may fail
            if on_trial is not None and time.time() - last_poll > 2 * POLL_S:
                on_trial()
                last_poll = time.time()
            time.sleep(POLL_S)
            continue
        # processes on other machines do not share the lock: the lowest numbers win
        ahead = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
                 if t.state == TrialState.COMPLETE or t.number < trial.number]
        if len(ahead) >= n_trials:
            trial.set_user_attr("status", STATUS_SURPLUS)
            study.tell(trial, state=TrialState.PRUNED)
            continue
        state = run_trial(study, trial, objective)
        result.ran += 1
        if state == TrialState.FAIL:
            fails += 1
            if fails >= MAX_CONSECUTIVE_FAILURES:
                result.status = "failing"
                last = trial.user_attrs.get("fail_reason", "")
                result.message = f"{fails} trials in a row failed; the last one: {last}"
                return result
        else:
            fails = 0
        if state == TrialState.COMPLETE and after_complete is not None:
            after_complete()
        if on_trial is not None:
            on_trial()


def run_trial(study: optuna.Study, trial: optuna.Trial,
              objective: Callable[[optuna.Trial], Sequence[float]]) -> TrialState:
    """Evaluate one asked trial and tell the study how it ended (COMPLETE, PRUNED or FAIL, with
    ``status`` and ``fail_reason`` / ``prune_reason``). Only Ctrl-C and exit propagate."""
    try:
        values = objective(trial)
    except optuna.TrialPruned as e:
        trial.set_user_attr("status", STATUS_PRUNED)
        if "prune_reason" not in trial.user_attrs:
            trial.set_user_attr("prune_reason", str(e))
        study.tell(trial, state=TrialState.PRUNED)
        return TrialState.PRUNED
    except (KeyboardInterrupt, SystemExit) as e:
        fail_trial(study, trial, "interrupted" if isinstance(e, KeyboardInterrupt) else f"exit ({e})")
        raise
    except Exception as e:  # noqa: BLE001 (any failure of one trial must not stop the study)
        fail_trial(study, trial, error_line(e))
        return TrialState.FAIL
    if any(not math.isfinite(v) for v in values):
        fail_trial(study, trial, f"non-finite objective values {values}")
        return TrialState.FAIL
    study.tell(trial, values)
    return TrialState.COMPLETE


def fail_trial(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """Tell the study that a trial this process runs FAILED, and why."""
    with contextlib.suppress(Exception):
        trial.set_user_attr("status", STATUS_FAILED)
        trial.set_user_attr("fail_reason", reason)
    study.tell(trial, state=TrialState.FAIL)
