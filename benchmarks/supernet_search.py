"""One-shot search end to end, against the stand-alone quick start: a trained supernet, a
search of `--trials` architectures scored by their inherited weights (NSGA-II; throughput
predicted from a latency table, so no full-size model is timed), then the top of its front
trained stand-alone; its wall time by phase, architectures scored per hour beside the
stand-alone search's, and the hypervolume of both final fronts in stand-alone accuracy and the
same (predicted) throughput, with one reference point.

    python benchmarks/supernet_search.py --supernet reports/svt-supernet/supernet \\
        --out reports/svt-supernet/search --baseline reports/svt-200-fashion

The supernet's training time is read from its curve.csv (the seconds its training took);
train it first with `twins-nas supernet`. The baseline is a committed stand-alone search
report (pareto.json, trials.csv); its front's throughputs are predicted with the same table.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from twins_nas.config import ArchConfig
from twins_nas.search.latency.predictor import LatencyPredictor, images_per_second
from twins_nas.search.pareto import hypervolume_history
from twins_nas.search.run.settings import SearchSettings
from twins_nas.search.space.space import load_space
from twins_nas.search.study import run_search

ROOT = Path(__file__).resolve().parents[1]
OBJ = {"accuracy": "maximize", "throughput": "maximize"}


def front(pareto: Path, predictor: LatencyPredictor, batch: int) -> list[dict]:
    """A report's front: (stand-alone accuracy, throughput predicted with `predictor`)."""
    out = []
    for entry in json.loads(pareto.read_text())["configs"]:
        cfg = ArchConfig.from_dict({k: v for k, v in entry.items() if k != "meta"})
        out.append({"accuracy": entry["meta"]["metrics"]["accuracy"],
                    "throughput": images_per_second(batch, predictor.predict(cfg))})
    return out


def wall_seconds(trials_csv: Path) -> float:
    with trials_csv.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("datetime_start") and r.get("datetime_complete")]
    start = min(datetime.fromisoformat(r["datetime_start"]) for r in rows)
    end = max(datetime.fromisoformat(r["datetime_complete"]) for r in rows)
    return (end - start).total_seconds()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default=str(ROOT / "search_spaces" / "svt.yaml"))
    ap.add_argument("--supernet", required=True, type=Path)
    ap.add_argument("--table", default=str(ROOT / "reports" / "latency-tables" / "svt-224-classifier-eager.json"))
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--supernet-samples", type=int, default=None, help="validation images per score (default all)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every core)")
    ap.add_argument("--retrain", type=int, default=8)
    ap.add_argument("--retrain-seeds", type=int, default=2)
    ap.add_argument("--baseline", type=Path, default=ROOT / "reports" / "svt-200")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    space = load_space(args.space, [f"measure.predictor={args.table}"])
    settings = SearchSettings.for_space(space, args.trials, out_dir=args.out, sampler="nsga2", seed=args.seed,
                                        device="cpu", supernet=str(args.supernet), retrain=args.retrain,
                                        retrain_seeds=args.retrain_seeds, supernet_samples=args.supernet_samples,
                                        threads=args.threads)
    with (args.supernet / "curve.csv").open(newline="") as f:
        supernet_s = float(list(csv.DictReader(f))[-1]["seconds"])
    t0 = time.perf_counter()
    outcome = run_search(space, settings)
    total_s = time.perf_counter() - t0
    study = json.loads((args.out / "pareto.json").read_text())["meta"]
    retrain_s = float(study["accuracy_source"]["seconds"])
    search_s = total_s - retrain_s
    predictor = LatencyPredictor.load(args.table)
    mine = front(args.out / "pareto.json", predictor, space.measure.batch_size)
    base = front(args.baseline / "pareto.json", predictor, space.measure.batch_size)
    hv_mine = hypervolume_history(mine + base, OBJ)[len(mine) - 1]
    hv_base = hypervolume_history(base + mine, OBJ)[len(base) - 1]
    base_s = wall_seconds(args.baseline / "trials.csv")
    base_n = len(list(csv.DictReader((args.baseline / "trials.csv").open())))
    mine_s = supernet_s + search_s + retrain_s
    print(f"search: {outcome.finished} trials ({outcome.stopped}); notes: {'; '.join(map(str, outcome.notes))}")
    print("| phase | minutes |\n|---|---:|")
    print(f"| supernet training | {supernet_s / 60:.1f} |\n| search of {args.trials} trials (inherited) | "
          f"{search_s / 60:.1f} |\n| stand-alone training of the top {args.retrain} x {args.retrain_seeds} seeds | "
          f"{retrain_s / 60:.1f} |\n| **total** | **{mine_s / 60:.1f}** |")
    rate_mine, rate_base = 3600 * args.trials / mine_s, 3600 * base_n / base_s
    print(f"\narchitectures scored per hour: {rate_mine:.0f} one-shot (supernet training included) vs "
          f"{rate_base:.0f} stand-alone ({args.baseline.name}: {base_n} trials in {base_s / 60:.1f} min): "
          f"{rate_mine / rate_base:.1f}x")
    print(f"hypervolume (stand-alone accuracy x predicted throughput, scaled over both fronts, reference 1.1): "
          f"one-shot {hv_mine:.3f} ({len(mine)} on its front) vs {args.baseline.name} {hv_base:.3f} "
          f"({len(base)} on its front)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
