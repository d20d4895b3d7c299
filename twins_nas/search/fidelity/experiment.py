"""How well does each cheap scorer rank architectures as a longer training does?

`run_fidelity(space, reference, out_dir, ...)` draws `archs` architectures of a space (those
its closed-form constraints accept) plus `pairs` controlled pairs: two configs of the space
that differ only in one window, GSA ratio k, L/G pattern or sub-sampling function of one stage.
Each architecture is scored by every scorer:

* ``params`` and ``gmacs`` (closed form), the zero-cost scores (``naswot``, ``synflow``,
  full-size network at the space's resolution);
* ``accuracy``: the proxy training the search's accuracy objective runs (the space's
  ``proxy:``; with ``halving.rungs`` > 1 also ``accuracy@rung1`` ... at eta**r x the budget);
* ``supernet`` (with a trained supernet of the space, `supernet`): the accuracy of the
  architecture's subnet with the weights it inherits (`twins_nas.supernet`), no training;
* ``reference``: the same proxy network trained with the `reference` settings (longer), the
  truth the others are measured against.

Every scorer that depends on a seed (the trainings, and the zero-cost scores through the
network's initialisation; not params, GMACs nor the supernet's deterministic score) is
computed with `seeds` seeds on the first `seeded` random archs
(``params`` and ``gmacs`` depend on none): its ``seed_tau`` (Kendall tau between two seeds'
orders, the mean over seed pairs with more than two) and ``seed_sd`` (mean SD across seeds)
say how reliable it is (`reliability`).

Results go one per line to ``results.jsonl`` as they come (a killed run continues where it
stopped, with the same draw: ``plan.json``), and `summarize` turns them into ``fidelity.json``:
per scorer Kendall tau-b and Spearman rho against the reference over the random architectures
with a bootstrap 95 % interval of tau, tau corrected for the attenuation by both sides' seed
noise, the share of controlled pairs it orders as the reference does (a tie of the scorer
counts half: it cannot tell the pair apart) and Kendall tau against the stand-alone proxy
(``accuracy``, the mean over its seeds: how far a cheap scorer stands in for the search's own
training); and whether the reference separates the
architectures at all (`reliability.Separation`).
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from scipy import stats

from ...atomic import atomic_path, ensure_dir, write_text
from ...config import ArchConfig, ConfigError
from ...figures import FigureFiles, write_figure
from ...hardware import cpu_cores
from ...sizes import Resolution
from ..evaluate.accuracy_source import AccuracySource, load_accuracy_source
from ..evaluate.objective import constraint_values, measured_metrics
from ..evaluate.zero_cost import NASWOT_BATCH, SCORES, scoring_batch, zero_cost_scores
from ..proxy.data import load_proxy_data
from ..proxy.settings import ProxySettings
from ..proxy.train import train_proxy
from ..run.rungs import rung_settings
from ..space.space import SearchSpace, load_space
from .reliability import Separation, corrected_tau, kendall_tau, seed_sd, seed_snr, seed_tau, separation

PLAN_VERSION = 1
CHEAP_SCORERS = ("params", "gmacs")   # closed form
SUPERNET = "supernet"                 # a trained supernet's inherited weights
DETERMINISTIC = (*CHEAP_SCORERS, SUPERNET)  # the scorers that depend on no seed
ZERO_COST_SEED_STEP = 1000             # zero-cost seed s initialises the network with seed + 1000 s
PAIR_FIELDS = ("window", "sr_ratio", "pattern", "subsample")
BOOTSTRAP = 1000


@dataclass(frozen=True)
class Job:
    arch: str
    scorer: str
    seed: int
    settings: str = ""   # digest of the proxy settings a trained scorer used ("" otherwise)


@dataclass(frozen=True)
class ScorerFidelity:
    """How one scorer ranks the random architectures against the reference (Kendall tau-b with
    its bootstrap 95 % interval, Spearman rho; NaN where undefined), the share of controlled
    pairs it orders as the reference does, and its own seed noise over the seeded archs:
    `seed_tau` (Kendall tau between two seeds' orders, the mean over seed pairs with more than
    two) and `seed_sd` (mean SD across seeds, in the scorer's units: accuracies as fractions);
    1 and 0 for params, gmacs and the supernet, which depend on no seed. `kendall_tau_corrected`: tau / sqrt(
    seed_tau x reference seed_tau) clipped to [-1, 1], a correction for attenuation (what tau
    would be without seed noise on either side), not a measurement; NaN when a reliability is
    unknown or <= 0. `kendall_tau_vs_proxy`: Kendall tau-b against the stand-alone proxy
    ``accuracy`` (the mean over its seeds) over the random architectures (NaN for ``accuracy``
    itself). `seed_snr`: the variance of the architectures' true scores over one score's seed
    variance (`reliability.seed_snr`; NaN for the scorers that depend on no seed) and
    `snr_per_minute` that over the minutes one score takes: the separation a minute of this
    scorer buys, what data sets and budgets are chosen by."""

    kendall_tau: float
    spearman_rho: float
    tau_ci95: list[float]
    pair_agreement: float
    n_archs: int
    n_pairs: int
    seed_tau: float
    seed_sd: float
    kendall_tau_corrected: float
    kendall_tau_vs_proxy: float = math.nan
    seed_snr: float = math.nan
    snr_per_minute: float = math.nan


@dataclass(frozen=True)
class ReferenceFidelity:
    """The reference training: its proxy settings, its budget as a multiple of the proxy's, and
    its seed noise over `seeded_archs` archs: `seed_spread_mean` and `seed_sd` (the same number:
    mean SD across seeds, an accuracy as a fraction), `seed_tau` (Kendall tau between two seeds'
    orders, the mean over seed pairs with more than two) and `seed_snr` (as a scorer's)."""

    settings: dict[str, Any]
    budget_x: float
    seed_spread_mean: float | None
    seed_tau: float
    seeded_archs: int
    seed_sd: float
    seed_snr: float = math.nan


@dataclass(frozen=True)
class JobCount:
    """Scores computed of those the plan asks for."""

    done: int
    total: int


@dataclass
class FidelitySummary:
    """The fidelity report (fidelity.json is `to_dict()`): per scorer its agreement with the
    reference, per architecture and pair its scores, the reference, whether the reference
    separates the architectures (`Separation`), the space, the mean seconds per score of each
    scorer, and how much of the plan is done. `summary["key"]` reads a field."""

    default_scorer: str
    scorers: dict[str, ScorerFidelity]
    archs: list[dict[str, Any]]     # id, kind, config, scores, reference_seeds, reference_spread
    pairs: list[dict[str, Any]]     # the plan's pair, a_scores, b_scores, identical
    reference: ReferenceFidelity
    separation: Separation
    space: dict[str, Any]
    mean_seconds: dict[str, float]
    complete: bool | None = None
    jobs: JobCount | None = None
    notes: list[str] = field(default_factory=list)  # what was skipped and why (not a result)

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain data (NaN kept; fidelity.json writes it as null), notes left out."""
        data = asdict(self)
        del data["notes"]
        return data

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


@dataclass(frozen=True)
class FidelitySetup:
    """What a fidelity run measures: the space, the reference proxy settings and the overrides
    they came from, and the output folder."""

    space: SearchSpace
    reference: ProxySettings
    reference_overrides: list[str]
    out_dir: Path


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def draw_key(space: SearchSpace) -> str:
    """What the draw of architectures depends on: the space's choices, resolution and
    constraints (not its proxy or objectives, so a run survives a change of the proxy)."""
    d = space.model_dump(mode="json")
    return _digest({k: d[k] for k in ("stages", "subsample", "resolution", "num_classes", "in_chans", "constraints")})


def accuracy_scorers(space: SearchSpace) -> list[str]:
    """``accuracy`` (rung 0) and ``accuracy@rungR`` for every further rung of the space."""
    return ["accuracy"] + [f"accuracy@rung{r}" for r in range(1, space.halving.rungs)]


def default_scorer(space: SearchSpace) -> str:
    """The scorer behind the search's accuracy objective on the front: the highest rung."""
    return accuracy_scorers(space)[-1]


def _feasible(space: SearchSpace, cfg: ArchConfig) -> bool:
    cheap = {k: v for k, v in space.constraints.items() if k in ("params_m", "gmacs")}
    return all(v <= 0 for v in constraint_values(measured_metrics(cfg, space), cheap).values())


def attention_geometry(cfg: ArchConfig, resolution: Resolution) -> tuple:
    """What each block attends over at `resolution`, per stage: ("L", window) or ("G", k,
    sub-sampler). An L block whose window covers its whole map is global attention over every
    token, as a G block with k = 1 is: both are ("G", (1, 1), None). Two configs with the same
    geometry differ in no window, k, pattern or sub-sampling that the network can feel."""
    key = []
    for s, (h, w) in zip(cfg.stages, cfg.stage_sizes(resolution)):
        blocks: list[tuple] = []
        for kind in s.block_types:
            if kind == "L":
                win = tuple(s.lsa_window((h, w)))
                blocks.append(("G", (1, 1), None) if win == (h, w) else ("L", win))
            else:
                k = (min(s.sr_pair[0], h), min(s.sr_pair[1], w))
                blocks.append(("G", k, s.subsample if k != (1, 1) else None))
        key.append(tuple(blocks))
    return tuple(key)


def _variants(space: SearchSpace, cfg: ArchConfig, field: str, stage: int) -> list[tuple[ArchConfig, object]]:
    """Configs of the space differing from `cfg` only in `field` of `stage` (the model-wide
    sub-sampling choice changes every stage that takes it), as different full-size networks."""
    d = cfg.model_dump(mode="json")
    st = space.stages[stage]
    choices = cast("list[Any]", {"window": st.window or [], "sr_ratio": st.sr_ratio, "pattern": st.pattern,
                                 "subsample": st.subsample or space.subsample}[field])
    out = []
    for c in choices:
        stages = [dict(s) for s in d["stages"]]
        targets = [stage] if field != "subsample" or st.subsample is not None else [
            i for i, s in enumerate(space.stages) if s.subsample is None]
        for i in targets:
            stages[i][field] = list(c) if isinstance(c, tuple) else c
            if field == "pattern" and "L" in c and stages[i]["window"] is None:
                assert st.window is not None  # validated: required by a pattern choice with L
                stages[i]["window"] = list(st.window[0])
        try:
            other = ArchConfig(**dict(d, stages=stages))
        except ConfigError:
            continue
        if (space.contains(other) and _feasible(space, other)
                and attention_geometry(other, space.input_size) != attention_geometry(cfg, space.input_size)):
            out.append((other, c))
    return out


def draw_plan(space: SearchSpace, archs: int, pairs: int, seed: int) -> dict:
    """The architectures to score: `archs` distinct feasible random configs, then `pairs`
    controlled pairs cycling over the fields (window, sr_ratio, pattern, subsample) and stages."""
    rng = random.Random(seed)
    plan: dict = {"archs": [], "pairs": []}
    seen: set[str | frozenset[str]] = set()
    for _ in range(200 * max(1, archs)):
        if len(plan["archs"]) >= archs:
            break
        cfg = space.random_config(rng)
        key: str | frozenset[str] = cfg.model_dump_json()
        if key not in seen and _feasible(space, cfg):
            seen.add(key)
            arch_id = f"a{len(plan['archs']):03d}"
            plan["archs"].append(dict(id=arch_id, kind="random", config=cfg.model_dump(mode="json")))
    if len(plan["archs"]) < archs:
        found = len(plan["archs"])
        raise ConfigError(lambda name: f"{space.source}: only {found} distinct architectures meet the constraints; "
                          f"ask for fewer {name('archs')}", field="archs")
    slots = [(f, i) for f in PAIR_FIELDS for i in range(len(space.stages))]
    rng.shuffle(slots)
    slots.sort(key=lambda s: PAIR_FIELDS.index(s[0]))       # fields in turn, stages shuffled
    order = [s for k in range(len(space.stages)) for s in slots[k::len(space.stages)]]
    tries = 0
    while len(plan["pairs"]) < pairs and tries < 400 * max(1, pairs):
        field, stage = order[tries % len(order)]
        tries += 1
        base = space.random_config(rng)
        if not _feasible(space, base):
            continue
        variants = _variants(space, base, field, stage)
        if not variants:
            continue
        other, value = rng.choice(variants)
        key = frozenset((base.model_dump_json(), other.model_dump_json()))
        if key in seen:
            continue
        seen.add(key)
        j = len(plan["pairs"])
        ids = (f"p{j:03d}a", f"p{j:03d}b")
        for pid, cfg in zip(ids, (base, other)):
            plan["archs"].append(dict(id=pid, kind="pair", config=cfg.model_dump(mode="json")))
        plan["pairs"].append(dict(id=f"p{j:03d}", a=ids[0], b=ids[1], field=field, stage=stage))
    if len(plan["pairs"]) < pairs:
        found = len(plan["pairs"])
        raise ConfigError(lambda name: f"{space.source}: found only {found} controlled pairs (the space has few "
                          f"window / k / pattern / sub-sampling choices); ask for fewer {name('pairs')}",
                          field="pairs")
    return plan


def jobs_of(plan: dict, scorers: dict[str, str], seeds: int, seeded: int) -> list[Job]:
    """Every (arch, scorer, seed) to compute, scorer by scorer in the order given (the run uses:
    closed form, zero-cost, rung 0, the reference, higher rungs), so that a partial run has
    whole columns; every scorer but the closed-form ones with `seeds` seeds on the first
    `seeded` random archs. `scorers`: name -> digest of its proxy settings ("" for the
    untrained ones)."""
    random_ids = [a["id"] for a in plan["archs"] if a["kind"] == "random"]
    multi = set(random_ids[:seeded])
    out: list[Job] = []
    for scorer in scorers:
        for a in plan["archs"]:
            n = seeds if (a["id"] in multi and scorer not in DETERMINISTIC) else 1
            out.extend(Job(a["id"], scorer, s, scorers[scorer]) for s in range(n))
    return out


def read_results(path: Path) -> dict[Job, dict]:
    """The results recorded so far (a line cut by a kill is ignored)."""
    out: dict[Job, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
                out[Job(r["arch"], r["scorer"], r["seed"], r.get("settings", ""))] = r
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return out


class _Scorer:
    """Computes one job; proxy data and the NASWOT minibatch loaded once; `supernet`: the
    loaded accuracy source of the ``supernet`` scorer."""

    def __init__(self, space: SearchSpace, reference: ProxySettings, seed: int,
                 supernet: AccuracySource | None = None) -> None:
        self.space, self.reference, self.seed, self.supernet = space, reference, seed, supernet
        self.choices = space.geometry_choices()
        self._images: torch.Tensor | None = None

    def settings_of(self, scorer: str) -> ProxySettings:
        if scorer == "reference":
            return self.reference
        rung = int(scorer.split("@rung")[1]) if "@rung" in scorer else 0
        return rung_settings(self.space.proxy, self.space.halving.eta, rung)

    def __call__(self, cfg: ArchConfig, job: Job) -> float:
        sp = self.space
        if job.scorer in CHEAP_SCORERS:
            m = measured_metrics(cfg, sp)
            return m["params_m"] if job.scorer == "params" else m["gmacs"]
        if job.scorer == SUPERNET:
            assert self.supernet is not None  # only planned with one
            return float(self.supernet.score(cfg))
        if job.scorer in SCORES:
            if self._images is None:
                data = load_proxy_data(sp.proxy, seed=self.seed)
                self._images = scoring_batch(data, NASWOT_BATCH, sp.input_size, sp.in_chans)
            init = self.seed + ZERO_COST_SEED_STEP * job.seed   # seed 0: the run's seed
            return zero_cost_scores(cfg, [job.scorer], self._images, sp.input_size, seed=init)[job.scorer]
        settings = self.settings_of(job.scorer)
        data = load_proxy_data(settings, seed=self.seed)
        res = train_proxy(cfg, settings, data, seed=self.seed * 1000 + job.seed, resolution=sp.input_size,
                          choices=self.choices, every_epoch=False)
        return float(res.accuracy)


def open_plan(space: SearchSpace, reference: ProxySettings, out_dir: Path, archs: int = 30, pairs: int = 10,
              seeds: int = 2, seeded: int = 10, seed: int = 0) -> dict:
    """The plan of the run in `out_dir`: drawn and written (plan.json) on the first call, read
    back on the next ones; ConfigError when `out_dir` holds a run with other settings."""
    out_dir = Path(out_dir)
    ensure_dir(out_dir)
    settings = dict(draw=draw_key(space), reference=reference.model_dump(mode="json", exclude={"data_root"}),
                    archs=archs, pairs=pairs, seeds=seeds, seeded=seeded, seed=seed)
    plan_path = out_dir / "plan.json"
    if plan_path.is_file():
        plan = json.loads(plan_path.read_text())
        if plan.get("settings") != settings:
            raise ConfigError(lambda name: f"{out_dir}: holds a fidelity run with other settings (the space's "
                              f"choices or constraints, {name('reference')}, {name('archs')}, {name('pairs')}, "
                              f"{name('seeds')} or {name('seed')}); continue it with the same ones or use another "
                              f"{name('out_dir')}", field="out_dir")
        return plan
    plan = dict(version=PLAN_VERSION, settings=settings, space=space.model_dump(mode="json"),
                **draw_plan(space, archs, pairs, seed))
    write_text(plan_path, json.dumps(plan, indent=1) + "\n")
    return plan


def run_fidelity(space: SearchSpace, reference: ProxySettings, out_dir: Path, archs: int = 30, pairs: int = 10,
                 seeds: int = 2, seeded: int = 10, seed: int = 0,
                 progress: Callable[[int, int, str], None] | None = None, png: bool = True,
                 time_limit: float | None = None, supernet: AccuracySource | None = None) -> FidelitySummary:
    """Score the plan's architectures (continuing `out_dir` when it holds the same plan) and
    write fidelity.json / fidelity.csv; returns the summary (its `notes`: what was skipped and
    why, e.g. fidelity.png without a Chromium). `progress(done, total, what)`. `supernet`: a
    loaded supernet of the space (`load_accuracy_source`) adds the ``supernet`` scorer (its
    scores are kept per checkpoint: another training of it scores again).
    After `time_limit` seconds no new job is started (0: only the report of what is done);
    on Ctrl-C the report of what is done is written too, and the interrupt goes on."""
    out_dir = Path(out_dir)
    plan = open_plan(space, reference, out_dir, archs, pairs, seeds, seeded, seed)
    scorer = _Scorer(space, reference, seed, supernet)
    rungs = accuracy_scorers(space)   # the reference before the higher rungs: without it no figure exists
    names = (list(CHEAP_SCORERS) + list(SCORES) + ([SUPERNET] if supernet is not None else []) + rungs[:1]
             + ["reference"] + rungs[1:])
    scorers = {s: (_digest(scorer.settings_of(s).model_dump(mode="json", exclude={"data_root"}))
                   if s == "reference" or s.startswith("accuracy") else "") for s in names}
    if supernet is not None:
        scorers[SUPERNET] = _digest(supernet.identity() if hasattr(supernet, "identity") else {})
    jobs = jobs_of(plan, scorers, seeds, seeded)
    results_path = out_dir / "results.jsonl"
    done = read_results(results_path)
    configs = {a["id"]: ArchConfig(**a["config"]) for a in plan["archs"]}
    todo = [j for j in jobs if j not in done]
    start = time.perf_counter()
    try:
        _score_jobs(todo, len(jobs), configs, scorer, results_path, done, start, time_limit, progress)
    finally:  # finished, out of time or interrupted: the report of what is done so far
        current = {j: done[j] for j in jobs if j in done}   # results of other proxy settings are not used
        summary = summarize(plan, current, names, default_scorer(space), space, reference)
        summary.complete = len(current) == len(jobs)
        summary.jobs = JobCount(done=len(current), total=len(jobs))
        write_outputs(summary, out_dir, png=png)
    return summary


def _score_jobs(todo: list[Job], total: int, configs: dict[str, ArchConfig], scorer: _Scorer, results_path: Path,
                done: dict[Job, dict], start: float, time_limit: float | None,
                progress: Callable[[int, int, str], None] | None) -> None:
    """Compute `todo` in order, appending each result to `results_path` as it comes; stops
    before a job once `time_limit` seconds have passed since `start`."""
    with results_path.open("a") as f:
        if results_path.stat().st_size and not results_path.read_bytes().endswith(b"\n"):
            f.write("\n")  # a line cut by a kill stays alone on its line (and is ignored)
        for i, job in enumerate(todo):
            if time_limit is not None and time.perf_counter() - start >= time_limit:
                return
            if progress is not None:
                progress(total - len(todo) + i, total, f"{job.scorer} {job.arch} seed {job.seed}")
            t0 = time.perf_counter()
            error: str | None
            try:
                value = scorer(configs[job.arch], job)
            except Exception as e:  # noqa: BLE001 (one architecture that fails must not stop the run)
                value, error = math.nan, (str(e).strip().splitlines() or [type(e).__name__])[0]
            else:
                error = None
            rec = dict(arch=job.arch, scorer=job.scorer, seed=job.seed, settings=job.settings, value=value,
                       seconds=round(time.perf_counter() - t0, 3), **({"error": error} if error else {}))
            f.write(json.dumps(rec) + "\n")
            f.flush()
            done[job] = rec


def _budget(p: ProxySettings) -> int:
    return p.train_samples * p.epochs


def summarize(plan: dict, results: dict[Job, dict], scorers: list[str], default: str, space: SearchSpace,
              reference: ProxySettings) -> FidelitySummary:
    """The report of `results` (see the module docstring); `complete` and `jobs` are left unset."""
    values: dict[str, dict[str, list[float]]] = {}
    by_seed: dict[str, dict[str, dict[int, float]]] = {}    # scorer -> random arch -> seed -> value
    random_ids = [a["id"] for a in plan["archs"] if a["kind"] == "random"]
    for job, rec in results.items():
        v = rec.get("value")
        if v is not None and math.isfinite(v):
            values.setdefault(job.arch, {}).setdefault(job.scorer, []).append(v)
            if job.arch in random_ids:
                by_seed.setdefault(job.scorer, {}).setdefault(job.arch, {})[job.seed] = v
    noise = {s: (1.0, 0.0) if s in DETERMINISTIC else (seed_tau(by_seed.get(s, {})), seed_sd(by_seed.get(s, {})))
             for s in scorers}                               # scorer -> (seed tau, seed SD)
    ref_tau = noise["reference"][0] if "reference" in noise else math.nan
    mean = {a: {s: float(np.mean(v)) for s, v in d.items()} for a, d in values.items()}
    archs = []
    for a in plan["archs"]:
        ref = values.get(a["id"], {}).get("reference", [])
        archs.append(dict(id=a["id"], kind=a["kind"], config=a["config"],
                          scores={s: mean.get(a["id"], {}).get(s) for s in scorers},
                          reference_seeds=ref, reference_spread=float(np.std(ref, ddof=1)) if len(ref) > 1 else None))
    configs = {a["id"]: ArchConfig.from_dict(a["config"]) for a in plan["archs"] if a["kind"] == "pair"}
    identical = {p["id"] for p in plan["pairs"]  # drawn before the draw skipped them: not counted
                 if attention_geometry(configs[p["a"]], space.input_size)
                 == attention_geometry(configs[p["b"]], space.input_size)}
    seconds: dict[str, float] = {}
    counts: dict[str, int] = {}
    for job, rec in results.items():
        seconds[job.scorer] = seconds.get(job.scorer, 0.0) + rec.get("seconds", 0.0)
        counts[job.scorer] = counts.get(job.scorer, 0) + 1
    mean_seconds = {s: seconds.get(s, 0.0) / max(1, counts.get(s, 0)) for s in scorers}
    snr = {s: math.nan if s in DETERMINISTIC else seed_snr(by_seed.get(s, {})) for s in scorers}
    rng = np.random.default_rng(0)
    out_scorers = {}
    for s in scorers:
        if s == "reference":
            continue
        ids = [i for i in random_ids if s in mean.get(i, {}) and "reference" in mean.get(i, {})]
        x = np.array([mean[i][s] for i in ids])
        y = np.array([mean[i]["reference"] for i in ids])
        tau = kendall_tau(x, y)
        rho = float(stats.spearmanr(x, y).statistic) if not math.isnan(tau) else math.nan
        boots = []
        if not math.isnan(tau):
            for _ in range(BOOTSTRAP):
                k = rng.integers(0, len(ids), len(ids))
                t = kendall_tau(x[k], y[k])
                if not math.isnan(t):
                    boots.append(t)
        ci = [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))] if boots else [math.nan] * 2
        both = [i for i in random_ids if s in mean.get(i, {}) and "accuracy" in mean.get(i, {})]
        vs_proxy = (kendall_tau(np.array([mean[i][s] for i in both]), np.array([mean[i]["accuracy"] for i in both]))
                    if s != "accuracy" else math.nan)
        agree = []
        for p in plan["pairs"]:
            if p["id"] in identical:
                continue
            ma, mb = mean.get(p["a"], {}), mean.get(p["b"], {})
            if s in ma and s in mb and "reference" in ma and "reference" in mb and ma["reference"] != mb["reference"]:
                ref_order = np.sign(ma["reference"] - mb["reference"])
                got = np.sign(ma[s] - mb[s])
                agree.append(0.5 if got == 0 else float(got == ref_order))
        out_scorers[s] = ScorerFidelity(kendall_tau=tau, spearman_rho=rho, tau_ci95=ci,
                                        pair_agreement=float(np.mean(agree)) if agree else math.nan,
                                        n_archs=len(ids), n_pairs=len(agree), seed_tau=noise[s][0],
                                        seed_sd=noise[s][1],
                                        kendall_tau_corrected=corrected_tau(tau, noise[s][0], ref_tau),
                                        kendall_tau_vs_proxy=vs_proxy, seed_snr=snr[s],
                                        snr_per_minute=(snr[s] / (mean_seconds[s] / 60) if mean_seconds[s] > 0
                                                        else math.nan))
    pairs = []
    for p in plan["pairs"]:
        ma, mb = mean.get(p["a"], {}), mean.get(p["b"], {})
        pairs.append(dict(p, a_scores={s: ma.get(s) for s in scorers}, b_scores={s: mb.get(s) for s in scorers},
                          identical=p["id"] in identical))
    seeded = [a for a in archs if len(a["reference_seeds"]) > 1]
    ref_sd = noise["reference"][1] if "reference" in noise else math.nan
    ref_means = [mean[i]["reference"] for i in random_ids if "reference" in mean.get(i, {})]
    return FidelitySummary(
        default_scorer=default, scorers=out_scorers, archs=archs, pairs=pairs,
        reference=ReferenceFidelity(
            settings=reference.model_dump(mode="json", exclude={"data_root"}),
            budget_x=_budget(reference) / _budget(space.proxy),
            seed_spread_mean=float(np.mean([a["reference_spread"] for a in seeded])) if seeded else None,
            seed_tau=ref_tau, seeded_archs=len(seeded), seed_sd=ref_sd,
            seed_snr=snr.get("reference", math.nan)),
        separation=separation(ref_means, ref_tau, ref_sd),
        space=dict(name=space.name, source=space.source, hash=space.hash, proxy=space.proxy.model_dump(mode="json")),
        mean_seconds=mean_seconds)


def _clean(x):
    """JSON without NaN (null instead)."""
    if isinstance(x, float):
        return None if math.isnan(x) else x
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def write_outputs(summary: FidelitySummary, out_dir: Path, png: bool = True) -> list[Path]:
    """fidelity.json, fidelity.csv (one row per architecture) and fidelity.html/.png (each
    scorer against the reference; the page loads the plotly.min.js written beside it).
    Returns the files written; what was skipped and why (no Chromium, a failing one: no PNG)
    is put in `summary.notes` (the notes are not results: fidelity.json leaves them out)."""
    import pandas as pd
    out_dir = Path(out_dir)
    data = summary.to_dict()
    files = []
    write_text(out_dir / "fidelity.json", json.dumps(_clean(data), indent=1) + "\n")
    files.append(out_dir / "fidelity.json")
    rows = [dict(id=a["id"], kind=a["kind"], **a["scores"], reference_spread=a["reference_spread"])
            for a in data["archs"]]
    with atomic_path(out_dir / "fidelity.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    files.append(out_dir / "fidelity.csv")
    written = _figure(data, out_dir, png)
    summary.notes = written.notes
    return files + written.files


def _figure(summary: dict, out_dir: Path, png: bool) -> FigureFiles:
    import plotly.graph_objects as go  # heavy import (plotly): see README
    from plotly.subplots import make_subplots  # heavy import (plotly): see README

    names = list(summary["scorers"])
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    titles = []
    for s in names:
        t = summary["scorers"][s]["kendall_tau"]
        titles.append(f"{s}: τ = {t:.2f}" if t is not None and not math.isnan(t) else f"{s}: τ n/a")
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.06,
                        vertical_spacing=0.12)
    for k, s in enumerate(names):
        pts = [(a["scores"].get(s), a["scores"].get("reference"), a["id"], a["kind"]) for a in summary["archs"]]
        pts = [p for p in pts if p[0] is not None and p[1] is not None]
        for kind, color in (("random", "#1f77b4"), ("pair", "#ff7f0e")):
            sel = [p for p in pts if p[3] == kind]
            fig.add_trace(go.Scatter(x=[p[0] for p in sel], y=[p[1] for p in sel], mode="markers",
                                     text=[p[2] for p in sel], name=f"{kind} architectures",
                                     marker=dict(color=color, size=6), legendgroup=kind, showlegend=k == 0),
                          row=k // cols + 1, col=k % cols + 1)
        fig.update_xaxes(title_text=s, row=k // cols + 1, col=k % cols + 1)
        fig.update_yaxes(title_text="reference" if k % cols == 0 else None, row=k // cols + 1, col=k % cols + 1)
    fig.update_layout(title=f"scorers vs reference ({summary['space']['name']}; default scorer "
                            f"{summary['default_scorer']})", height=330 * rows + 80, width=1400,
                      template="plotly_white")
    return write_figure(fig, out_dir / "fidelity.html", out_dir / "fidelity.png" if png else None)


# ---- the whole experiment from a space file ------------------------------------------------------
def default_reference(proxy: ProxySettings) -> list[str]:
    """The reference's overrides when none are given: 6x the proxy's training budget (3x the
    images, 2x the epochs)."""
    return [f"proxy.train_samples={proxy.train_samples * 3}", f"proxy.epochs={proxy.epochs * 2}"]


def fidelity_experiment(space_file: str | Path, overrides: Sequence[str] = (), reference: Sequence[str] = (),
                        out_dir: str | Path = "fidelity", archs: int = 30, pairs: int = 10, seeds: int = 2,
                        seeded: int = 10, seed: int = 0, threads: int = 0, png: bool = True,
                        stop_after: float | None = None, supernet: str | Path | None = None,
                        started: Callable[[FidelitySetup], None] | None = None,
                        progress: Callable[[int, int, str], None] | None = None) -> FidelitySummary:
    """The rank-fidelity experiment of a space file (`overrides` applied; what `twins-nas
    fidelity` runs): the reference trains the proxy with the `reference` overrides (``proxy.``
    keys only; default `default_reference`), the plan is opened in `out_dir` (a run there with
    the same settings continues), torch uses `threads` CPU threads (0: every core), then
    `run_fidelity` scores it; `stop_after` minutes: no new job after that (0: only the report).
    `supernet`: the folder of a trained supernet of the space (`twins-nas supernet --out`): adds
    the ``supernet`` scorer (a supernet of another space: a one-line ConfigError).
    `started(setup)` is called once the inputs are checked, before any training."""
    import torch  # heavy import: see README

    space = load_space(space_file, overrides)
    ref_overrides = list(reference) or default_reference(space.proxy)
    bad = [r for r in ref_overrides if not r.strip().startswith("proxy.")]
    if bad:
        raise ConfigError(f"reference={bad[0]!r}: the reference changes the proxy only (proxy.KEY=VALUE)",
                          field="reference")
    ref = load_space(space_file, [*overrides, *ref_overrides]).proxy
    out_dir = Path(out_dir)
    open_plan(space, ref, out_dir, archs=archs, pairs=pairs, seeds=seeds, seeded=seeded, seed=seed)
    torch.set_num_threads(threads or cpu_cores())
    scorer = load_accuracy_source(SUPERNET, str(supernet), space) if supernet is not None else None
    if started is not None:
        started(FidelitySetup(space=space, reference=ref, reference_overrides=ref_overrides, out_dir=out_dir))
    return run_fidelity(space, ref, out_dir, archs=archs, pairs=pairs, seeds=seeds, seeded=seeded, seed=seed,
                        progress=progress, png=png, time_limit=None if stop_after is None else stop_after * 60,
                        supernet=scorer)
