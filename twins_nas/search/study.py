"""Run a search: `run_search(space, settings)` creates (or continues) the study of a space,
runs trials until `settings.trials` trials have *finished* (state COMPLETE, constraint-rejected
ones included: see `objective`), then writes the report with `export.export_study`.

Each job has its module: where the study lives (`storage`), the samplers by name (`samplers`), the
trial loop, statuses and dead trials (`trials`), worker processes and seeds (`workers`), what
the numbers were measured on (`provenance`) and the report (`export`).

Resume: the same command again continues the same study (same name and storage) until N
trials are finished; every finished trial is in the storage the moment it finishes. A study
continues only with the space it was made from (overrides included: `SearchSpace.hash`,
or `SearchSpace.legacy_hash` for a study made when ``gmacs`` was called ``gflops``), the same
objective directions and, when it times models, the same device.

Progress: the library prints nothing. `run_search(..., progress=...)` takes a factory
`progress(study)` of a context manager that yields an `update()` function, called after every
trial (and every second with several workers); `status(message)` is a context manager shown
while the published models are timed (once per study). The command line passes rich ones
(`twins_nas.cli.display`).
"""
from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import optuna

from ..atomic import ensure_dir
from ..config import ConfigError
from ..errors import ArgText
from ..hardware import cpu_cores
from ..presets import presets_for
from ..profile.backends import DEFAULT_BACKEND
from ..sizes import format_size
from .evaluate.accuracy_source import AccuracySource
from .evaluate.objective import measured_metrics, needed_metrics, needs_proxy_data, time_model
from .evaluate.status import StopReason
from .latency.predictor import MEASURED, PREDICTED, images_per_second, latency_source, space_predictor
from .proxy.data import load_proxy_data
from .report.export import Picked, export_study
from .run.provenance import library_versions, resolve_search_device
from .run.replication import Replicator, replication_summary, replications
from .run.rungs import Promoter, promotion_summary, rung_settings
from .run.samplers import make_sampler
from .run.settings import SearchSettings
from .run.standalone import StandaloneTrainer, standalone_records, standalone_summary
from .run.storage import describe_storage, open_storage, resolve_storage, study_lock
from .run.trials import count_trials, error_line, fail_dead_trials, on_stale_trial, run_worker
from .run.workers import load_scorer, make_evaluator, prepare_process, quiet_optuna, run_worker_processes, sampler_seed
from .space.measure import MeasureBudget
from .space.metrics import TIMED_METRICS, recorded_spellings
from .space.space import SearchSpace

ProgressFactory = Callable[[optuna.Study], AbstractContextManager[Callable[[], None]]]


@dataclass
class SearchOutcome:
    """How a search ended (`stopped`, `message`), the trials it holds, the report files it wrote
    and the notes on the way."""

    study_name: str
    storage: str
    finished: int           # COMPLETE trials in the study
    target: int
    counts: dict            # status -> number of trials in the study
    stopped: StopReason
    message: str = ""
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    best: Picked | None = None  # the trial in best_config.json (None: no report, or no feasible trial)


SourcedSpace = tuple[SearchSpace, AccuracySource | None, dict | None, list[str]]


def _with_accuracy_source(space: SearchSpace, settings: SearchSettings) -> SourcedSpace:
    """With ``settings.supernet``: the space without replicates (inherited scores are
    deterministic: a replicate would be the same number), the loaded scorer (this process's
    trials use it: it is loaded once), what the study records of the
    supernet (`accuracy_source_record`), and a note; a space whose halving trains rungs, or
    that does not name accuracy, or a supernet of another space: one line. Without: as given."""
    if settings.supernet is None:
        return space, None, None, []
    if "accuracy" not in needed_metrics(space):
        raise ConfigError(lambda name: f"{name('supernet')} scores accuracy, which the space's objectives and "
                          "constraints do not name", field="supernet")
    if space.halving.rungs > 1:
        raise ConfigError(lambda name: f"{name('supernet')}: halving.rungs={space.halving.rungs} trains the best "
                          f"again at higher rungs, which inherited scores do not have; set halving.rungs=1",
                          field="supernet")
    scorer = load_scorer(space, settings)
    record = {"name": "supernet", "path": str(Path(settings.supernet).resolve()),
              **(scorer.identity() if hasattr(scorer, "identity") else {})}
    notes = []
    if space.replicates.count > 1:
        notes.append("replicates: none with a supernet (a config's inherited score is the same every time)")
        space = space.model_copy(update={"replicates": space.replicates.model_copy(update={"count": 1})})
    return space, scorer, record, notes


def _check_accuracy_source(where: str, old: dict | None, new: dict | None) -> None:
    """One line when a resumed study would score accuracy another way than its trials did
    (trained proxies vs a supernet's inherited weights, or another supernet or training of it)."""
    def how(d: dict | None, past: bool) -> str:
        if d is None:
            return "trained a proxy per trial" if past else "would train a proxy per trial"
        verb = "scored" if past else "would score"
        return (f"{verb} the inherited weights of the supernet in {d.get('path')} ({d.get('steps')} steps, "
                f"{d.get('val_samples')} validation images)")

    def key(d: dict | None) -> tuple:
        return (d or {}).get("checkpoint_sha256"), (d or {}).get("val_samples")

    if (old is None) != (new is None) or key(old) != key(new):
        raise ConfigError(lambda name: f"{where} {how(old, True)}; this run {how(new, False)} (not comparable): "
                          f"resume it as it was made, or choose another {name('study_name')} / {name('out_dir')}",
                          field="supernet")


def open_study(space: SearchSpace, settings: SearchSettings, spec: str, sampler: optuna.samplers.BaseSampler,
               device_label: str, threads: int, accuracy_source: dict | None = None) -> tuple[optuna.Study, bool]:
    """Create the study, or load it and check it was made for the same space and hardware.
    Returns (study, created). Under the study's lock: processes that start at the same moment
    create it once."""
    storage = open_storage(spec, settings.heartbeat, on_stale=on_stale_trial)
    directions = list(space.objectives.values())
    with study_lock(spec, settings.study_name):
        try:
            study = optuna.load_study(study_name=settings.study_name, storage=storage, sampler=sampler)
        except KeyError:
            study = optuna.create_study(study_name=settings.study_name, storage=storage, sampler=sampler,
                                        directions=directions, load_if_exists=True)
        created = not study.user_attrs.get("space_hash")
        if created:
            _write_study_attrs(study, space, settings, device_label, threads)
            if accuracy_source is not None:
                study.set_user_attr("accuracy_source", accuracy_source)
    where = f"study {settings.study_name!r} in {describe_storage(spec)}"
    if created:
        return study, True
    ua = study.user_attrs
    _check_speed_source(where, (ua.get("measure") or {}).get("speed"), speed_source(space), space)
    _check_accuracy_source(where, ua.get("accuracy_source"), accuracy_source)
    if ua.get("space_hash") not in (space.hash, space.legacy_hash):
        if "geometry" not in ((ua.get("space") or {}).get("proxy") or {"geometry": 0}):
            raise ConfigError(lambda name: f"{where} trained the older proxy (windows and k clamped to its maps): "
                              f"continue it with {name('overrides', 'proxy.geometry=clamp', 'proxy.patch_size=null')}, "
                              f"or choose another {name('study_name')} / {name('out_dir')}", field="overrides")
        old_hash = str(ua.get("space_hash"))[:12]
        raise ConfigError(lambda name: f"{where} was created from another space ({ua.get('space_source')}, hash "
                          f"{old_hash}) than {space.source} with these overrides ({name('overrides')}, hash "
                          f"{space.hash[:12]}); continue it with the same space and overrides, or choose another "
                          f"{name('study_name')} / {name('out_dir')}", field="overrides")
    if [d.name.lower() for d in study.directions] != directions:
        raise ConfigError(f"{where} has objective directions {[d.name.lower() for d in study.directions]}, "
                          f"the space {directions}")
    old = (ua.get("measure") or {}).get("device")
    if old and old != device_label and needed_metrics(space) & set(TIMED_METRICS):
        raise ConfigError(lambda name: f"{where} measured throughput on {old!r}; this run would measure on "
                          f"{device_label!r} (not comparable): use the same {name('device')} or another "
                          f"{name('study_name')}", field="device")
    return study, False


def speed_source(space: SearchSpace) -> dict[str, str | None]:
    """Where a study's speed (throughput, latency) comes from: the runtime, ``measured`` or
    ``predicted``, and for a prediction the latency table's sha256. A study never mixes two."""
    path = space.predictor_path
    return {"runtime": space.measure.runtime or DEFAULT_BACKEND, "source": latency_source(space),
            "table_sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest() if path is not None else None}


def _check_speed_source(where: str, old: dict | None, new: dict, space: SearchSpace) -> None:
    """One line when a resumed study would get its speed another way than its trials did
    (another runtime, measured vs predicted, another latency table); studies made before the
    record existed were timed eagerly."""
    if not needed_metrics(space) & set(TIMED_METRICS):
        return
    old = old or {"runtime": DEFAULT_BACKEND, "source": MEASURED, "table_sha256": None}

    def how(d: dict, verb: tuple[str, str]) -> str:
        if d.get("source") == PREDICTED:
            return f"{verb[0]} from a latency table (sha256 {str(d.get('table_sha256'))[:12]})"
        return f"{verb[1]} with runtime {d.get('runtime')!r}"

    if (old.get("runtime"), old.get("source"), old.get("table_sha256")) != \
            (new["runtime"], new["source"], new["table_sha256"]):
        raise ConfigError(lambda name: f"{where} {how(old, ('predicted its speed', 'measured its speed'))}; this "
                          f"run would {how(new, ('predict it', 'measure it'))} (not comparable): resume with the "
                          f"same measure.runtime / measure.predictor, or choose another {name('study_name')} / "
                          f"{name('out_dir')}", field="overrides")


def _write_study_attrs(study: optuna.Study, space: SearchSpace, settings: SearchSettings, device_label: str,
                      threads: int) -> None:
    """What a new study records: its space, objectives, seed, versions and how it measures."""
    attrs = dict(space=space.model_dump(mode="json"), space_hash=space.hash, space_source=space.source,
                 space_name=space.name, objectives=[[m, d] for m, d in space.objectives.items()],
                 constraints={m: b.model_dump() for m, b in space.constraints.items()},
                 seed=settings.seed, sampler=settings.sampler, versions=library_versions(),
                 created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 measure=dict(device=device_label, threads=threads, resolution=space.resolution,
                              batch_size=space.measure.batch_size, dtype=space.measure.dtype,
                              **({"size": list(space.measure_size)} if space.measure.size else {}),
                              **({"head": space.measure.head, "num_classes": space.measure.num_classes}
                                 if space.measure.head else {}),
                              speed=speed_source(space)))
    for k, v in attrs.items():
        study.set_user_attr(k, v)
    study.set_metric_names(list(space.objectives))  # Optuna's name for each objective value


def measure_presets(space: SearchSpace, device: str, budget: MeasureBudget) -> dict[str, dict]:
    """The six published models as the space measures its trials (size, head, batch, dtype,
    device; the space's classifier size): params, GMACs and, when the space times models,
    throughput: timed, or predicted from the space's latency table when it names one (a
    published model the table lacks gets no throughput: it is never timed on this machine
    beside predicted trials)."""
    timed = bool(needed_metrics(space) & set(TIMED_METRICS))
    predictor = space_predictor(space) if timed else None
    out = {}
    for name, cfg in presets_for(space.num_classes, space.in_chans).items():
        try:
            row: dict[str, float | str] = dict(measured_metrics(cfg, space))
            if timed and predictor is not None:
                ms = predictor.predict(cfg)
                row.update(throughput=images_per_second(space.measure.batch_size, ms), latency_ms=ms,
                           latency_source=PREDICTED)
            elif timed:
                rep = time_model(cfg, space, device, budget)
                row.update(throughput=rep.throughput, latency_ms=rep.latency_ms)
        except Exception as e:  # noqa: BLE001 (e.g. out of memory for the large ones on a small GPU)
            row = {"error": error_line(e)}
        out[name] = row
    return out


def _existing_trials(spec: str, study_name: str) -> int:
    with contextlib.suppress(KeyError):
        return len(optuna.load_study(study_name=study_name, storage=open_storage(spec)).get_trials(deepcopy=False))
    return 0


def _resume_notes(study: optuna.Study, created: bool, spec: str, device: str, threads: int, workers: int) -> list[str]:
    """Notes on the storage, and on how this run's measurements compare with the study's."""
    notes: list[str] = []
    if workers > 1 and spec.startswith("sqlite:"):
        notes.append(ArgText(lambda name: "SQLite with several worker processes may fail with 'database is "
                             f"locked'; a journal file ({name('storage')} study.journal) is safer"))
    old_threads = (study.user_attrs.get("measure") or {}).get("threads")
    if not created and device == "cpu" and old_threads not in (None, threads):
        notes.append(ArgText(lambda name: f"earlier trials were timed with {old_threads} CPU thread(s), these "
                             f"with {threads} ({name('workers')} {workers} on {cpu_cores()} cores): throughputs "
                             "are not quite comparable"))
    return notes


def _run_trials(study: optuna.Study, space: SearchSpace, settings: SearchSettings, spec: str, device: str,
                threads: int, deadline: float | None, progress: ProgressFactory | None,
                promoter: Promoter, scorer: AccuracySource | None = None) -> tuple[StopReason, str]:
    """Run trials in this process or in worker processes up to N; (how it stopped, message).
    `scorer`: the accuracy source this process loaded already (worker processes load their own)."""
    names = recorded_spellings(study.user_attrs.get("constraints") or {})
    lock = study_lock(spec, settings.study_name)
    try:
        with (progress(study) if progress else contextlib.nullcontext(lambda: None)) as update:
            if count_trials(study)["complete"] >= settings.trials:
                return StopReason.DONE, ""
            if settings.workers == 1:
                res = run_worker(study, make_evaluator(space, settings, device, names, scorer), settings.trials, lock,
                                 deadline, on_trial=update, after_complete=lambda: promoter.run(study))
                return res.status, res.message
            return run_worker_processes(space, settings, spec, device, threads, lock, deadline, study, names,
                                        on_poll=update)
    except KeyboardInterrupt:
        fail_dead_trials(study)
        return StopReason.INTERRUPTED, "interrupted"


def _train_further(study: optuna.Study, trainer: Replicator, stopped: StopReason, message: str,
                   status: Callable[[str], AbstractContextManager] | None, deadline: float | None,
                   what: str) -> tuple[StopReason, str]:
    """Once every trial is done, the further trainings of `trainer` (replicates near the front,
    the top of an inherited front stand-alone) under the status line `what`; Ctrl-C stops
    them (the study keeps what is done). Returns how the search stopped, and its message."""
    if stopped == StopReason.DONE and trainer.active:
        try:
            with (status or contextlib.nullcontext)(what):
                trainer.run(study, deadline)
        except KeyboardInterrupt:
            return StopReason.INTERRUPTED, "interrupted"
    return stopped, message


def run_search(space: SearchSpace, settings: SearchSettings, export: bool = True,
               progress: ProgressFactory | None = None,
               status: Callable[[str], AbstractContextManager] | None = None) -> SearchOutcome:
    """Run (or continue) a search until `settings.trials` trials are finished, then write the
    report (see `export_study`). When its database server stays unreachable the outcome says
    ``stopped="storage"`` (no counts, no report: the same call afterwards continues). Raises
    ConfigError for bad input (one line). `progress` and `status`: see the module docstring."""
    quiet_optuna()
    space_predictor(space)  # a latency table that does not cover the space: one line, before any trial
    space, scorer, source, source_notes = _with_accuracy_source(space, settings)
    deadline = time.time() + settings.timeout if settings.timeout else None
    device, device_label = resolve_search_device(settings.device)
    threads = settings.threads or max(1, cpu_cores() // settings.workers)
    spec = resolve_storage(settings.storage, settings.out_dir, settings.workers)
    prepare_process(threads)
    if needs_proxy_data(space):  # a missing data set is an input error, before the study is written
        load_proxy_data(space.proxy, seed=settings.seed)  # cached for this process's evaluator
    promoter = Promoter(space, settings.seed, device, study_lock(spec, settings.study_name))
    if promoter.active:  # the top rung's images exist (a missing one is an input error too)
        load_proxy_data(rung_settings(space.proxy, space.halving.eta, space.halving.rungs - 1), settings.seed)

    seed = sampler_seed(settings.seed, 0, _existing_trials(spec, settings.study_name))
    study, created = open_study(space, settings, spec, make_sampler(settings.sampler, seed, settings.trials),
                                device_label, threads, source)
    ensure_dir(settings.out_dir)  # after the storage opened: a bad one writes nothing
    notes = source_notes + _resume_notes(study, created, spec, device, threads, settings.workers)
    dead = fail_dead_trials(study)
    if dead:
        notes.append(f"marked {len(dead)} trial(s) left running by a dead process as failed: "
                     f"{', '.join(map(str, dead))}")
    if settings.presets and "presets" not in study.user_attrs:
        with (status or contextlib.nullcontext)(
                f"measuring the published Twins models at {format_size(space.measure_size)} px, "
                f"batch {space.measure.batch_size} "
                f"on {device_label} (once per study) ..."):
            study.set_user_attr("presets", measure_presets(space, device, settings.budget))

    stopped, message = _run_trials(study, space, settings, spec, device, threads, deadline, progress, promoter,
                                   scorer)
    if stopped == StopReason.STORAGE:  # the database server is gone: nothing more can be read or written
        return SearchOutcome(study_name=settings.study_name, storage=describe_storage(spec), finished=-1,
                             target=settings.trials, counts={}, stopped=stopped, message=message, notes=notes)
    if stopped == StopReason.DONE and promoter.active:
        try:
            with (status or contextlib.nullcontext)("last promotion round (training the best at higher rungs) ..."):
                promoter.run(study, final=True)
        except KeyboardInterrupt:
            stopped, message = StopReason.INTERRUPTED, "interrupted"
    if promoter.active:
        notes.append(promotion_summary(study))
    replicator = Replicator(space, settings.seed, device, study_lock(spec, settings.study_name), settings.trials)
    study.set_user_attr("replicates", space.replicates.model_dump(mode="json"))
    stopped, message = _train_further(study, replicator, stopped, message, status, deadline,
                                      f"training replicates near the front (up to {space.replicates.count} per "
                                      f"architecture, at most {replicator.limit} trainings) ...")
    if replicator.active or replications(study):
        notes.append(replication_summary(study))
    trainer = StandaloneTrainer(space, settings.seed, device, study_lock(spec, settings.study_name),
                                settings.retrain if scorer is not None else 0, settings.retrain_seeds)
    if scorer is not None:
        study.set_user_attr("standalone", {"top": settings.retrain, "seeds": settings.retrain_seeds})
    stopped, message = _train_further(study, trainer, stopped, message, status, deadline,
                                      f"training the top {settings.retrain} of the inherited front stand-alone "
                                      f"({settings.retrain_seeds} seed(s) each) ...")
    if trainer.active or standalone_records(study):
        notes.append(standalone_summary(study))
    counts = count_trials(study)
    outcome = SearchOutcome(study_name=settings.study_name, storage=describe_storage(spec),
                            finished=counts["complete"], target=settings.trials, counts=counts, stopped=stopped,
                            message=message, notes=notes)
    if export and study.get_trials(deepcopy=False):
        rep = export_study(study, settings.out_dir, pick=settings.pick, storage=spec, png=settings.png, strict=False)
        outcome.files, outcome.notes, outcome.best = rep.files, notes + rep.notes, rep.best
    return outcome
