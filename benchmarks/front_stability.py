"""How stable a search's front is: re-train its members with new seeds and see which stay on it.

Reads a report's ``pareto.json`` (every front architecture once, with its mean accuracy and
throughput), trains each member's proxy (the proxy settings the study recorded) with `--seeds`
new seeds (none a trial or a replicate used), and prints per member the reported accuracy, the
new mean and its SE; then how many members stay non-dominated when the front is recomputed
on the new means (with the reported throughputs), among the members alone.

    python benchmarks/front_stability.py reports/svt-200 --seeds 3
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

from twins_nas.config import ArchConfig
from twins_nas.search.pareto import pareto_mask
from twins_nas.search.proxy.data import load_proxy_data
from twins_nas.search.proxy.settings import ProxySettings
from twins_nas.search.proxy.train import train_proxy
from twins_nas.search.space.space import space_from_dict

NEW_SEED_BASE = 1_900_000_000  # far from the trial (study seed x 1000003 + n) and replicate seeds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path, help="a search's report folder (pareto.json and study.db)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: every core)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pareto = json.loads((args.report / "pareto.json").read_text())
    meta = pareto["meta"]
    objectives = dict(meta["objectives"])
    import optuna  # heavy import: see README
    study = optuna.load_study(study_name=meta["study"], storage=f"sqlite:///{args.report / 'study.db'}")
    space = space_from_dict(study.user_attrs["space"])
    proxy = ProxySettings(**{k: v for k, v in meta["proxy"].items()})
    data = load_proxy_data(proxy, seed=meta.get("seed") or 0)
    rows, t0 = [], time.perf_counter()
    print(f"{'arch':>6s} {'reported':>9s} {'n':>3s} {'new mean':>9s} {'SE':>6s} {'throughput':>11s}")
    for c in pareto["configs"]:
        cfg = ArchConfig.from_dict({k: v for k, v in c.items() if k != "meta"})
        accs = [train_proxy(cfg, proxy, data, seed=NEW_SEED_BASE + 1000 * s + c["meta"]["trial"],
                            resolution=space.input_size, choices=space.geometry_choices(),
                            every_epoch=False).accuracy for s in range(args.seeds)]
        m = c["meta"]["metrics"]
        mean = statistics.fmean(accs)
        se = statistics.stdev(accs) / math.sqrt(len(accs)) if len(accs) > 1 else float("nan")
        rows.append(dict(m, accuracy=mean))
        print(f"{c['meta']['architecture']:>6s} {100 * m['accuracy']:8.1f}% {c['meta']['replicates']:3d} "
              f"{100 * mean:8.1f}% {100 * se:5.1f} {m.get('throughput', float('nan')):11.1f}", flush=True)
    stay = pareto_mask(rows, objectives)
    print(f"\n{int(stay.sum())} of {len(rows)} front architectures ({100 * stay.mean():.0f} %) stay non-dominated "
          f"on the means of {args.seeds} new seeds ({len(rows) * args.seeds} trainings, "
          f"{time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
