"""How well a trained supernet ranks architectures: its inherited-weight scores against the
stand-alone proxy accuracy (the mean of `--seeds` trainings) on `--configs` architectures drawn
at random from the space, beside params and GMACs on the same architectures; and the seconds
one score takes, with every validation image and with fixed class-balanced subsets of them.

    twins-nas supernet --space search_spaces/svt.yaml --out reports/svt-supernet/supernet
    python benchmarks/supernet_ranking.py --supernet reports/svt-supernet/supernet --configs 30

Prints a Markdown table (Kendall tau-b with a bootstrap 95 % interval, Spearman rho) and the
seed agreement of the stand-alone proxy itself (tau between its two seeds: the ceiling a
scorer is measured against); `--out FILE.json` keeps every number.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from twins_nas.config import ArchConfig
from twins_nas.search.evaluate.objective import measured_metrics
from twins_nas.search.fidelity.experiment import draw_plan
from twins_nas.search.fidelity.reliability import kendall_tau
from twins_nas.search.proxy.data import load_proxy_data
from twins_nas.search.proxy.train import train_proxy
from twins_nas.search.space.space import load_space
from twins_nas.supernet import SupernetScorer

ROOT = Path(__file__).resolve().parents[1]
SEED_BASE = 1_700_000_000  # stand-alone seeds far from any trial's or replicate's


def tau_ci(x: np.ndarray, y: np.ndarray, boots: int = 1000) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    vals = [kendall_tau(x[k], y[k]) for k in (rng.integers(0, len(x), len(x)) for _ in range(boots))]
    vals = [v for v in vals if v == v]
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default=str(ROOT / "search_spaces" / "svt.yaml"))
    ap.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    ap.add_argument("--supernet", help="folder of a supernet trained for the space")
    ap.add_argument("--configs", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=2, help="stand-alone trainings per architecture")
    ap.add_argument("--samples", default="500,250", help="validation subsets to time and rank with too")
    ap.add_argument("--seed", type=int, default=1, help="seed of the draw")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON of every number; the stand-alone trainings are kept beside it as they come "
                         "(OUT.standalone.json) and reused by the next run")
    ap.add_argument("--standalone-only", action="store_true", help="only the stand-alone trainings")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.supernet and not args.standalone_only:
        ap.error("--supernet DIR is needed (or --standalone-only)")
    space = load_space(args.space, args.overrides)
    configs = [ArchConfig(**a["config"]) for a in draw_plan(space, args.configs, 0, args.seed)["archs"]]
    cache = args.out.with_suffix(".standalone.json") if args.out else None
    done = json.loads(cache.read_text()) if cache is not None and cache.is_file() else {}
    data = load_proxy_data(space.proxy, seed=0)
    choices = space.geometry_choices()
    for i, cfg in enumerate(configs):  # the stand-alone trainings first (they need no supernet), kept as they come
        key = cfg.model_dump_json()
        if key in done:
            continue
        accs, t0 = [], time.perf_counter()
        for s in range(args.seeds):
            accs.append(float(train_proxy(cfg, space.proxy, data, seed=SEED_BASE + 1000 * i + s,
                                          resolution=space.input_size, choices=choices,
                                          every_epoch=False).accuracy))
        done[key] = {"seeds": accs, "seconds": (time.perf_counter() - t0) / args.seeds}
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(done) + "\n")
        print(f"  stand-alone {i + 1}/{len(configs)}: {', '.join(f'{a:.3f}' for a in accs)}", file=sys.stderr)
    if args.standalone_only:
        return 0
    subsets = [None] + [int(s) for s in args.samples.split(",") if s.strip()]
    scorers = {n: SupernetScorer.load(args.supernet, space, samples=n) for n in subsets}
    rows = []
    for i, cfg in enumerate(configs):
        m = measured_metrics(cfg, space)
        st = done[cfg.model_dump_json()]
        row = {"config": cfg.to_dict(), "params_m": m["params_m"], "gmacs": m["gmacs"],
               "standalone": statistics.fmean(st["seeds"]), "standalone_seeds": st["seeds"],
               "seconds_standalone": st["seconds"]}
        for n, sc in scorers.items():
            if i == 0:
                sc.score(cfg)  # warm-up
            t0 = time.perf_counter()
            row[f"supernet@{n or 'all'}"] = sc.score(cfg)
            row[f"seconds@{n or 'all'}"] = time.perf_counter() - t0
        rows.append(row)
    truth = np.array([r["standalone"] for r in rows])
    print(f"{len(rows)} architectures of {space.name} (draw seed {args.seed}); stand-alone proxy: mean of "
          f"{args.seeds} seeds, {statistics.fmean(r['seconds_standalone'] for r in rows):.1f} s per training\n")
    print("| scorer | Kendall τ vs stand-alone | 95 % CI | Spearman ρ | s per architecture |")
    print("|---|---:|---|---:|---:|")
    summary = {}
    names = ["params_m", "gmacs"] + [f"supernet@{n or 'all'}" for n in subsets]
    for name in names:
        x = np.array([r[name] for r in rows])
        tau = kendall_tau(x, truth)
        lo, hi = tau_ci(x, truth)
        rho = float(stats.spearmanr(x, truth).statistic)
        sec = statistics.fmean(r[f"seconds@{name.split('@')[1]}"] for r in rows) if "@" in name else 0.0
        summary[name] = {"kendall_tau": tau, "ci95": [lo, hi], "spearman_rho": rho, "seconds": sec}
        label = name if "@" not in name else f"supernet, {name.split('@')[1]} validation images"
        print(f"| {label} | {tau:.2f} | [{lo:.2f}, {hi:.2f}] | {rho:.2f} | {sec:.2f} |")
    if args.seeds >= 2:
        a = np.array([r["standalone_seeds"][0] for r in rows])
        b = np.array([r["standalone_seeds"][1] for r in rows])
        summary["standalone_seed_tau"] = kendall_tau(a, b)
        print(f"\nstand-alone proxy, seed 1 vs seed 2: Kendall τ {summary['standalone_seed_tau']:.2f}; "
              f"mean |difference| {100 * float(np.mean(np.abs(a - b))):.1f} points")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"space": space.name, "supernet": scorers[None].identity(),
                                        "summary": summary, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
