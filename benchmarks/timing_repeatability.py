"""How far one timing moves between separate processes, before and after interleaved rounds.

Every config (the six presets and `--random` configs drawn from `--space`) is timed at
`--size` in `--processes` separate Python processes, one after another, at each `--batch`. Each
process times it twice, with the same network, in random order:

* before: one stretch of passes reported as their median (``rounds=1, statistic=median``: how
  twins-nas timed before rounds existed);
* after: interleaved rounds, the lowest round median (``statistic=best-round``).

From the "after" passes it also reads the other statistics: `after-min` (the fastest pass:
`MeasureSpec`'s default, chosen on these figures) and `after-median`. It prints, per
config and batch, the spread across processes (largest / smallest - 1) of each figure, and the
worst and median spread per way. The rows come from the same processes, so the ways are
compared under the same load.

    python benchmarks/timing_repeatability.py                  # presets + 4 random configs, batch 1 and 8
    python benchmarks/timing_repeatability.py --random 2 --batch 1 --no-presets
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
from dataclasses import replace

WAYS = ("before", "after", "after-min", "after-median")


def child(args: argparse.Namespace) -> None:
    """One process: time the config both ways and print the figures as JSON."""
    import torch

    from twins_nas.presets import get_preset
    from twins_nas.profile.backends import MeasureSpec, timing_model
    from twins_nas.profile.latency import time_forward
    from twins_nas.search.space.space import load_space

    torch.set_num_threads(args.threads)
    if args.config.startswith("random:"):
        cfg = load_space(args.space).random_config(random.Random(int(args.config.split(":")[1])))
    else:
        cfg = get_preset(args.config)
    model = timing_model(cfg).eval()
    x = torch.randn(args.batch, 3, args.size, args.size)
    after = MeasureSpec(device="cpu", batch=args.batch, budget_s=args.budget, statistic="best-round")
    before = replace(after, rounds=1, statistic="median")
    order = [("before", before), ("after", after)]
    random.Random(args.order_seed).shuffle(order)
    out = {}
    for way, spec in order:
        t = time_forward(model, x, spec)
        out[way] = t.latency_ms
        if way == "after":
            out["after-min"] = replace(t, statistic="min").latency_ms
            out["after-median"] = replace(t, statistic="median").latency_ms
            out["rounds"], out["within_spread"] = len(t.rounds), t.spread
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="search_spaces/svt.yaml")
    ap.add_argument("--random", type=int, default=4, help="random configs of --space (seeds 1..N)")
    ap.add_argument("--no-presets", action="store_true")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--processes", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget", type=float, default=2.0, help="MeasureSpec.budget_s of each timing")
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--order-seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.config:
        args.batch = int(args.batch)
        child(args)
        return
    from twins_nas.presets import PRESETS

    configs = ([] if args.no_presets else list(PRESETS)) + [f"random:{i}" for i in range(1, args.random + 1)]
    print("| config | batch | " + " | ".join(f"{w} ms (spread)" for w in WAYS) + " |")
    print("|---|---|" + "---|" * len(WAYS))
    spreads: dict[str, list[float]] = {w: [] for w in WAYS}
    for batch in (int(b) for b in args.batch.split(",")):
        for config in configs:
            runs = []
            for p in range(args.processes):
                cmd = [sys.executable, __file__, "--config", config, "--batch", str(batch), "--size", str(args.size),
                       "--threads", str(args.threads), "--budget", str(args.budget), "--space", args.space,
                       "--order-seed", str(p)]
                runs.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
            cells = []
            for w in WAYS:
                vals = [r[w] for r in runs]
                s = max(vals) / min(vals) - 1
                spreads[w].append(s)
                cells.append(f"{statistics.median(vals):.1f} ({100 * s:.0f} %)")
            print(f"| {config} | {batch} | " + " | ".join(cells) + " |", flush=True)
    print()
    for w in WAYS:
        print(f"{w:13s} spread across {args.processes} processes: median {100 * statistics.median(spreads[w]):.1f} %, "
              f"worst {100 * max(spreads[w]):.1f} %, within 10 %: {sum(s <= 0.10 for s in spreads[w])}/"
              f"{len(spreads[w])}")


if __name__ == "__main__":
    main()
