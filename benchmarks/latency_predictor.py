"""Latency-predictor benchmark: predicted vs measured latency of held-out models, per input
size / head and runtime, beside the noise floor of the measurement itself.

    python benchmarks/latency_predictor.py                          # svt.yaml, 224 and 512x512 semantic-fpn, eager
    python benchmarks/latency_predictor.py --runtime eager,onnxruntime
    python benchmarks/latency_predictor.py --configs 3 --sizes 224  # a quick run

For each size (``224``: the classifier; ``512:semantic-fpn``: that dense head) and runtime, a
latency table of the space (`--space`, default search_spaces/svt.yaml) at the space's batch is
built (`build_latency_table`, with the six published models' blocks too) into `--table-dir`,
or reused when a table of that name is there. Then `--configs` random configs of the space
(seeded; none of the table's calibration models) and the six presets (with the space's
classes) are predicted and measured: measured = the median of `--repeats` `measure_latency`
calls, done twice; the second measurement against the first is the noise floor. Printed per
row: MAPE, worst error, share within ±10 %, and Kendall's τ of the predicted vs the measured
order, for the predictor and for the noise floor, as a markdown table.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from scipy.stats import kendalltau

from twins_nas.config import ArchConfig
from twins_nas.presets import PRESETS, get_preset
from twins_nas.profile.backends import BACKENDS, MeasureSpec, timing_model, torch_threads
from twins_nas.profile.latency import measure_latency
from twins_nas.search.latency import LatencyPredictor
from twins_nas.search.latency.build import TABLE_SPEC, build_latency_table
from twins_nas.search.space.space import load_space, network_key

ROOT = Path(__file__).resolve().parents[1]


def parse_sizes(text: str) -> list[tuple[str, str | None]]:
    """'224,512:semantic-fpn' -> [('224', None), ('512', 'semantic-fpn')]."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        size, _, head = part.partition(":")
        out.append((size, head or None))
    return out


def errors(pred: list[float], meas: list[float]) -> dict[str, float]:
    rel = [abs(p / m - 1) for p, m in zip(pred, meas)]
    tau = kendalltau(pred, meas).statistic if len(pred) > 1 else float("nan")
    return {"mape": 100 * statistics.fmean(rel), "worst": 100 * max(rel),
            "within": 100 * sum(r <= 0.10 for r in rel) / len(rel), "tau": float(tau)}


def measured(model, size, spec: MeasureSpec, repeats: int) -> float:
    return statistics.median(measure_latency(model, size, spec=spec).latency_ms for _ in range(repeats))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default=str(ROOT / "search_spaces" / "svt.yaml"))
    ap.add_argument("--sizes", default="224,512:semantic-fpn", help="size[:head], comma-separated")
    ap.add_argument("--runtime", default="eager", help="timing backends, comma-separated")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: the space's measure.batch_size)")
    ap.add_argument("--configs", type=int, default=30, help="held-out random configs (plus the six presets)")
    ap.add_argument("--no-presets", action="store_true", help="random configs only")
    ap.add_argument("--repeats", type=int, default=3, help="measure_latency calls per measurement (median)")
    ap.add_argument("--calibration", type=int, default=8)
    ap.add_argument("--block-budget", type=float, default=TABLE_SPEC.budget_s, help="seconds of timing per block")
    ap.add_argument("--budget", type=float, default=1.0, help="seconds of timing per measure_latency call")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--table-dir", default=str(ROOT / "reports" / "latency-tables"),
                    help="where tables are built, or reused when present")
    args = ap.parse_args(argv)

    rows = []
    for runtime in [r.strip() for r in args.runtime.split(",") if r.strip()]:
        if runtime not in BACKENDS:
            print(f"skipping runtime {runtime!r}: not a registered timing backend ({', '.join(BACKENDS)})",
                  file=sys.stderr)
            continue
        for size, head in parse_sizes(args.sizes):
            overrides = [f"measure.size={size}"] + ([f"measure.head={head}"] if head else [])
            overrides += [f"measure.batch_size={args.batch}"] if args.batch else []
            space = load_space(args.space, overrides)
            classes = space.num_classes
            presets = [] if args.no_presets else [get_preset(n).replace(num_classes=classes) for n in PRESETS]
            spec = replace(TABLE_SPEC, device=args.device, threads=args.threads, backend=runtime,
                           budget_s=args.block_budget)
            path = Path(args.table_dir) / (f"{space.name}-{size}-{head or 'classifier'}-{runtime}"
                                           f"{f'-b{args.batch}' if args.batch else ''}.json")
            t0 = time.perf_counter()
            if not path.is_file():
                print(f"building {path} ...", file=sys.stderr)
                build_latency_table(space, spec, path, calibration=args.calibration, extra=presets)
            build_s = time.perf_counter() - t0
            predictor = LatencyPredictor.load(path)
            calibrated = {network_key(ArchConfig.from_dict(r["config"])) for r in predictor.table.calibration}
            rng, configs = random.Random(args.seed), []
            while len(configs) < args.configs:
                cfg = space.random_config(rng)
                if network_key(cfg) not in calibrated | {network_key(c) for c in configs}:
                    configs.append(cfg)
            whole = replace(spec, batch=space.measure.batch_size, budget_s=args.budget, rounds=3)
            pred, first, second = [], [], []
            with torch_threads(args.threads):
                for i, cfg in enumerate(configs + presets):
                    print(f"  {runtime} {size} {head or ''}: model {i + 1}/{len(configs) + len(presets)}",
                          file=sys.stderr)
                    pred.append(predictor.predict(cfg))
                    model = timing_model(cfg, space.measure.head_config)
                    first.append(measured(model, space.measure_size, whole, args.repeats))
                    second.append(measured(model, space.measure_size, whole, args.repeats))
            rows.append({"size": size, "head": head or "classifier", "runtime": runtime,
                         "batch": space.measure.batch_size, "models": len(pred),
                         "blocks": len(predictor.table.blocks), "build_s": predictor.table.build_s or build_s,
                         "fit": f"{predictor.table.fit.a:.2f}x+{predictor.table.fit.b:.1f}",
                         **{f"p_{k}": v for k, v in errors(pred, first).items()},
                         **{f"n_{k}": v for k, v in errors(second, first).items()}})

    print("| size | head | runtime | batch | models | blocks | table s | fit (ms) | MAPE % | worst % | within ±10 % "
          "| τ | noise MAPE % | noise worst % | noise within ±10 % | noise τ |")
    print("|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size']} | {r['head']} | {r['runtime']} | {r['batch']} | {r['models']} | {r['blocks']} | "
              f"{r['build_s']:.0f} | {r['fit']} | {r['p_mape']:.1f} | {r['p_worst']:.1f} | {r['p_within']:.0f} | "
              f"{r['p_tau']:.2f} | "
              f"{r['n_mape']:.1f} | {r['n_worst']:.1f} | {r['n_within']:.0f} | {r['n_tau']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
