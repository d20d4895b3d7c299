"""Zero-cost scores: seconds per score on this machine, at the space's full geometry.

Draws N feasible architectures from a space (default search_spaces/svt.yaml; feasible = the
space's closed-form params_m / gmacs constraints), adds Twins-SVT-S and the draw with the most
GMACs among 400 more (the worst case the search meets), and times for each: building the
seeded network (`build_model`, as the search does once per trial), NASWOT on the minibatch of
`zero_cost.NASWOT_BATCH` proxy images at the space's resolution, SynFlow, and both through
`zero_cost_scores` (one build). Every figure is the median of `--repeats` runs after one
warm-up run (the first model build also imports timm).

With `--study FILE` (a study.db of a search over the same space), it also scores up to
`--study-trials` of that study's finished feasible trials and prints Kendall's tau between
each score and the trials' proxy accuracy, next to the tau of parameters and of GMACs alone
(the proxy accuracy is itself a noisy ranking: `twins-nas fidelity` measures it).

    python benchmarks/zero_cost_speed.py                       # 10 archs of svt.yaml, 2 threads
    python benchmarks/zero_cost_speed.py --n 20 --threads 1 --repeats 3
    python benchmarks/zero_cost_speed.py --n 0 --study reports/svt-200/study.db --study-trials 40
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import optuna
import torch

from twins_nas.config import ArchConfig
from twins_nas.hardware import cpu_model
from twins_nas.models import build_model
from twins_nas.search.evaluate.objective import constraint_values, measured_metrics
from twins_nas.search.evaluate.zero_cost import (
    NASWOT_BATCH,
    SCORES,
    naswot_score,
    scoring_batch,
    synflow_score,
    zero_cost_scores,
)
from twins_nas.search.proxy.data import load_proxy_data
from twins_nas.search.space.metrics import trial_metrics
from twins_nas.search.space.space import SearchSpace, load_space


def feasible(space: SearchSpace, cfg: ArchConfig) -> bool:
    return all(v <= 0 for v in constraint_values(measured_metrics(cfg, space), space.constraints).values())


def archs(space: SearchSpace, n: int, seed: int) -> list[tuple[str, ArchConfig]]:
    rng = random.Random(seed)
    drawn = []
    while len(drawn) < n:
        cfg = space.random_config(rng)
        if feasible(space, cfg):
            drawn.append(cfg)
    extra = [space.random_config(rng) for _ in range(400)]
    largest = max((c for c in extra if feasible(space, c)), key=lambda c: measured_metrics(c, space)["gmacs"])
    svt_s = ArchConfig.preset("twins-svt-s").replace(num_classes=space.num_classes, in_chans=space.in_chans)
    return [(f"draw {i}", c) for i, c in enumerate(drawn)] + [("twins-svt-s", svt_s), ("most GMACs", largest)]


def time_scores(space: SearchSpace, cfg: ArchConfig, images: torch.Tensor) -> tuple:
    """(build s, naswot s, synflow s, both s, naswot, synflow) of one run."""
    t0 = time.perf_counter()
    model = build_model(cfg, seed=0)
    t1 = time.perf_counter()
    nw = naswot_score(model, images)
    t2 = time.perf_counter()
    model = build_model(cfg, seed=0)  # synflow changes its model: a fresh one
    t3 = time.perf_counter()
    sf = synflow_score(model, space.resolution, space.in_chans)
    t4 = time.perf_counter()
    del model
    zero_cost_scores(cfg, SCORES, images, space.resolution)
    t5 = time.perf_counter()
    return t1 - t0, t2 - t1, t4 - t3, t5 - t4, nw, sf


def rank_against_study(path: str, n: int, seed: int, space: SearchSpace, images: torch.Tensor) -> None:
    from scipy.stats import kendalltau  # heavy import (scipy): this option only

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{path}"
    name = optuna.get_all_study_summaries(storage, include_best_trial=False)[0].study_name
    trials = [t for t in optuna.load_study(study_name=name, storage=storage).trials
              if t.user_attrs.get("status") == "ok" and "accuracy" in trial_metrics(t)]
    random.Random(seed).shuffle(trials)
    rows = []
    for t in trials[:n]:
        m = trial_metrics(t)
        scores = zero_cost_scores(ArchConfig.from_dict(t.user_attrs["config"]), SCORES, images, space.resolution)
        rows.append(dict(m, **scores))
    acc = [r["accuracy"] for r in rows]
    print(f"Kendall tau against the proxy accuracy of {len(rows)} trials of study {name!r} ({path}):")
    for metric in ("params_m", "gmacs", *SCORES):
        tau, p = kendalltau(acc, [r[metric] for r in rows])
        print(f"{metric:>9}: tau {tau:+.3f} (p = {p:.3f})")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default=str(Path(__file__).resolve().parents[1] / "search_spaces" / "svt.yaml"))
    ap.add_argument("--n", type=int, default=10, help="random feasible architectures")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--study", help="also rank the finished trials of this study.db by each score")
    ap.add_argument("--study-trials", type=int, default=40)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    space = load_space(args.space)
    images = scoring_batch(load_proxy_data(space.proxy), NASWOT_BATCH, space.resolution, space.in_chans)
    print(f"{cpu_model()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}; {space.name} at "
          f"{space.resolution} px, NASWOT batch {NASWOT_BATCH}; median of {args.repeats} after a warm-up")
    zero_cost_scores(ArchConfig.preset("twins-svt-s"), SCORES, images, space.resolution)  # warm-up (imports timm)
    print(f"{'arch':>12} {'params M':>8} {'GMACs':>6} {'build s':>7} {'naswot s':>8} {'synflow s':>9} "
          f"{'both s':>7} {'naswot':>8} {'synflow':>8}")
    rows = []
    for label, cfg in (archs(space, args.n, args.seed) if args.n > 0 else []):
        runs = [time_scores(space, cfg, images) for _ in range(args.repeats)]
        tb, tn, ts, tt = (statistics.median(r[i] for r in runs) for i in range(4))
        nw, sf = runs[0][4:]
        m = measured_metrics(cfg, space)
        rows.append((tb, tn, ts, tt))
        print(f"{label:>12} {m['params_m']:8.1f} {m['gmacs']:6.2f} {tb:7.2f} {tn:8.2f} {ts:9.2f} {tt:7.2f} "
              f"{nw:8.1f} {sf:8.2f}", flush=True)
    for name, i in (("build", 0), ("naswot", 1), ("synflow", 2), ("both (one build)", 3)):
        vals = [r[i] for r in rows]
        if vals:
            print(f"{name:>17}: mean {statistics.mean(vals):.2f} s, max {max(vals):.2f} s")
    if rows:
        worst = max(max(r[0] + r[1], r[0] + r[2]) for r in rows)
        print(f"worst single score including its build: {worst:.2f} s")
    if args.study:
        rank_against_study(args.study, args.study_trials, args.seed, space, images)


if __name__ == "__main__":
    sys.exit(main())
