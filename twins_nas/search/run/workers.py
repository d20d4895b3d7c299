"""Worker processes: with `settings.workers = N` > 1, N spawned processes share the study's storage
and each runs `trials.run_worker` (the study's lock keeps the count exact); the parent refreshes
the progress display and collects what each worker reports when it stops.

Seeds: worker w of a study that already has T trials seeds its sampler with
seed + 10007 * w + T (`sampler_seed`; the single process of a one-worker run is worker 0), so
a resumed run does not replay the first suggestions; each trial's proxy training is seeded
with `objective.trial_seed(seed, trial.number)`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import pickle
import queue
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import optuna
import torch

from ...errors import ConfigError
from ..evaluate.accuracy_source import AccuracySource, load_accuracy_source
from ..evaluate.objective import Evaluator, needs_proxy_data
from ..evaluate.status import StopReason
from ..proxy.data import load_proxy_data
from ..proxy.datasets import get_dataset, register_dataset
from ..space.measure import MeasureBudget
from ..space.space import SearchSpace, space_from_dict
from .replication import Replicator
from .rungs import Promoter
from .samplers import SAMPLERS, make_sampler, register_sampler
from .settings import SearchSettings
from .storage import open_storage
from .trials import POLL_S, error_line, fail_dead_trials, on_stale_trial, run_worker


def sampler_seed(seed: int, worker: int, existing_trials: int) -> int:
    """The sampler seed of worker `worker` joining a study of `existing_trials` trials."""
    return seed + 10007 * worker + existing_trials


def quiet_optuna() -> None:
    """Optuna's per-trial log lines and experimental-feature warnings off, and its warning that
    heartbeats are meant for `Study.optimize` (`trials.Heartbeat` records them for ask-and-tell)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


def prepare_process(threads: int) -> None:
    """Set up a process that runs trials: its torch CPU threads, and Optuna quiet."""
    torch.set_num_threads(max(1, threads))
    quiet_optuna()


def load_scorer(space: SearchSpace, settings: SearchSettings) -> AccuracySource:
    """The supernet of ``settings.supernet`` loaded for `space`, scoring on
    ``settings.supernet_samples`` validation images (all when None)."""
    assert settings.supernet is not None
    return load_accuracy_source("supernet", settings.supernet, space, samples=settings.supernet_samples)


def make_evaluator(space: SearchSpace, settings: SearchSettings, device: str,
                   constraint_names: dict | None = None, scorer: AccuracySource | None = None) -> Evaluator:
    """The objective of this process (with its proxy data, loaded once per process; with
    ``settings.supernet``, `scorer` when this process has loaded it already, else loaded here)."""
    data = load_proxy_data(space.proxy, seed=settings.seed) if needs_proxy_data(space) else None
    if scorer is None and settings.supernet:
        scorer = load_scorer(space, settings)
    return Evaluator(space=space, data=data, device=device, seed=settings.seed, budget=settings.budget,
                     early_stop=settings.early_stop, constraint_names=dict(constraint_names or {}), scorer=scorer)


def _settings_payload(settings: SearchSettings) -> dict:
    d = dataclasses.asdict(settings)
    d["out_dir"] = str(settings.out_dir)
    d["budget"] = MeasureBudget(**d["budget"])
    return d


def _worker_entry(payload: dict, results: Any) -> None:
    """Body of a spawned worker process: run trials, then report how it stopped."""
    wid = payload["worker"]
    try:
        prepare_process(payload["threads"])
        register_sampler(*payload["sampler"])  # the parent's entries, registered there at run time
        register_dataset(payload["dataset"])
        settings = SearchSettings(**payload["settings"])
        space = space_from_dict(payload["space"], source=payload["space_source"])
        evaluator = make_evaluator(space, settings, payload["device"], payload["constraint_names"])
        storage = open_storage(payload["spec"], settings.heartbeat, on_stale=on_stale_trial)
        probe = optuna.load_study(study_name=settings.study_name, storage=storage)
        seed = sampler_seed(settings.seed, wid, len(probe.get_trials(deepcopy=False)))
        study = optuna.load_study(study_name=settings.study_name, storage=storage,
                                  sampler=make_sampler(settings.sampler, seed, settings.trials))
        promoter = Promoter(space, settings.seed, payload["device"], payload["lock"])
        res = run_worker(study, evaluator, settings.trials, payload["lock"], payload["deadline"],
                         after_complete=lambda: promoter.run(study))
        if res.status == StopReason.DONE:  # the trials are done: share the replicate trainings
            replicator = Replicator(space, settings.seed, payload["device"], payload["lock"], settings.trials)
            replicator.run(study, payload["deadline"])
        results.put({"worker": wid, "status": res.status, "ran": res.ran, "message": res.message})
    except KeyboardInterrupt:
        results.put({"worker": wid, "status": StopReason.INTERRUPTED, "ran": 0, "message": "interrupted"})
    except BaseException as e:  # noqa: BLE001 (report any crash of the worker to the parent)
        results.put({"worker": wid, "status": StopReason.CRASHED, "ran": 0, "message": error_line(e)})


def run_worker_processes(space: SearchSpace, settings: SearchSettings, spec: str, device: str, threads: int,
                         lock: AbstractContextManager, deadline: float | None, study: optuna.Study,
                         constraint_names: dict, on_poll: Callable[[], None]) -> tuple[StopReason, str]:
    """Run `settings.workers` worker processes to the end; (how they stopped, message)."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    base = dict(settings=_settings_payload(settings), space=space.model_dump(mode="json"),
                space_source=space.source, spec=spec, device=device, threads=threads, lock=lock,
                deadline=deadline, constraint_names=constraint_names,
                sampler=(settings.sampler, SAMPLERS[settings.sampler]), dataset=get_dataset(space.proxy.dataset))
    try:  # registry entries travel by reference: their factory / loader must be importable functions
        pickle.dumps((base["sampler"], base["dataset"]))
    except Exception as e:  # noqa: BLE001 (lambdas, closures, ...: say which entry, in one line)
        raise ConfigError(
            f"workers={settings.workers}: sampler {settings.sampler!r} or data set {space.proxy.dataset!r} "
            f"cannot be sent to worker processes ({type(e).__name__}); register a module-level function as "
            f"its factory / loader", field="workers") from None
    procs = [ctx.Process(target=_worker_entry, args=(dict(base, worker=w), results), daemon=False)
             for w in range(settings.workers)]
    for p in procs:
        p.start()
    reports = []
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(POLL_S)
            on_poll()
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
    bad = [r for r in reports if r["status"] in (StopReason.CRASHED, StopReason.FAILING, StopReason.STORAGE)]
    if bad:
        return StopReason(bad[0]["status"]), f"worker {bad[0]['worker']}: {bad[0]['message']}"
    missing = len(procs) - len(reports)
    if missing:
        codes = [p.exitcode for p in procs]
        return StopReason.CRASHED, f"{missing} worker process(es) died (exit codes {codes})"
    if any(r["status"] == StopReason.TIMEOUT for r in reports):
        return StopReason.TIMEOUT, ""
    return StopReason.DONE, ""
