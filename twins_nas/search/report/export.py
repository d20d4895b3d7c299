"""The report of a study, written from its storage alone (the space file is not needed).

`export_study(study, out_dir, pick)` writes:

* ``best_config.json``: the picked architecture (an `ArchConfig` JSON: `twins-nas show`,
  `twins-nas profile --config` and `ArchConfig.from_json` read it) with a ``meta`` entry;
* ``pareto.json``: ``{"schema_version", "meta", "configs": [...]}``, every Pareto-optimal
  architecture (best first in the first objective), each with its own ``meta`` (trial,
  metrics, knee / picked flags); `ArchConfig.from_json(path, index=i)` reads entry i;
* ``trials.csv``: one row per trial: number, state, status, metrics, the runtime that timed it
  and whether its speed was measured or predicted (``runtime``, ``latency_source``), whether its
  accuracy is a proxy training's (``stand-alone``) or a supernet's inherited weights'
  (``inherited``) (``accuracy_source``), constraint violations,
  seconds spent building / profiling / training / evaluating, per-epoch accuracies, worker,
  reason of a failure, the sampled parameters and the architecture in short (and the seconds
  spent on zero-cost scores, where the space names one);
* ``pareto.html`` (works offline with the ``plotly.min.js`` written beside it) and
  ``pareto.png`` when a Chromium is present: every trial, accuracy vs throughput (or the
  study's first two objectives), the front (means, ±1 SE accuracy bars) and the pick
  highlighted, the published Twins models' throughput as vertical lines, and the hypervolume
  vs trial number (see `pareto.hypervolume_history`; per trial, as the search saw them).

One architecture, one entry: trials whose configs build the same network are replicates of
one architecture (`replicates`), id ``a`` + its lowest trial number. The front, the knee and
the pick are computed on the architectures' mean metrics; pareto.json and best_config.json
give each architecture once with its ``trial`` (the lowest number: its config, parameters,
seconds and epoch accuracies), ``replicate_trials`` (every replicate), ``replicates``, ``metrics``
(means), ``accuracy_se`` (and ``accuracy_rungR_se``) and ``indistinguishable_from`` (the
front neighbours its accuracy lead cannot be told from, `replicates.indistinguishable`);
their ``meta.noise`` (``{sd, source, groups}``) says which noise estimate gave the standard
error of an architecture with one replicate. trials.csv keeps every trial and gives each its
``architecture``, ``replicates``, ``accuracy_mean`` / ``accuracy_se`` (and the same of every
rung's accuracy) and the architecture's front / knee / picked flags. The replicate trainings
the search scheduled near the front (`run.replication`) count as replicates; ``meta.replication``
gives their settings, number and seconds.

A study that scored inherited weights (``search --supernet``) records each trial's inherited
accuracy (``accuracy_source: inherited``); once the top of its inherited front has been trained
stand-alone (`run.standalone`), the front, the knee and the pick are computed over those
architectures on their stand-alone means (``accuracy``; ``accuracy_inherited`` beside it),
every pareto.json entry says ``accuracy_source: stand-alone``, ``meta.accuracy_source`` gives
the supernet, the settings, the trainings and the inherited front's ids, and trials.csv gives
each trial ``accuracy_standalone`` / ``accuracy_standalone_se`` / ``standalone_trainings``.

Every JSON `meta` holds the schema version, the metrics, the space (name, file, sha256), the
seed, the sampler, the measurement device and settings, the proxy settings and library
versions (of the search and of the export).
"""
from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from ...atomic import atomic_path, ensure_dir, write_text
from ...config import SCHEMA_VERSION, ArchConfig, ConfigError
from ...errors import ArgText, Namer
from ...figures import write_figure
from ..evaluate.accuracy_source import INHERITED, STANDALONE
from ..evaluate.status import TrialStatus
from ..optuna_compat import storage_url
from ..pareto import NoMatch, hypervolume_history, knee_index, pareto_mask, parse_pick, select
from ..replicates import Architecture, Noise, indistinguishable, is_accuracy_like
from ..run.provenance import library_versions
from ..run.replication import replicate_seconds, replicate_trainings, replications, study_architectures
from ..run.rungs import effective_metrics, promotion_seconds, promotions
from ..run.standalone import standalone_architectures, standalone_records, top_architectures
from ..run.storage import describe_storage, existing_storage_file, open_storage, resolve_storage, storage_file
from ..run.trials import count_trials
from ..space.metrics import METRICS, canonical_metric, rename_legacy

METRIC_LABELS = {"accuracy": "proxy accuracy (%)", "throughput": "throughput (images/s)",
                 "latency_ms": "latency (ms per batch)", "gmacs": "GMACs", "params_m": "parameters (M)",
                 "peak_mem_mb": "peak memory (MiB)", "naswot": "NASWOT score (log|det K|)",
                 "synflow": "SynFlow score (log)"}
SECONDS = ("build", "profile", "zero_cost", "train", "eval", "total")


# ---- reading the study ----------------------------------------------------------------------------
def load_study_for_export(study_name: str, storage: str) -> optuna.Study:
    """Load a study for export; one-line ConfigError when it is not there."""
    st = open_storage(storage)
    try:
        return optuna.load_study(study_name=study_name, storage=st, sampler=optuna.samplers.RandomSampler())
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(st, include_best_trial=False)]
        have = f"; it holds: {', '.join(names)}" if names else "; it holds no study"
        raise ConfigError(f"study={study_name!r}: no such study in {describe_storage(storage)}{have}",
                          field="study") from None


def _objectives(study: optuna.Study) -> dict[str, str]:
    obj = study.user_attrs.get("objectives")
    if not obj:
        raise ConfigError(f"study {study.study_name!r} was not made by twins-nas search (no objectives recorded)")
    return {canonical_metric(m, warn=False): d for m, d in obj}


def _feasible(t: optuna.trial.FrozenTrial) -> bool:
    return t.state == TrialState.COMPLETE and t.user_attrs.get("status") == TrialStatus.OK and \
        all(v <= 0 for v in t.constraints.values())


def _common_meta(study: optuna.Study, storage: str | None) -> dict:
    ua = study.user_attrs
    space = ua.get("space") or {}
    proxy = {k: v for k, v in (space.get("proxy") or {}).items() if k != "data_root"}
    return {
        "schema_version": SCHEMA_VERSION,
        "study": study.study_name,
        "storage": describe_storage(storage) if storage else None,
        "space": {"name": ua.get("space_name"), "file": ua.get("space_source"), "sha256": ua.get("space_hash")},
        "objectives": dict(_objectives(study)),
        "constraints": rename_legacy(ua.get("constraints", {})),
        "seed": ua.get("seed"),
        "sampler": ua.get("sampler"),
        "device": ua.get("measure", {}),
        "proxy": proxy,
        "halving": space.get("halving") or space.get("fidelity") or {"rungs": 1},
        "replication": _replication_meta(study, space),
        "trials": count_trials(study),
        "versions": library_versions(),
        "search_versions": ua.get("versions", {}),
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _replication_meta(study: optuna.Study, space: dict) -> dict:
    """The space's ``replicates:`` settings and the replicate trainings the study holds."""
    records = {n: rec for n, rec in replications(study).items() if rec.get("results")}
    settings = study.user_attrs.get("replicates") or space.get("replicates") or {"count": 1}
    return dict(settings, trainings=replicate_trainings(records),
                architectures=len(records), seconds=round(replicate_seconds(records), 1))


def _ranked_architectures(study: optuna.Study, archs: list[Architecture],
                          objectives: dict[str, str]) -> tuple[list[Architecture], dict | None, Noise]:
    """The architectures the report ranks, what it says of where their accuracy comes from
    (None: each trial trained its own proxy) and the noise estimate of the stand-alone trainings.
    A study that scored inherited weights ranks by the stand-alone accuracies of the
    architectures trained stand-alone at its end (see `run.standalone`) once there are any;
    until then, by the inherited ones."""
    source = study.user_attrs.get("accuracy_source")
    retrained, noise = standalone_architectures(study, archs)
    if not source:
        return archs, None, noise
    inherited_front = top_architectures(archs, objectives, len(archs))
    mask = pareto_mask([a.metrics for a in inherited_front], objectives) if inherited_front else ()
    records = {n: rec for n, rec in standalone_records(study).items() if rec.get("results")}
    meta = {"trials": INHERITED, "ranked_by": STANDALONE if retrained else INHERITED,
            "supernet": {k: v for k, v in source.items() if k != "name"},
            "retrain": study.user_attrs.get("standalone"), "retrained": len(retrained),
            "trainings": replicate_trainings(records), "seconds": round(replicate_seconds(records), 1),
            "inherited_front": [a.id for a, on in zip(inherited_front, mask) if on]}
    return (retrained or archs), meta, noise


def _clean_metrics(m: dict) -> dict:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in m.items()}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 6)


# ---- trials.csv ------------------------------------------------------------------------------------
def trials_frame(study: optuna.Study, archs: Sequence[Architecture] = (),
                 front: set[str] | frozenset[str] = frozenset(), picked: str | None = None,
                 knee: str | None = None, standalone: Sequence[Architecture] = ()) -> pd.DataFrame:
    """One row per trial (see the module docstring); `archs` are the study's architectures and
    `front`, `picked`, `knee` architecture ids: a trial's flags, ``architecture``,
    ``replicates`` and ``accuracy_mean`` / ``accuracy_se`` (and the same of every rung's
    accuracy) are its architecture's. `standalone`: the architectures trained stand-alone
    after a search with inherited accuracies (`run.standalone`): their trials get
    ``accuracy_standalone`` / ``accuracy_standalone_se`` and ``standalone_trainings``."""
    trials = study.get_trials(deepcopy=False)
    of_trial = {n: a for a in archs for n in a.trials}
    records = promotions(study)
    metrics = [effective_metrics(t, records.get(t.number)) for t in trials]
    metric_cols = [m for m in METRICS if any(m in tm for tm in metrics)]
    top = max((m.get("rung", 0) for m in metrics), default=0)
    rung_cols = (["rung"] + [f"accuracy_rung{r}" for r in range(top + 1)] + ["seconds_promotion"]
                 if records else [])
    param_cols = sorted({p for t in trials for p in t.params}, key=_param_order)
    timed = {k for t in trials for k in (t.user_attrs.get("seconds") or {})}
    seconds = [k for k in SECONDS if k != "zero_cost" or k in timed]  # zero_cost: where a score was named
    stat_cols = [f"{c}_{s}" for c in metric_cols + rung_cols if is_accuracy_like(c) for s in ("mean", "se")]
    retrained = {a.id: a for a in standalone}
    standalone_cols = ["accuracy_standalone", "accuracy_standalone_se", "standalone_trainings"] if standalone else []
    rows = []
    for t, m in zip(trials, metrics):
        ua = t.user_attrs
        sec = ua.get("seconds", {})
        cfg = ua.get("config") or {}
        stages = cfg.get("stages") or []
        owner = ua.get("worker") or {}
        viol = ua.get("violations") or {k: v for k, v in t.constraints.items() if v > 0}
        a = of_trial.get(t.number)
        aid = a.id if a is not None else None
        row = {
            "number": t.number, "state": t.state.name, "status": ua.get("status", t.state.name.lower()),
            "feasible": bool(t.state == TrialState.COMPLETE and all(v <= 0 for v in t.constraints.values())),
            "on_front": aid is not None and aid in front, "knee": aid is not None and aid == knee,
            "picked": aid is not None and aid == picked, "architecture": aid,
            "replicates": a.replicates if a is not None else None,
        }
        row.update({c: m.get(c) for c in metric_cols})
        row["params"] = m.get("params")
        speed = ua.get("speed") or {}
        row["runtime"], row["latency_source"] = speed.get("runtime"), speed.get("source")
        row["accuracy_source"] = ua.get("accuracy_source") or (STANDALONE if m.get("accuracy") is not None else None)
        if standalone:
            sa = retrained.get(aid) if aid is not None else None
            row["accuracy_standalone"] = None if sa is None else sa.metrics.get("accuracy")
            row["accuracy_standalone_se"] = None if sa is None else sa.se.get("accuracy")
            row["standalone_trainings"] = None if sa is None else sa.replicates
        if rung_cols:
            row.update({c: m.get(c) for c in rung_cols[:-1]})
            row["seconds_promotion"] = promotion_seconds(records.get(t.number)) or None
        for col in stat_cols:
            c, stat = col.rsplit("_", 1)
            row[col] = None if a is None else a.metrics.get(c) if stat == "mean" else a.se.get(c)
        row["violations"] = ";".join(f"{k}:{v:+.3f}" for k, v in viol.items())
        row.update({f"seconds_{k}": sec.get(k) for k in seconds})
        row["epoch_accuracies"] = ";".join(f"{a:.4f}" for a in ua.get("epoch_accuracies", []))
        row["proxy_seed"] = ua.get("proxy_seed")
        row["depths"] = "-".join(str(s["depth"]) for s in stages)
        row["embed_dims"] = "-".join(str(s["embed_dim"]) for s in stages)
        row["patterns"] = "-".join(str(s["pattern"]) for s in stages)
        row["datetime_start"] = t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None
        row["datetime_complete"] = t.datetime_complete.isoformat(timespec="seconds") if t.datetime_complete else None
        row["worker"] = f"{owner.get('host')}:{owner.get('pid')}" if owner else None
        row["reason"] = ua.get("fail_reason") or ua.get("prune_reason") or \
            ("; ".join(f"{k} broken" for k in viol) if viol else None)
        row.update({f"param.{p}": t.params.get(p) for p in param_cols})
        rows.append(row)
    cols = (["number", "state", "status", "feasible", "on_front", "knee", "picked", "architecture", "replicates"] +
            metric_cols + rung_cols + stat_cols + standalone_cols +
            ["params", "accuracy_source", "runtime", "latency_source", "violations"] +
            [f"seconds_{k}" for k in seconds] +
            ["epoch_accuracies", "proxy_seed", "depths", "embed_dims", "patterns", "datetime_start",
             "datetime_complete", "worker", "reason"] + [f"param.{p}" for p in param_cols])
    df = pd.DataFrame(rows, columns=cols)
    df["replicates"] = df["replicates"].astype("Int64")  # a count: "2", and empty where no architecture
    if standalone:
        df["standalone_trainings"] = df["standalone_trainings"].astype("Int64")
    return df


def _param_order(name: str) -> tuple:
    if name.startswith("s") and "." in name and name[1:name.index(".")].isdigit():
        return (int(name[1:name.index(".")]), name)
    return (10 ** 6, name)


# ---- the figure --------------------------------------------------------------------------------
def _axes(objectives: dict[str, str]) -> tuple[str | None, str]:
    """(x metric or None for trial number, y metric)."""
    names = list(objectives)
    y = "accuracy" if "accuracy" in names else names[0]
    rest = [m for m in names if m != y]
    if "throughput" in rest:
        return "throughput", y
    return (rest[0] if rest else None), y


def architecture_frame(archs: Sequence[Architecture], configs: dict[int, dict], front: set[str],
                       knee: str | None, picked: str | None, similar: dict[str, list[str]]) -> pd.DataFrame:
    """One row per architecture (`archs`, the feasible ones) for the figure: id, replicate trial
    numbers, mean metrics, their standard errors (``METRIC_se``), the front / knee / picked flags,
    the ids it is indistinguishable from (`similar`) and the architecture in short (`configs`:
    trial number -> recorded config)."""
    rows = []
    for a in archs:
        stages = (configs.get(a.first) or {}).get("stages") or []
        row = {"number": a.first, "architecture": a.id, "trials": ", ".join(map(str, a.trials)),
               "replicates": a.replicates, "status": TrialStatus.OK, "on_front": a.id in front,
               "knee": a.id == knee, "picked": a.id == picked,
               "indistinguishable_from": ", ".join(similar.get(a.id, []))}
        row.update({m: a.metrics.get(m) for m in METRICS})
        row.update({f"{m}_se": v for m, v in a.se.items()})
        row["depths"] = "-".join(str(s["depth"]) for s in stages)
        row["embed_dims"] = "-".join(str(s["embed_dim"]) for s in stages)
        row["patterns"] = "-".join(str(s["pattern"]) for s in stages)
        rows.append(row)
    return pd.DataFrame(rows)


def pareto_figure(df: pd.DataFrame, objectives: dict[str, str], presets: dict, hv: list[float],
                  title: str, archs: pd.DataFrame | None = None, cloud: pd.DataFrame | None = None,
                  cloud_name: str = "architectures (mean of their trainings)"):
    """The Pareto figure: the study's architectures, each once at its means (`cloud`, an
    `architecture_frame`; None: every scored trial of `df` (`trials_frame`) instead), the
    trials that break a constraint, and, from `archs` (`architecture_frame`), the front's
    architectures at their means with ±1 SE accuracy bars, the knee and the pick."""
    import plotly.graph_objects as go  # heavy import (plotly): see README
    from plotly.subplots import make_subplots  # heavy import (plotly): see README

    x, y = _axes(objectives)
    df = df.copy()
    for m in (x, y):
        if m is not None and m not in df.columns:
            df[m] = float("nan")  # nothing measured yet (every trial failed)
    scale = {"accuracy": 100.0}
    fig = make_subplots(rows=1, cols=2, column_widths=[0.64, 0.36], horizontal_spacing=0.09,
                        subplot_titles=("trials and Pareto front", "hypervolume of the front (scaled objectives)"))

    def xs(d):
        return d["number"] if x is None else d[x] * scale.get(x, 1.0)

    def ys(d):
        return d[y] * scale.get(y, 1.0)

    def hover(d, per_architecture: bool = False):
        out = []
        for _, r in d.iterrows():
            n = r.get("replicates")
            if per_architecture:
                parts = [f"architecture {r['architecture']}: mean of {n} replicate{'s' * (n != 1)} "
                         f"(trial{'s' * (n != 1)} {r['trials']})"]
            else:
                parts = [f"trial {r['number']} ({r['status']})"]
                if pd.notna(r.get("architecture")) and pd.notna(n) and n > 1:
                    parts.append(f"architecture {r['architecture']}: {n} replicates")
            for m in METRICS:
                if m in d.columns and pd.notna(r.get(m)):
                    v = r[m] * 100 if m == "accuracy" else r[m]
                    se = r.get(f"{m}_se") if per_architecture else None
                    spread = f" ± {se * 100:.2g} (SE)" if m == "accuracy" and se is not None and pd.notna(se) else ""
                    parts.append(f"{m}: {v:.4g}{spread}")
            if per_architecture and r.get("indistinguishable_from"):
                parts.append(f"indistinguishable from {r['indistinguishable_from']}")
            parts.append(f"depths {r['depths']} · dims {r['embed_dims']} · {r['patterns']}")
            out.append("<br>".join(parts))
        return out

    have = df[df[y].notna()]
    if x is not None:
        have = have[have[x].notna()]
    ok = have[have["status"] == TrialStatus.OK]
    infeasible = have[(have["state"] == "COMPLETE") & (have["status"] != TrialStatus.OK)]
    if "architecture" in infeasible.columns:  # an architecture once, as everywhere in the report
        named = infeasible["architecture"].notna()
        infeasible = pd.concat([infeasible[named].drop_duplicates("architecture"), infeasible[~named]])
    if archs is None or not len(archs):
        archs = ok.iloc[0:0]
    archs = archs.copy()
    for m in (x, y):
        if m is not None and m not in archs.columns:
            archs[m] = float("nan")
    archs = archs[archs[y].notna() & (archs[x].notna() if x is not None else True)]
    front = archs[archs["on_front"]]
    front = front.sort_values(x if x is not None else "number")
    if len(infeasible):
        fig.add_trace(go.Scatter(x=xs(infeasible), y=ys(infeasible), mode="markers", name="breaks a constraint",
                                 marker=dict(symbol="x", size=7, color="rgba(200,60,60,0.55)"),
                                 hovertext=hover(infeasible), hoverinfo="text"), row=1, col=1)
    dots, per_architecture, dots_name = ok, False, "trials"
    if cloud is not None:
        dots, per_architecture, dots_name = cloud.copy(), True, cloud_name
        for m in (x, y, "number"):
            if m is not None and m not in dots.columns:
                dots[m] = float("nan")  # no architecture yet: an empty frame without columns
        if len(dots):
            dots = dots[dots[y].notna() & (dots[x].notna() if x is not None else True)]
    fig.add_trace(go.Scatter(x=xs(dots), y=ys(dots), mode="markers", name=dots_name,
                             marker=dict(size=7, color=dots["number"] if len(dots) else [], colorscale="Blues",
                                         cmin=0, cmax=max(1, int(df["number"].max()) if len(df) else 1),
                                         line=dict(width=0.5, color="rgba(40,40,80,0.6)"),
                                         colorbar=dict(title="first trial", x=0.6, len=0.5, y=0.25,
                                                       thickness=10)),
                             hovertext=hover(dots, per_architecture), hoverinfo="text"), row=1, col=1)
    if len(front):
        se_col = f"{y}_se"
        bars = None
        if se_col in front.columns:
            se = [None if pd.isna(v) else float(v) * scale.get(y, 1.0) for v in front[se_col]]
            bars = dict(type="data", array=se, visible=True, color="#e4572e", thickness=1.2, width=4)
        fig.add_trace(go.Scatter(x=xs(front), y=ys(front), mode="lines+markers", name="Pareto front (mean ± 1 SE)",
                                 line=dict(color="#e4572e", width=2), error_y=bars,
                                 marker=dict(size=10, color="#e4572e", line=dict(width=1, color="white")),
                                 hovertext=hover(front, True), hoverinfo="text"), row=1, col=1)
    for flag, name, sym, color in (("knee", "knee", "diamond", "#2e86ab"), ("picked", "picked (best_config)",
                                                                           "star", "#f3a712")):
        sel = archs[archs[flag]]
        if len(sel):
            fig.add_trace(go.Scatter(x=xs(sel), y=ys(sel), mode="markers", name=name,
                                     marker=dict(symbol=sym, size=17, color=color, line=dict(width=1, color="black")),
                                     hovertext=hover(sel, True), hoverinfo="text"), row=1, col=1)
    if x is not None and presets:
        marks = sorted((row[x] * scale.get(x, 1.0), pname) for pname, row in presets.items()
                       if isinstance(row, dict) and row.get(x) is not None and math.isfinite(row[x]))
        xs_all = [v for v, _ in marks] + [v for v in xs(have).tolist() if math.isfinite(v)]
        span = ((max(xs_all) - min(xs_all)) if xs_all else 0.0) or 1.0
        level, last = 0, None
        for v, pname in marks:
            level = level + 1 if last is not None and v - last < 0.04 * span else 0  # stagger close labels
            last = v
            fig.add_vline(x=v, line=dict(color="rgba(90,90,90,0.65)", dash="dot", width=1), row=1, col=1)
            fig.add_annotation(x=v, y=1.0, yref="y domain", xref="x", text=pname.replace("twins-", ""),
                               textangle=-90, showarrow=False, xanchor="right", yanchor="top", yshift=-60 * level,
                               font=dict(size=10, color="#555"))
        if marks:
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"published Twins ({x})",
                                     line=dict(color="rgba(90,90,90,0.65)", dash="dot")), row=1, col=1)
    fig.update_xaxes(title_text=METRIC_LABELS.get(x, "trial") if x else "trial", row=1, col=1)
    fig.update_yaxes(title_text=METRIC_LABELS.get(y, y), row=1, col=1)
    if len(df):
        fig.add_trace(go.Scatter(x=df["number"], y=hv, mode="lines", name="hypervolume", line=dict(shape="hv",
                                 color="#3b1f2b"), showlegend=False), row=1, col=2)
    fig.update_xaxes(title_text="trial", row=1, col=2)
    fig.update_yaxes(title_text="hypervolume (reference 1.1 per objective)", rangemode="tozero", row=1, col=2)
    fig.update_layout(title=title, template="plotly_white", width=1400, height=620,
                      legend=dict(orientation="h", yanchor="top", y=-0.14, x=0))
    return fig


# ---- the export ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Picked:
    """The architecture written to best_config.json: its lowest trial number, its metrics (the
    means of its replicates), the pick rule that chose it (``knee`` where the rule asked for
    matched no architecture and the export is not strict), its id, its trials' numbers, how
    many trainings its metrics average (its trials and the extra replicates) and the standard
    error of its accuracy (None: not measured, or no estimate)."""

    trial: int
    metrics: dict[str, float]
    pick: str
    architecture: str = ""
    trials: tuple[int, ...] = ()
    accuracy_se: float | None = None
    replicates: int = 1


@dataclass
class ExportResult:
    """What `export_study` wrote (paths), its notes (a skipped figure, a pick that fell back to
    the knee, ...) and the picked trial (None: no finished feasible trial yet)."""

    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    best: Picked | None = None


def export_study(study: optuna.Study | str, out_dir: str | Path, pick: str = "knee",
                 storage: str | None = None, png: bool = True, strict: bool = True) -> ExportResult:
    """Write best_config.json, pareto.json, trials.csv, pareto.html (+ .png) for a study
    (an `optuna.Study`, or a study name with `storage`; without one, the storage file a search
    left in `out_dir`, see `storage.existing_storage_file`). The `pick` rule is checked first.
    With `strict`, a `pick` rule no trial satisfies raises ConfigError; otherwise the knee is
    taken and a note says so."""
    rule = parse_pick(pick)
    if isinstance(study, str):
        if storage is None:
            found = existing_storage_file(Path(out_dir))
            if found is None:
                out = Path(out_dir)
                raise ConfigError(lambda name: f"{name('storage')} not given and neither {out / 'study.db'} nor "
                                  f"{out / 'study.journal'} exists; pass {name('storage')} URL_OR_FILE",
                                  field="storage")
            storage = str(found)
        spec = resolve_storage(storage, Path(out_dir))
        path = storage_file(spec)
        if path is not None and not path.is_file():
            raise ConfigError(f"storage {storage}: no such file", field="storage")
        study = load_study_for_export(study, spec)
        storage = spec
    out = Path(out_dir)
    ensure_dir(out)
    objectives = _objectives(study)
    notes: list[str] = []
    if storage is None:
        with contextlib.suppress(Exception):
            storage = storage_url(study)

    archs, noise = study_architectures(study)
    ranked, sourced, standalone_noise = _ranked_architectures(study, archs, objectives)
    by_standalone = sourced is not None and sourced["ranked_by"] == STANDALONE
    if by_standalone:
        noise = standalone_noise
        notes.append(f"the front ranks the {len(ranked)} architectures trained stand-alone by that accuracy; "
                     "every trial's own accuracy is inherited from the supernet")
    feasible = [a for a in ranked if a.feasible]
    records = promotions(study)
    rows = [a.metrics for a in feasible]
    front_idx, knee, picked, pick_note = [], None, None, None
    if feasible:
        mask = pareto_mask(rows, objectives)
        front_idx = [i for i in range(len(rows)) if mask[i]]
        knee = knee_index(rows, objectives)
        try:
            picked = select(rule, rows, objectives)
        except NoMatch as e:
            if strict:
                raise
            def knee_instead(name: Namer, e: NoMatch = e) -> str:
                return f"{e.render(name)}; picked the knee instead"
            pick_note = ArgText(knee_instead)
            notes.append(pick_note)
            picked = knee
    else:
        notes.append("no finished feasible trial yet: best_config.json and pareto.json not written")
    ids = [a.id for a in feasible]
    front_ids = {ids[i] for i in front_idx}
    knee_id = ids[knee] if knee is not None else None
    picked_id = ids[picked] if picked is not None else None
    df = trials_frame(study, archs, front_ids, picked_id, knee_id,
                      standalone=ranked if by_standalone else ())
    similar_idx = indistinguishable([rows[i] for i in front_idx], [feasible[i].se.get("accuracy") for i in front_idx],
                                    objectives)
    similar = {ids[i]: [ids[front_idx[j]] for j in near] for i, near in zip(front_idx, similar_idx)}
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    files = []
    common = _common_meta(study, storage)
    if sourced is not None:
        common["accuracy_source"] = sourced
    best = None

    def described(a: Architecture) -> dict:
        """What pareto.json and best_config.json say of an architecture beside its metrics."""
        source = {} if sourced is None else {"accuracy_source": sourced["ranked_by"]}
        return {"architecture": a.id, "replicates": a.replicates, "replicate_trials": list(a.trials), **source,
                "accuracy_se": _round(a.se.get("accuracy")),
                **{f"{m}_se": _round(v) for m, v in a.se.items() if m != "accuracy"}}

    if feasible:
        assert picked is not None and knee is not None  # set above when a trial is feasible
        first, direction = next(iter(objectives.items()))
        order = sorted(front_idx, key=lambda i: rows[i][first], reverse=direction == "maximize")
        hv = hypervolume_history([effective_metrics(t, records.get(t.number)) if _feasible(t) else None
                                  for t in study.get_trials(deepcopy=False)], objectives)
        a = feasible[picked]
        t = by_number[a.first]
        cfg = ArchConfig.from_dict(t.user_attrs["config"])
        best = Picked(trial=t.number, metrics=_clean_metrics(rows[picked]),
                      pick=rule.text if pick_note is None else "knee", architecture=a.id, trials=a.trials,
                      accuracy_se=_round(a.se.get("accuracy")), replicates=a.replicates)
        meta = dict(common, kind="best_config", pick=best.pick, pick_note=None if pick_note is None else str(pick_note),
                    trial=t.number, on_front=picked in front_idx, knee=picked == knee,
                    metrics=best.metrics, **described(a), indistinguishable_from=similar.get(a.id, []),
                    noise=noise.as_dict(), seconds=t.user_attrs.get("seconds", {}),
                    epoch_accuracies=t.user_attrs.get("epoch_accuracies", []),
                    params=t.params, hypervolume=hv[-1] if hv else None)
        cfg.to_json(out / "best_config.json", meta=meta)
        files.append(out / "best_config.json")
        configs = []
        for i in order:
            tt = by_number[feasible[i].first]
            d = ArchConfig.from_dict(tt.user_attrs["config"]).to_dict()
            d["meta"] = {"trial": tt.number, "metrics": _clean_metrics(rows[i]), **described(feasible[i]),
                         "indistinguishable_from": similar.get(ids[i], []),
                         "knee": i == knee, "picked": i == picked, "params": tt.params,
                         "seconds": tt.user_attrs.get("seconds", {}),
                         "epoch_accuracies": tt.user_attrs.get("epoch_accuracies", [])}
            configs.append(d)
        pareto = {"schema_version": SCHEMA_VERSION,
                  "meta": dict(common, kind="pareto", count=len(configs), knee_trial=feasible[knee].first,
                               picked_trial=feasible[picked].first, knee_architecture=knee_id,
                               picked_architecture=picked_id, architectures=len(feasible), noise=noise.as_dict(),
                               pick=rule.text, hypervolume=hv[-1] if hv else None,
                               order=f"best {first} first"),
                  "configs": configs}
        write_text(out / "pareto.json", json.dumps(pareto, indent=2) + "\n")
        files.append(out / "pareto.json")
    else:
        hv = [0.0] * len(df)
    with atomic_path(out / "trials.csv") as tmp:
        df.to_csv(tmp, index=False)
    files.append(out / "trials.csv")

    presets = {name: rename_legacy(row) if isinstance(row, dict) else row
               for name, row in (study.user_attrs.get("presets") or {}).items()}
    configs_of = {t.number: t.user_attrs.get("config") or {} for t in by_number.values()}
    arch_df = architecture_frame(feasible, configs_of, front_ids, knee_id, picked_id, similar)
    cloud = architecture_frame([a for a in archs if a.feasible], configs_of, set(), None, None, {})
    fig = pareto_figure(df, objectives, presets, hv, cloud=cloud,
                        cloud_name="architectures (inherited accuracy)" if by_standalone
                        else "architectures (mean of their trainings)",
                        title=f"{study.study_name}: {len(df)} trials, "
                              + (f"{len(archs)} architectures, {len(feasible)} trained stand-alone, "
                                 if by_standalone else f"{len(feasible)} feasible architectures, ")
                              + f"{len(front_idx)} on the front (space {common['space']['name']}, "
                              f"{common['device'].get('device', '')})"
                              + ("; dots: inherited accuracy, front: stand-alone" if by_standalone else ""),
                        archs=arch_df)
    written = write_figure(fig, out / "pareto.html", out / "pareto.png" if png else None, width=1400, height=620)
    files += written.files
    notes += written.notes
    return ExportResult(files=[str(f) for f in files], notes=notes, best=best)

