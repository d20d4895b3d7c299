"""The objective of one trial: sampled config -> metrics -> constraints -> objective values.

Metrics (names as in the space file; see `twins_nas.search.space.metrics`):

* ``params_m`` (parameters, millions) and ``gmacs`` (analytic GMACs at the measured size
  `SearchSpace.measure_size`: ``measure.size``, default the space's resolution, H x W;
  attention matmuls included): closed form, always computed (microseconds);
* ``throughput`` (images/s) and ``latency_ms`` (median forward pass of a batch): the
  full-size model built and timed at the measured size, ``measure.batch_size``,
  ``measure.dtype`` and the search device; measured when an objective or constraint names
  either. With ``measure.predictor`` (a latency table) they are predicted from the table
  instead, no model built for them (`twins_nas.search.latency`), and the trial's user
  attribute ``speed`` says ``predicted`` (and the table's runtime);
* ``peak_mem_mb``: peak inference memory beyond the weights at the measured size (costly on
  CPU: a fresh process); measured only when named;
* ``naswot`` / ``synflow``: training-free scores of the full-size network built with the
  study seed (`twins_nas.search.evaluate.zero_cost`; NASWOT on `zero_cost.NASWOT_BATCH` proxy images
  resized to the space's resolution H x W, the same images for every trial); computed only when
  named, after the timed ones and before training, so a constraint on them is a pre-filter
  that skips the training of a hopeless config;
* ``accuracy``: validation top-1 of the proxy training (`train_proxy`), or, with a `scorer`
  (an `accuracy_source.AccuracySource`: a supernet), the score of the config's inherited
  weights (the trial's user attribute ``accuracy_source`` says ``inherited``); measured only
  when named.

Constraints go through Optuna's ``trial.set_constraint`` (one key per bound, e.g.
``params_m<=30``; value = relative violation, <= 0 when satisfied; a bound whose metric was
never measured gets 0). Optuna's GP sampler reads the constraint values of every trial in
order, so every trial of a study gets the same keys: a study made when ``gmacs`` was called
``gflops`` keeps ``gflops<=...`` (`Evaluator.constraint_names`). The constraints are checked
in order of cost: the closed-form ones before any model is built, the timed and zero-cost
ones before training. A config that breaks one is never trained (nor timed, when the closed
form already breaks it): the trial COMPLETES at once with the violation recorded and
*penalised* objective values (0 for a maximised metric that was not measured, the worst
value seen so far for a minimised one, the measured value otherwise), so every sampler (TPE,
NSGA-II/III, GP) learns where the feasible region is. Such a trial has
``status = "infeasible"``, is never trained, counts toward ``settings.trials`` like any finished
trial and is never on the front or picked.

Early stop: Optuna cannot prune multi-objective studies, so after every proxy epoch but the
last, a trial whose validation accuracy is more than 5 points below the 10th percentile of
its finished peers at the same epoch (at least 8 of them) raises ``optuna.TrialPruned``
(``status = "pruned"``; it does not count toward ``settings.trials``).

Everything a trial learns goes to its user attributes as soon as it is known (a trial that
fails half-way keeps what it measured): ``config`` (the full ArchConfig dict), ``metrics``,
``seconds`` (build / profile / train / eval / total, and ``zero_cost`` when a zero-cost
score is named), ``speed`` (the ``runtime`` that gave throughput and latency and their
``source``: ``measured`` or ``predicted``), ``epoch_accuracies``, ``violations``, ``status``,
``proxy_seed``, and
``fail_reason`` / ``prune_reason`` (written by the caller).
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import optuna
import torch

from ...config import ArchConfig
from ...models import DenseHead
from ...models.head_cost import analytic_flops, analytic_params
from ...profile.latency import LatencyReport, measure_latency
from ...profile.memory import available_bytes, measure_peak_memory, min_forward_bytes
from ...profile.stage_time import timing_model
from ...sizes import Size, format_size
from ..latency.predictor import MEASURED, PREDICTED, LatencyPredictor, images_per_second, space_predictor
from ..proxy.data import ProxyData
from ..proxy.train import train_proxy
from ..space.measure import MeasureBudget
from ..space.metrics import CHEAP_METRICS, DATA_METRICS, MEMORY_METRICS, TIMED_METRICS, ZERO_COST_METRICS, trial_metrics
from ..space.space import Bound, SearchSpace
from .accuracy_source import INHERITED, AccuracySource
from .status import TrialStatus
from .zero_cost import NASWOT_BATCH, scoring_batch, zero_cost_scores

EARLY_STOP_MIN_PEERS = 8
EARLY_STOP_QUANTILE = 0.10
EARLY_STOP_MARGIN = 0.05
MetricName = TypeVar("MetricName", bound=str)  # a metric's name: `Metric` (a space's keys) or any str


def needed_metrics(space: SearchSpace) -> set[str]:
    """Every metric this space's trials compute: the closed-form ones plus what is named."""
    named: set[str] = set(space.objectives) | set(space.constraints)
    if named & set(TIMED_METRICS):
        named |= set(TIMED_METRICS)  # one timing gives both
    return named | set(CHEAP_METRICS)


def needs_proxy_data(space: SearchSpace) -> bool:
    """Whether this space's trials read the proxy data set (see `metrics.DATA_METRICS`)."""
    return bool(needed_metrics(space) & set(DATA_METRICS))


def cheap_metrics(cfg: ArchConfig, resolution: int | Size, head: DenseHead | None = None) -> dict[str, float]:
    """The closed-form metrics: parameters (count and millions) and GMACs at `resolution`
    (n or (H, W)); with a dense `head`, of the whole dense model (backbone, neck and head)."""
    params, gmacs = analytic_params(cfg, head=head), analytic_flops(cfg, resolution, head=head).gmacs
    return {"params": int(params), "params_m": params / 1e6, "gmacs": gmacs}


def measured_metrics(cfg: ArchConfig, space: SearchSpace) -> dict[str, float]:
    """`cheap_metrics` of the model a space measures: at `measure_size`, with `measure.head`."""
    return cheap_metrics(cfg, space.measure_size, space.measure.head_config)


def _bounds(constraints: Mapping[MetricName, Bound], names: Mapping[str, str] | None = None):
    """(metric, key, side, limit) for every bound, in order, e.g. ('params_m', 'params_m<=30',
    'max', 30.0); `names`: metric -> the name the keys use, where a study keeps a legacy one."""
    names = names or {}
    for metric, b in constraints.items():
        for side, op, limit in (("min", ">=", b.min), ("max", "<=", b.max)):
            if limit is not None:
                yield metric, f"{names.get(metric, metric)}{op}{limit:g}", side, limit


def constraint_keys(constraints: Mapping[MetricName, Bound], names: Mapping[str, str] | None = None) -> list[str]:
    """The constraint key of every bound, e.g. ``params_m<=30`` (see `_bounds`)."""
    return [key for _, key, _, _ in _bounds(constraints, names)]


def constraint_values(metrics: dict[str, float], constraints: Mapping[MetricName, Bound],
                      names: Mapping[str, str] | None = None) -> dict[str, float]:
    """Relative violation per bound (<= 0: satisfied; a bound on an unmeasured metric: 0),
    keyed as `constraint_keys`."""
    out = {}
    for metric, key, side, limit in _bounds(constraints, names):
        v = metrics.get(metric)
        if v is None:
            out[key] = 0.0
            continue
        excess = (limit - v) if side == "min" else (v - limit)
        out[key] = float(excess / abs(limit)) if limit != 0 else float(excess)
    return out


def time_model(model_or_cfg: ArchConfig | torch.nn.Module, space: SearchSpace, device: str,
               budget: MeasureBudget) -> LatencyReport:
    """Time the full-size network (a config is built with `timing_model`, with the space's
    `measure.head`) at the space's `measure_size` (H x W), `measure.batch_size` and
    `measure.dtype` on `device`, within `budget`, run by `measure.runtime` (`MeasureSettings.spec`)."""
    model = (timing_model(model_or_cfg, space.measure.head_config) if isinstance(model_or_cfg, ArchConfig)
             else model_or_cfg)
    return measure_latency(model, space.measure_size, spec=space.measure.spec(budget, device))


def check_fits(cfg: ArchConfig, resolution: int | Size, batch: int, device: str) -> None:
    """MemoryError (the trial fails as "out of memory") before a model is built whose forward
    at `resolution` (n or (H, W)) cannot fit: the closed-form lower bound of its memory
    exceeds what `device` has free."""
    need, free = min_forward_bytes(cfg, resolution, batch), available_bytes(device)
    if free is not None and need > free:
        raise MemoryError(f"needs at least {need / 2 ** 30:.2f} GiB at {format_size(resolution)} px, batch {batch} "
                          f"(closed form), {free / 2 ** 30:.2f} GiB free on {device}")


def trial_seed(seed: int, number: int) -> int:
    """The proxy-training seed of trial `number` (derived from the study seed)."""
    return (int(seed) * 1_000_003 + int(number)) % (2 ** 31 - 1)


@dataclass
class Evaluator:
    """Callable objective `evaluator(trial) -> list of objective values` (in the order of
    `space.objectives`). Load the data and build one per process. `constraint_names` maps a
    metric to the name its constraint keys use in the study, where that is a legacy one
    (`metrics.recorded_spellings`)."""

    space: SearchSpace
    data: ProxyData | None
    device: str = "cpu"
    seed: int = 0
    budget: MeasureBudget = field(default_factory=MeasureBudget)
    early_stop: bool = True
    constraint_names: dict[str, str] = field(default_factory=dict)
    scorer: AccuracySource | None = None  # scores the accuracy without training (a supernet); None: train_proxy

    def __post_init__(self) -> None:
        self.needed = needed_metrics(self.space)
        self.zero_cost = [m for m in ZERO_COST_METRICS if m in self.needed]
        self.predictor: LatencyPredictor | None = (space_predictor(self.space) if self.needed & set(TIMED_METRICS)
                                                   else None)
        self._images: torch.Tensor | None = None
        data_metrics = sorted(self.needed & set(DATA_METRICS))
        if data_metrics and self.data is None:
            raise ValueError(f"the space names {' and '.join(data_metrics)}: proxy data is required")

    def scoring_images(self) -> torch.Tensor | None:
        """The minibatch of the zero-cost scores (the same for every trial; made once), or
        None when no named score reads images."""
        if self._images is None and self.data is not None and set(self.zero_cost) & set(DATA_METRICS):
            self._images = scoring_batch(self.data, NASWOT_BATCH, self.space.input_size, self.space.in_chans)
        return self._images

    # ---- the stages ------------------------------------------------------------------------
    def _broken(self, metrics: dict) -> dict[str, float]:
        """The bounds `metrics` break so far (a bound on a metric not measured yet holds)."""
        viol = constraint_values(metrics, self.space.constraints, self.constraint_names)
        return {k: v for k, v in viol.items() if v > 0}

    def _finish_constraints(self, trial: optuna.Trial, metrics: dict) -> dict[str, float]:
        viol = constraint_values(metrics, self.space.constraints, self.constraint_names)
        for key, v in viol.items():
            trial.set_constraint(key, v)
        broken = {k: v for k, v in viol.items() if v > 0}
        trial.set_user_attr("violations", broken)
        return broken

    def _penalised(self, trial: optuna.Trial, metrics: dict) -> list[float]:
        values = []
        for metric, direction in self.space.objectives.items():
            if metric in metrics:
                values.append(float(metrics[metric]))
            elif direction == "maximize":
                values.append(0.0)
            else:
                seen = [trial_metrics(t).get(metric) for t in
                        trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
                finite = [v for v in seen if v is not None and math.isfinite(v)]
                values.append(max(finite) if finite else 1e6)
        return values

    def _on_epoch(self, trial: optuna.Trial, accs: list[float]):
        epochs = self.space.proxy.epochs

        def on_epoch(epoch: int, acc: float) -> None:
            accs.append(float(acc))
            trial.set_user_attr("epoch_accuracies", list(accs))
            if not self.early_stop or epoch >= epochs:
                return
            peers = []
            for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
                ea = t.user_attrs.get("epoch_accuracies") or []
                if t.user_attrs.get("status") == TrialStatus.OK and len(ea) >= epoch:
                    peers.append(ea[epoch - 1])
            if len(peers) >= EARLY_STOP_MIN_PEERS:
                q = float(np.quantile(peers, EARLY_STOP_QUANTILE))
                if acc < q - EARLY_STOP_MARGIN:
                    reason = (f"epoch {epoch}/{epochs}: accuracy {acc:.3f} is far below its {len(peers)} peers "
                              f"(10th percentile {q:.3f})")
                    trial.set_user_attr("prune_reason", reason)
                    raise optuna.TrialPruned(reason)
        return on_epoch

    # ---- the objective ---------------------------------------------------------------------
    def __call__(self, trial: optuna.Trial) -> list[float]:
        t_start = time.perf_counter()
        sec = {"build": 0.0, "profile": 0.0, "train": 0.0, "eval": 0.0, "total": 0.0}
        if self.zero_cost:
            sec["zero_cost"] = 0.0

        def save_seconds() -> None:
            sec["total"] = time.perf_counter() - t_start
            trial.set_user_attr("seconds", {k: round(v, 4) for k, v in sec.items()})

        space = self.space
        cfg = space.sample(trial)
        cfg = cfg.replace(name=f"{trial.study.study_name}-t{trial.number}")
        trial.set_user_attr("config", cfg.to_dict())

        t = time.perf_counter()
        metrics: dict[str, Any] = measured_metrics(cfg, space)
        sec["profile"] += time.perf_counter() - t
        trial.set_user_attr("metrics", metrics)

        broken = self._broken(metrics)
        if not broken and self.predictor is not None:
            t = time.perf_counter()
            ms = self.predictor.predict(cfg)
            sec["profile"] += time.perf_counter() - t
            metrics.update(throughput=images_per_second(space.measure.batch_size, ms), latency_ms=ms)
            trial.set_user_attr("speed", {"runtime": self.predictor.table.runtime, "source": PREDICTED})
            trial.set_user_attr("metrics", metrics)
            broken = self._broken(metrics)
        timed = self.needed & set(TIMED_METRICS) if self.predictor is None else set()
        model = None
        try:
            if not broken and (timed or self.needed & set(MEMORY_METRICS)):
                check_fits(cfg, space.measure_size, space.measure.batch_size, self.device)
                t = time.perf_counter()
                model = timing_model(cfg, space.measure.head_config)
                sec["build"] += time.perf_counter() - t
                if timed:
                    t = time.perf_counter()
                    rep = time_model(model, space, self.device, self.budget)
                    sec["profile"] += time.perf_counter() - t
                    metrics.update(throughput=float(rep.throughput), latency_ms=float(rep.latency_ms),
                                   latency_iqr_ms=float(rep.iqr_ms), latency_spread=float(rep.spread))
                    trial.set_user_attr("speed", {"runtime": rep.runtime, "source": MEASURED})
                    trial.set_user_attr("metrics", metrics)
                    broken = self._broken(metrics)
                if not broken and "peak_mem_mb" in self.needed:
                    t = time.perf_counter()
                    metrics["peak_mem_mb"] = float(measure_peak_memory(
                        model, space.measure_size, space.measure.batch_size, device=self.device,
                        dtype=space.measure.dtype))
                    sec["profile"] += time.perf_counter() - t
                    trial.set_user_attr("metrics", metrics)
                    broken = self._broken(metrics)
        finally:
            del model  # freed here (no reference cycles), so no gc.collect() is needed
            save_seconds()

        if not broken and self.zero_cost:
            t = time.perf_counter()
            try:
                metrics.update(zero_cost_scores(cfg, self.zero_cost, self.scoring_images(), space.resolution,
                                                seed=self.seed, device=self.device))
            finally:
                sec["zero_cost"] += time.perf_counter() - t
                save_seconds()
            trial.set_user_attr("metrics", metrics)
            broken = self._broken(metrics)

        if broken:
            self._finish_constraints(trial, metrics)
            trial.set_user_attr("status", TrialStatus.INFEASIBLE)
            save_seconds()
            return self._penalised(trial, metrics)

        if "accuracy" in self.needed and self.scorer is not None:
            t = time.perf_counter()
            try:
                metrics["accuracy"] = float(self.scorer.score(cfg))
            finally:
                sec["eval"] += time.perf_counter() - t
                save_seconds()
            trial.set_user_attr("accuracy_source", INHERITED)
            trial.set_user_attr("metrics", metrics)
        elif "accuracy" in self.needed:
            seed = trial_seed(self.seed, trial.number)
            trial.set_user_attr("proxy_seed", seed)
            accs: list[float] = []
            try:
                assert self.data is not None  # __post_init__: accuracy needs the proxy data
                res = train_proxy(cfg, space.proxy, self.data, seed=seed, device=self.device,
                                  resolution=space.input_size, choices=space.geometry_choices(),
                                  on_epoch=self._on_epoch(trial, accs))
            finally:
                save_seconds()
            sec["build"] += res.build_seconds
            sec["train"] += res.train_seconds
            sec["eval"] += res.eval_seconds
            metrics.update(accuracy=float(res.accuracy), proxy_params=int(res.proxy_params))
            trial.set_user_attr("metrics", metrics)
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()

        broken = self._finish_constraints(trial, metrics)
        trial.set_user_attr("status", TrialStatus.INFEASIBLE if broken else TrialStatus.OK)
        save_seconds()
        return [float(metrics[m]) for m in space.objectives]
