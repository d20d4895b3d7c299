"""Run a search: storage, study, sampler, workers, exact trial budget, resume, progress.

`run_search(space, settings)` creates (or continues) an Optuna study and runs trials until
`settings.trials` trials have *finished* (state COMPLETE, constraint-rejected ones included:
see `objective`), then writes the report with `export_study`.

Storage: a SQLite file `OUT/study.db` for one worker; a journal file `OUT/study.journal`
(`JournalFileBackend`) when `--workers` > 1, because SQLite is for one process; either one
when it already exists in OUT (a study started with one worker continues with several). `--storage`
takes any Optuna RDB URL (sqlite:///..., postgresql://..., mysql://...), a `.log` / `.journal`
path (journal storage) or a `.db` path (SQLite).

Resume: the same command again continues the same study (same name and storage) until N
trials are finished; every finished trial is in the storage the moment it finishes, so a
kill -9 loses at most the trials that were running. Those stay RUNNING in the storage: each
trial records its worker (host, pid and the process start time, against pid reuse) in
`worker`, and before every new trial a worker marks FAILED every RUNNING trial of its host
whose process is gone (also trials with no owner, older than a minute). Trials of other
hosts are left alone (their liveness cannot be checked without heartbeats).

Exact N with several workers: a worker starts a trial only under an exclusive file lock
(`fcntl.flock` on a lock file named after the storage and study, in the temp folder), and
only when COMPLETE + RUNNING < N, so the number of COMPLETE trials never exceeds N; when
COMPLETE + RUNNING >= N but COMPLETE < N it waits, because a running trial may still fail or
be pruned and then a worker takes over its place. Processes that do not share the lock (other
machines) are covered by a second check after the trial is created: a trial that finds
COMPLETE + (RUNNING trials with a smaller number) >= N gives up at once (PRUNED, status
``surplus``), so the lowest-numbered trials always win. Workers stop when N are finished,
at `--timeout`, or after 10 failures in a row.

Seeds: `--seed` seeds the sampler (worker w of a study that already has T trials uses
seed + 10007 * w + T, so a resumed run does not replay the first suggestions) and each
trial's proxy training (`objective.trial_seed(seed, trial.number)`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import multiprocessing as mp
import os
import platform
import queue
import re
import socket
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import optuna
from optuna.trial import TrialState

from ..config import ConfigError
from .objective import (STATUS_FAILED, STATUS_INFEASIBLE, STATUS_OK, STATUS_PRUNED, TIMED_METRICS, Evaluator,
                        MeasureBudget, cheap_metrics, needed_metrics)
from .export import export_study
from .pareto import parse_pick, pareto_mask
from .space import SearchSpace, space_from_dict

SAMPLERS = ("tpe", "nsga2", "nsga3", "gp", "random")
MAX_CONSECUTIVE_FAILURES = 10
ORPHAN_GRACE_S = 60.0  # a RUNNING trial with no owner recorded is dead after this long
POLL_S = 1.0

STATUS_SURPLUS = "surplus"


@dataclass
class SearchSettings:
    """What `twins-nas search` asks for (see its --help)."""

    trials: int
    study_name: str
    out_dir: Path
    storage: Optional[str] = None
    device: str = "auto"
    seed: int = 0
    workers: int = 1
    timeout: Optional[float] = None
    sampler: str = "tpe"
    pick: str = "knee"
    budget: MeasureBudget = field(default_factory=MeasureBudget)
    early_stop: bool = True
    presets: bool = True
    png: bool = True
    threads: Optional[int] = None  # torch CPU threads per worker (default: cores // workers)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if self.trials < 1:
            raise ConfigError(f"--trials={self.trials}: must be at least 1")
        if self.workers < 1:
            raise ConfigError(f"--workers={self.workers}: must be at least 1")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"--sampler={self.sampler!r}: valid samplers are {', '.join(SAMPLERS)}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads={self.threads}: must be at least 1")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"--timeout={self.timeout}: must be a positive number of seconds")
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", self.study_name):
            raise ConfigError(f"--study-name={self.study_name!r}: use letters, digits, '.', '_' and '-'")
        parse_pick(self.pick)


@dataclass
class SearchOutcome:
    study_name: str
    storage: str
    finished: int           # COMPLETE trials in the study
    target: int
    counts: dict            # status -> number of trials in the study
    stopped: str            # "done", "timeout", "failing", "interrupted"
    message: str = ""
    files: list = field(default_factory=list)
    notes: list = field(default_factory=list)


# ---- storage --------------------------------------------------------------------------------
def resolve_storage(storage: Optional[str], out_dir: Path, workers: int = 1) -> str:
    """Canonical storage spec: an RDB URL, or 'journal:PATH' for a journal file."""
    out_dir = Path(out_dir)
    if storage is None or storage == "":
        for existing in ("study.journal", "study.db"):  # continue where an earlier run left off
            if (out_dir / existing).is_file():
                return resolve_storage(str(out_dir / existing), out_dir, workers)
        if workers > 1:
            return f"journal:{(out_dir / 'study.journal').resolve()}"
        return f"sqlite:///{(out_dir / 'study.db').resolve()}"
    if storage.startswith("journal:"):
        return f"journal:{Path(storage[len('journal:'):]).expanduser().resolve()}"
    if "://" in storage:
        return storage
    p = Path(storage).expanduser()
    if p.suffix in (".log", ".journal", ".jsonl"):
        return f"journal:{p.resolve()}"
    if p.suffix in (".db", ".sqlite", ".sqlite3"):
        return f"sqlite:///{p.resolve()}"
    raise ConfigError(f"--storage={storage!r}: give an Optuna storage URL (sqlite:///study.db, "
                      f"postgresql://...), a journal file (*.log / *.journal) or a SQLite file (*.db)")


def describe_storage(spec: str) -> str:
    """The spec for messages and reports: no password, a file below the working folder relative."""
    for prefix in ("sqlite:///", "journal:"):
        if spec.startswith(prefix):
            path = Path(spec[len(prefix):])
            with contextlib.suppress(ValueError):
                path = path.relative_to(Path.cwd())
            return f"{prefix}{path}"
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", spec)


def open_storage(spec: str) -> optuna.storages.BaseStorage:
    if spec.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage
        path = Path(spec[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    try:
        if spec.startswith("sqlite:///"):
            Path(spec[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.RDBStorage(spec, engine_kwargs={"connect_args": {"timeout": 60}})
        return optuna.storages.RDBStorage(spec)
    except (ImportError, ModuleNotFoundError) as e:
        raise ConfigError(f"--storage={describe_storage(spec)}: a driver is missing ({e})") from None
    except Exception as e:  # noqa: BLE001 (sqlalchemy errors: bad URL, unreachable server)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--storage={describe_storage(spec)}: cannot open ({first})") from None


def storage_file(spec: str) -> Optional[Path]:
    if spec.startswith("journal:"):
        return Path(spec[len("journal:"):])
    if spec.startswith("sqlite:///"):
        return Path(spec[len("sqlite:///"):])
    return None


# ---- sampler --------------------------------------------------------------------------------
def make_sampler(name: str, seed: Optional[int], n_trials: int) -> optuna.samplers.BaseSampler:
    """tpe: multivariate grouped TPE (the space is conditional: windows only for L blocks,
    ...); nsga2 / nsga3: population max(8, min(50, N // 4)); gp: Gaussian process (slow per
    trial, for small budgets); random: uniform."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        pop = max(8, min(50, n_trials // 4))
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=pop)
        if name == "nsga3":
            return optuna.samplers.NSGAIIISampler(seed=seed, population_size=pop)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"--sampler={name!r}: valid samplers are {', '.join(SAMPLERS)}")


# ---- device ---------------------------------------------------------------------------------
def resolve_search_device(device: str) -> tuple[str, str]:
    """('cpu' | 'cuda:0' | ..., a label naming the hardware, e.g. 'cpu' or 'NVIDIA H100 80GB HBM3')."""
    from ..profile.latency import resolve_device
    try:
        dev = resolve_device(device)
    except (ValueError, RuntimeError) as e:
        raise ConfigError(f"--device={device!r}: {e}") from None
    if dev.type == "cuda":
        import torch
        idx = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{idx}", torch.cuda.get_device_name(idx)
    if dev.type == "cpu":
        return "cpu", f"cpu ({_cpu_model()})"
    return str(dev), str(dev)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def library_versions() -> dict[str, str]:
    import numpy
    import torch
    from .. import __version__
    v = {"twins_nas": __version__, "python": platform.python_version(), "torch": torch.__version__,
         "optuna": optuna.__version__, "numpy": numpy.__version__}
    with contextlib.suppress(Exception):
        import timm
        v["timm"] = timm.__version__
    return v


# ---- workers and dead trials -------------------------------------------------------------------
def _proc_start(pid: int) -> Optional[str]:
    """The start time of process `pid` (clock ticks since boot, from /proc), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def owner_attrs() -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_start": _proc_start(pid)}


def owner_alive(owner: dict) -> Optional[bool]:
    """True / False for a worker of this host, None when it cannot be told (another host)."""
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return None
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return None
    if pid == os.getpid():
        return owner.get("pid_start") in (None, _proc_start(pid))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if Path("/proc").is_dir():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        if stat[stat.rfind(")") + 2:].split()[:1] == ["Z"]:  # a zombie: dead, not yet reaped
            return False
        start = owner.get("pid_start")
        if start is not None and _proc_start(pid) != start:  # pid reused by another process
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
    """Mark FAILED the RUNNING trials whose worker process is gone (see module docstring)."""
    storage = study._storage
    now = datetime.now().astimezone()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _is_dead(t, now):
            continue
        owner = t.user_attrs.get("worker") or {}
        reason = (f"worker process {owner.get('pid')} on {owner.get('host')} died while the trial ran"
                  if owner else "no worker recorded: its process died before the trial started")
        try:
            storage.set_trial_user_attr(t._trial_id, "status", STATUS_FAILED)
            storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            failed.append(t.number)
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            pass  # another worker got there first, or it just finished
    return failed


def _lock_path(spec: str, study_name: str) -> Path:
    key = hashlib.sha1(f"{spec}\0{study_name}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"twins-nas-{key}.lock"


@contextlib.contextmanager
def _exclusive(path: Path):
    try:
        import fcntl
    except ImportError:  # not POSIX: the post-creation check alone keeps N exact
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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


def _reason(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


@dataclass
class WorkerResult:
    status: str = "done"    # done | timeout | failing
    ran: int = 0
    message: str = ""


def run_worker(study: optuna.Study, evaluator: Evaluator, n_trials: int, lock_path: Path,
               deadline: Optional[float] = None, on_trial: Optional[Callable[[], None]] = None) -> WorkerResult:
    """Run trials until the study has `n_trials` COMPLETE trials (exact; see module doc)."""
    result = WorkerResult()
    fails = 0
    last_poll = 0.0
    while True:
        if deadline is not None and time.time() >= deadline:
            result.status = "timeout"
            return result
        trial = None
        with _exclusive(lock_path):
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
        state = _run_one(study, trial, evaluator)
        result.ran += 1
        if state == TrialState.FAIL:
            fails += 1
            if fails >= MAX_CONSECUTIVE_FAILURES:
                reason = study._storage.get_trial(trial._trial_id).user_attrs.get("fail_reason", "")
                result.status = "failing"
                result.message = (f"{fails} trials in a row failed; the last one: {reason}")
                return result
        else:
            fails = 0
        if on_trial is not None:
            on_trial()


def _run_one(study: optuna.Study, trial: optuna.Trial, evaluator: Evaluator) -> TrialState:
    try:
        values = evaluator(trial)
    except optuna.TrialPruned as e:
        trial.set_user_attr("status", STATUS_PRUNED)
        if "prune_reason" not in trial.user_attrs:
            trial.set_user_attr("prune_reason", str(e))
        study.tell(trial, state=TrialState.PRUNED)
        return TrialState.PRUNED
    except (KeyboardInterrupt, SystemExit) as e:
        _fail(study, trial, "interrupted" if isinstance(e, KeyboardInterrupt) else f"exit ({e})")
        raise
    except Exception as e:  # noqa: BLE001 (any failure of one trial must not stop the study)
        _fail(study, trial, _reason(e))
        return TrialState.FAIL
    if any(not math.isfinite(v) for v in values):
        _fail(study, trial, f"non-finite objective values {values}")
        return TrialState.FAIL
    study.tell(trial, values)
    return TrialState.COMPLETE


def _fail(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    with contextlib.suppress(Exception):
        trial.set_user_attr("status", STATUS_FAILED)
        trial.set_user_attr("fail_reason", reason)
    study.tell(trial, state=TrialState.FAIL)


# ---- study -----------------------------------------------------------------------------------
def _space_attrs(space: SearchSpace) -> dict:
    return {"space": space.model_dump(mode="json"), "space_hash": space.hash, "space_source": space.source,
            "space_name": space.name}


def open_study(space: SearchSpace, settings: SearchSettings, spec: str, sampler: optuna.samplers.BaseSampler,
               device_label: str, threads: int) -> tuple[optuna.Study, bool]:
    """Create the study, or load it and check it was made for the same space and hardware.
    Returns (study, created)."""
    storage = open_storage(spec)
    directions = list(space.objectives.values())
    try:
        study = optuna.load_study(study_name=settings.study_name, storage=storage, sampler=sampler)
        created = False
    except KeyError:
        study = optuna.create_study(study_name=settings.study_name, storage=storage, sampler=sampler,
                                    directions=directions, load_if_exists=True)
        created = not study.user_attrs.get("space_hash")
    where = f"study {settings.study_name!r} in {describe_storage(spec)}"
    if created:
        attrs = dict(_space_attrs(space), objectives=[[m, d] for m, d in space.objectives.items()],
                     constraints={m: b.model_dump() for m, b in space.constraints.items()},
                     seed=settings.seed, sampler=settings.sampler, versions=library_versions(),
                     created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     measure=dict(device=device_label, threads=threads, resolution=space.resolution,
                                  batch_size=space.measure.batch_size, dtype=space.measure.dtype))
        for k, v in attrs.items():
            study.set_user_attr(k, v)
        return study, True
    ua = study.user_attrs
    if ua.get("space_hash") != space.hash:
        raise ConfigError(f"{where} was created from another space ({ua.get('space_source')}, hash "
                          f"{str(ua.get('space_hash'))[:12]}) than {space.source} with these --set overrides (hash "
                          f"{space.hash[:12]}); continue it with the same space and overrides, or choose another "
                          f"--study-name / --out")
    if [d.name.lower() for d in study.directions] != directions:
        raise ConfigError(f"{where} has objective directions {[d.name.lower() for d in study.directions]}, "
                          f"the space {directions}")
    old = (ua.get("measure") or {}).get("device")
    if old and old != device_label and needed_metrics(space) & set(TIMED_METRICS):
        raise ConfigError(f"{where} measured throughput on {old!r}; this run would measure on {device_label!r} "
                          f"(not comparable): use the same --device or another --study-name")
    return study, False


def measure_presets(space: SearchSpace, device: str, budget: MeasureBudget) -> dict[str, dict]:
    """The six published models at the space's resolution, batch, dtype and device (with the
    space's classifier size): params, GMACs and, when the space times models, throughput."""
    from ..presets import PRESETS, get_preset
    from .objective import timing_model
    timed = bool(needed_metrics(space) & set(TIMED_METRICS))
    out = {}
    for name in PRESETS:
        cfg = get_preset(name).replace(num_classes=space.num_classes, in_chans=space.in_chans)
        try:
            row = {k: v for k, v in cheap_metrics(cfg, space.resolution).items()}
            if timed:
                from ..profile.latency import measure_latency
                rep = measure_latency(timing_model(cfg), space.resolution, space.measure.batch_size, device=device,
                                      dtype=space.measure.dtype, warmup=budget.warmup,
                                      min_repeats=budget.min_repeats, max_repeats=budget.max_repeats,
                                      budget_s=budget.budget_s)
                row.update(throughput=rep.throughput, latency_ms=rep.median_ms)
        except Exception as e:  # noqa: BLE001 (e.g. out of memory for the large ones on a small GPU)
            row = {"error": _reason(e)}
        out[name] = row
    return out


# ---- progress display --------------------------------------------------------------------------
class _Display:
    """A rich progress bar (finished / N) and the best front so far, refreshed from the storage."""

    def __init__(self, console, study: optuna.Study, space: SearchSpace, n: int, start_done: int):
        from rich.live import Live
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn
        self.study, self.space, self.n = study, space, n
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[extra]}"), TimeElapsedColumn(), TextColumn("eta"),
                                 TimeRemainingColumn(), console=console)
        self.task = self.progress.add_task(f"search {study.study_name}", total=n, completed=start_done, extra="")
        self.live = Live(self._render(), console=console, refresh_per_second=2, transient=False)

    def _front_table(self):
        from rich.table import Table
        rows, numbers = [], []
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.user_attrs.get("status") == STATUS_OK:
                rows.append(t.user_attrs.get("metrics", {}))
                numbers.append(t.number)
        table = Table(title="best front so far", title_justify="left", show_edge=False, pad_edge=False)
        cols = list(self.space.objectives) + [m for m in ("params_m", "gflops") if m not in self.space.objectives]
        table.add_column("trial", justify="right")
        for m in cols:
            table.add_column(m, justify="right")
        if not rows:
            return table
        mask = pareto_mask(rows, self.space.objectives)
        first, direction = next(iter(self.space.objectives.items()))
        front = sorted((i for i in range(len(rows)) if mask[i]), key=lambda i: rows[i][first],
                       reverse=direction == "maximize")
        for i in front[:8]:
            table.add_row(str(numbers[i]), *(_fmt_metric(m, rows[i].get(m)) for m in cols))
        if len(front) > 8:
            table.caption = f"... and {len(front) - 8} more on the front"
        return table

    def _render(self):
        from rich.console import Group
        return Group(self.progress, self._front_table())

    def update(self) -> None:
        c = count_trials(self.study)
        extra = ", ".join(f"{c[k]} {k}" for k in ("running", "infeasible", "pruned", "failed") if c[k])
        self.progress.update(self.task, completed=min(c["complete"], self.n), extra=extra)
        self.live.update(self._render())

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        with contextlib.suppress(Exception):
            self.update()
        self.live.__exit__(*exc)
        if not self.live.console.is_terminal:
            self.live.console.line()  # the last render of a non-terminal Live ends without one


def _fmt_metric(metric: str, v: Any) -> str:
    if v is None:
        return "-"
    if metric == "accuracy":
        return f"{100 * v:.2f}%"
    if metric in ("throughput", "latency_ms", "peak_mem_mb"):
        return f"{v:.1f}"
    return f"{v:.2f}"


# ---- worker processes ------------------------------------------------------------------------
def _prepare_process(threads: int) -> None:
    import torch
    torch.set_num_threads(max(1, threads))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _make_evaluator(space: SearchSpace, settings: SearchSettings, device: str) -> Evaluator:
    from .data import load_proxy_data
    data = load_proxy_data(space.proxy, seed=settings.seed) if "accuracy" in needed_metrics(space) else None
    return Evaluator(space=space, data=data, device=device, seed=settings.seed, budget=settings.budget,
                     early_stop=settings.early_stop)


def _worker_entry(payload: dict, results: Any) -> None:
    """Body of a spawned worker process (see run_search)."""
    wid = payload["worker"]
    try:
        _prepare_process(payload["threads"])
        settings = SearchSettings(**payload["settings"])
        space = space_from_dict(payload["space"], source=payload["space_source"])
        evaluator = _make_evaluator(space, settings, payload["device"])
        storage = open_storage(payload["spec"])
        probe = optuna.load_study(study_name=settings.study_name, storage=storage)
        seed = settings.seed + 10007 * wid + len(probe.get_trials(deepcopy=False))
        study = optuna.load_study(study_name=settings.study_name, storage=storage,
                                  sampler=make_sampler(settings.sampler, seed, settings.trials))
        res = run_worker(study, evaluator, settings.trials, Path(payload["lock"]), payload["deadline"])
        results.put({"worker": wid, "status": res.status, "ran": res.ran, "message": res.message})
    except KeyboardInterrupt:
        results.put({"worker": wid, "status": "interrupted", "ran": 0, "message": "interrupted"})
    except BaseException as e:  # noqa: BLE001 (report any crash of the worker to the parent)
        results.put({"worker": wid, "status": "crashed", "ran": 0, "message": _reason(e)})


def _settings_payload(settings: SearchSettings) -> dict:
    d = dataclasses.asdict(settings)
    d["out_dir"] = str(settings.out_dir)
    d["budget"] = MeasureBudget(**d["budget"])
    return d


# ---- the search ------------------------------------------------------------------------------
def run_search(space: SearchSpace, settings: SearchSettings, console=None, export: bool = True) -> SearchOutcome:
    """Run (or continue) a search until `settings.trials` trials are finished, then write the
    report (see `export_study`). Raises ConfigError for bad input (one line)."""
    from rich.console import Console
    console = console or Console(stderr=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    deadline = time.time() + settings.timeout if settings.timeout else None
    device, device_label = resolve_search_device(settings.device)
    workers = settings.workers
    cores = cpu_cores()
    threads = settings.threads or max(1, cores // workers)
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    spec = resolve_storage(settings.storage, settings.out_dir, workers)
    notes = []
    if workers > 1 and spec.startswith("sqlite:"):
        notes.append("SQLite with several worker processes may fail with 'database is locked'; a journal "
                     "file (--storage study.journal) is safer")

    # the data first: a missing data set is an input error, before anything is written
    _prepare_process(threads)
    evaluator = _make_evaluator(space, settings, device) if workers == 1 else None
    if workers > 1 and "accuracy" in needed_metrics(space):
        from .data import load_proxy_data
        load_proxy_data(space.proxy, seed=settings.seed)

    probe_storage = open_storage(spec)
    existing = 0
    with contextlib.suppress(KeyError):
        existing = len(optuna.load_study(study_name=settings.study_name, storage=probe_storage)
                       .get_trials(deepcopy=False))
    sampler = make_sampler(settings.sampler, settings.seed + existing, settings.trials)
    study, created = open_study(space, settings, spec, sampler, device_label, threads)
    old_threads = (study.user_attrs.get("measure") or {}).get("threads")
    if not created and device == "cpu" and old_threads not in (None, threads):
        notes.append(f"earlier trials were timed with {old_threads} CPU thread(s), these with {threads} "
                     f"(--workers {workers} on {cores} cores): throughputs are not quite comparable")
    dead = fail_dead_trials(study)
    if dead:
        notes.append(f"marked {len(dead)} trial(s) left running by a dead process as failed: "
                     f"{', '.join(map(str, dead))}")
    if settings.presets and "presets" not in study.user_attrs:
        with console.status(f"measuring the published Twins models at {space.resolution} px, "
                            f"batch {space.measure.batch_size} on {device_label} (once per study) ..."):
            study.set_user_attr("presets", measure_presets(space, device, settings.budget))

    lock = _lock_path(spec, settings.study_name)
    start = count_trials(study)
    stopped, message = "done", ""
    try:
        with _Display(console, study, space, settings.trials, start["complete"]) as display:
            if start["complete"] >= settings.trials:
                pass
            elif workers == 1:
                res = run_worker(study, evaluator, settings.trials, lock, deadline, on_trial=display.update)
                stopped, message = res.status, res.message
            else:
                stopped, message = _run_processes(space, settings, spec, device, threads, lock, deadline, study,
                                                  display)
    except KeyboardInterrupt:
        stopped, message = "interrupted", "interrupted"
        fail_dead_trials(study)
    counts = count_trials(study)
    outcome = SearchOutcome(study_name=settings.study_name, storage=describe_storage(spec),
                            finished=counts["complete"], target=settings.trials, counts=counts, stopped=stopped,
                            message=message, notes=notes)
    if export and study.get_trials(deepcopy=False):
        rep = export_study(study, settings.out_dir, pick=settings.pick, storage=spec, png=settings.png, strict=False)
        outcome.files, outcome.notes = rep["files"], notes + rep["notes"]
    return outcome


def _run_processes(space: SearchSpace, settings: SearchSettings, spec: str, device: str, threads: int, lock: Path,
                   deadline: Optional[float], study: optuna.Study, display: _Display) -> tuple[str, str]:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    base = dict(settings=_settings_payload(settings), space=space.model_dump(mode="json"),
                space_source=space.source, spec=spec, device=device, threads=threads, lock=str(lock),
                deadline=deadline)
    procs = [ctx.Process(target=_worker_entry, args=(dict(base, worker=w), results), daemon=False)
             for w in range(settings.workers)]
    for p in procs:
        p.start()
    reports = []
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(POLL_S)
            display.update()
            with contextlib.suppress(queue.Empty):
                while True:
                    reports.append(results.get_nowait())
        for p in procs:
            p.join()
        with contextlib.suppress(queue.Empty):
            while True:
                reports.append(results.get(timeout=0.5))
    except KeyboardInterrupt:  # Ctrl-C reached the workers too: let them record their trials as failed
        for p in procs:
            p.join(timeout=10)
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=10)
        raise
    fail_dead_trials(study)  # a worker that crashed hard leaves its trial RUNNING
    bad = [r for r in reports if r["status"] in ("crashed", "failing")]
    if bad:
        return bad[0]["status"], f"worker {bad[0]['worker']}: {bad[0]['message']}"
    missing = len(procs) - len(reports)
    if missing:
        codes = [p.exitcode for p in procs]
        return "crashed", f"{missing} worker process(es) died (exit codes {codes})"
    if any(r["status"] == "timeout" for r in reports):
        return "timeout", ""
    return "done", ""
