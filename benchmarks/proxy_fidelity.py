"""Proxy fidelity: does the default (cheap) proxy rank architectures like a longer one?

Draws N architectures uniformly from a search space (default search_spaces/svt.yaml), keeping
only those that meet the space's params_m / gmacs constraints (the closed-form cost model the search uses),
trains each with the space's proxy settings and with an 8x longer budget, and prints Kendall's
tau and Spearman's rho between the two accuracy rankings (scipy.stats).

The longer budget multiplies `train_samples` by the factor (more distinct images, same epochs
and schedule; `--long-mode epochs` multiplies the epochs instead). Both runs use the same
validation images (the split does not depend on train_samples) and the same seed.

Measured (svt.yaml defaults: 6000 samples x 2 epochs, batch 256, 32 px, width 0.25; long =
48000 samples x 2 epochs; 20 architectures, seed 0, CPU): short accuracy 0.757-0.802, long
0.864-0.877, Kendall tau = 0.421 (p = 0.010), Spearman rho = 0.548 (p = 0.012).

    python benchmarks/proxy_fidelity.py                   # 20 archs, default proxy vs 8x samples
    python benchmarks/proxy_fidelity.py --n 24 --long-mode epochs --json fidelity.json
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

from twins_nas.config import ArchConfig
from twins_nas.search.data import load_proxy_data
from twins_nas.search.objective import cheap_metrics, constraint_values
from twins_nas.search.proxy_train import train_proxy
from twins_nas.search.space import SearchSpace, load_space


def feasible(space: SearchSpace, cfg: ArchConfig) -> bool:
    """The space's closed-form constraints (params_m, gmacs), checked exactly as the search
    checks them; bounds on measured figures (latency, throughput, ...) are not checked here."""
    violations = constraint_values(cheap_metrics(cfg, space.resolution), space.constraints)
    return all(v <= 0 for v in violations.values())


def sample_archs(space: SearchSpace, n: int, seed: int) -> list[ArchConfig]:
    rng = random.Random(seed)
    out, seen = [], set()
    for _ in range(200 * n):
        cfg = space.random_config(rng)
        key = cfg.to_json(indent=None)
        if key not in seen and feasible(space, cfg):
            seen.add(key)
            out.append(cfg)
            if len(out) == n:
                return out
    raise SystemExit(f"only {len(out)} feasible architectures found in {200 * n} draws")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default=str(Path(__file__).resolve().parents[1] / "search_spaces" / "svt.yaml"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="space override")
    ap.add_argument("--n", type=int, default=20, help="architectures (default 20)")
    ap.add_argument("--factor", type=int, default=8, help="budget multiplier of the long proxy (default 8)")
    ap.add_argument("--long-mode", choices=["samples", "epochs"], default="samples")
    ap.add_argument("--seed", type=int, default=0, help="architecture draw and training seed")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", help="write per-architecture results here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from scipy.stats import kendalltau, spearmanr

    space = load_space(args.space, args.set)
    short = space.proxy
    if args.long_mode == "samples":
        long = short.model_copy(update={"train_samples": short.train_samples * args.factor})
    else:
        long = short.model_copy(update={"epochs": short.epochs * args.factor})
    archs = sample_archs(space, args.n, args.seed)
    print(f"{len(archs)} architectures from {space.source} (constraints {dict(space.constraints)}); "
          f"short: {short.train_samples} samples x {short.epochs} epochs; "
          f"long: {long.train_samples} x {long.epochs} ({args.factor}x {args.long_mode}); "
          f"{torch.get_num_threads()} threads", flush=True)
    data_s, data_l = load_proxy_data(short, args.seed), load_proxy_data(long, args.seed)
    rows = []
    t_start = time.perf_counter()
    for i, cfg in enumerate(archs):
        rs = train_proxy(cfg, short, data_s, seed=args.seed)
        rl = train_proxy(cfg, long, data_l, seed=args.seed)
        rows.append(dict(index=i, depths=cfg.depths, dims=cfg.embed_dims, patterns=[s.pattern for s in cfg.stages],
                         **{k: round(v, 3) for k, v in cheap_metrics(cfg, space.resolution).items() if k != "params"},
                         short_acc=rs.accuracy, long_acc=rl.accuracy, short_s=round(rs.seconds, 2),
                         long_s=round(rl.seconds, 2), config=cfg.to_dict()))
        print(f"[{i + 1:2d}/{len(archs)}] depths={cfg.depths} dims={cfg.embed_dims} "
              f"{rows[-1]['params_m']:5.1f}M {rows[-1]['gmacs']:.2f}G  short {rs.accuracy:.4f} ({rs.seconds:4.1f}s)"
              f"  long {rl.accuracy:.4f} ({rl.seconds:5.1f}s)", flush=True)
    short_acc = [r["short_acc"] for r in rows]
    long_acc = [r["long_acc"] for r in rows]
    tau = kendalltau(short_acc, long_acc)
    rho = spearmanr(short_acc, long_acc)
    mean_s = sum(r["short_s"] for r in rows) / len(rows)
    print(f"short proxy: mean {mean_s:.1f} s/arch, accuracy {min(short_acc):.4f}..{max(short_acc):.4f}; "
          f"long: accuracy {min(long_acc):.4f}..{max(long_acc):.4f}; total {time.perf_counter() - t_start:.0f} s")
    print(f"Kendall tau = {tau.statistic:.3f} (p = {tau.pvalue:.3g}), "
          f"Spearman rho = {rho.statistic:.3f} (p = {rho.pvalue:.3g}), N = {len(rows)}")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(
            space=space.source, space_hash=space.hash, short=short.model_dump(), long=long.model_dump(),
            long_mode=args.long_mode, factor=args.factor, kendall_tau=tau.statistic, kendall_p=tau.pvalue,
            spearman_rho=rho.statistic, spearman_p=rho.pvalue, rows=rows), indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
