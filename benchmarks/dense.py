"""Dense-prediction benchmark: writes `reports/dense/` and prints the README's figures.

    python benchmarks/dense.py                 # the report, the retarget table, the timing check
    python benchmarks/dense.py --budget 60     # less latency measured (the rest estimated)
    python benchmarks/dense.py --retarget-only # the retarget table alone (step 2)

1. `twins-nas profile` of the six presets with a Semantic FPN head (150 classes) at 512x512,
   512x2048, 1024x1024 and 800x1333, latency budgeted as `profile` does (`--budget` seconds),
   into reports/dense/ (profile.csv, optimality.csv/.json, the figures).
2. Every preset retargeted to 1024x1024 (`twins_nas.models.retarget`, parameter budget
   `--max-params-growth`, default 1.1): the configs into reports/dense/retargeted/, and per
   preset k and the sub-sampling function per stage, the attention matmuls' GMACs, the dense
   model's GMACs and params before and after, the backbone's measured latency before and after
   (`profile.stage_time`: the two models built once and timed in turns, `--rounds` times,
   medians), and what happens to a checkpoint;
   written as reports/dense/retarget.csv and printed as a table.
3. The wall time of `twins-nas profile --size 1024x2048 --head semantic-fpn --no-latency`
   (a fresh process each time, the median of 3).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from twins_nas.models import head_config
from twins_nas.models.cost_model import analytic_flops
from twins_nas.models.head_cost import analytic_dense_flops, analytic_dense_params
from twins_nas.models.param_budget import DEFAULT_MAX_PARAMS_GROWTH
from twins_nas.models.retarget import retarget
from twins_nas.presets import PRESETS, get_preset
from twins_nas.profile.stage_time import stage_latency, timing_model

SIZES = "512x512,512x2048,1024x1024,800x1333"
TARGET = (1024, 1024)


def cli(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "twins_nas", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="reports/dense")
    ap.add_argument("--budget", type=float, default=240.0, help="seconds of forward passes for the profile")
    ap.add_argument("--timing-budget", type=float, default=4.0, help="seconds per model and round of stage timing")
    ap.add_argument("--rounds", type=int, default=5, help="turns of timing the original and the retargeted model")
    ap.add_argument("--skip-profile", action="store_true", help="keep the profile already in --out")
    ap.add_argument("--retarget-only", action="store_true", help="step 2 alone: the retarget table")
    ap.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets to retarget")
    ap.add_argument("--max-params-growth", type=float, default=DEFAULT_MAX_PARAMS_GROWTH,
                    help="retarget's parameter budget (inf: none)")
    args = ap.parse_args()
    out = Path(args.out)
    growth = None if args.max_params_growth == float("inf") else args.max_params_growth

    if not (args.skip_profile or args.retarget_only):
        presets = [a for name in PRESETS for a in ("--preset", name)]
        took = cli("profile", *presets, "--size", SIZES, "--head", "semantic-fpn", "--budget", str(args.budget),
                   "--no-panels", "--out", str(out))
        print(f"profile of {len(PRESETS)} presets x 4 sizes with semantic-fpn: {took:.0f} s -> {out}/")

    head = head_config("semantic-fpn")
    rows = []
    (out / "retargeted").mkdir(parents=True, exist_ok=True)
    for name in args.presets.split(","):
        cfg = get_preset(name)
        res = retarget(cfg, TARGET, max_params_growth=growth)
        new = res.config
        new.to_json(out / "retargeted" / f"{new.name}.json",
                    meta=dict(retargeted_from=name, size=list(TARGET), weights=res.weights, **res.budget.to_dict()))
        a, b = analytic_flops(cfg, TARGET), analytic_flops(new, TARGET)
        da, db = analytic_dense_flops(cfg, head, TARGET), analytic_dense_flops(new, head, TARGET)
        models = timing_model(cfg), timing_model(new)
        turns: tuple = ([], [])
        for _ in range(args.rounds):  # in turns: both see the same machine state
            for m, times in zip(models, turns):
                times.append(stage_latency(m, TARGET, "cpu", budget_s=args.timing_budget))
        before, after = (statistics.median(t.total_ms for t in times) for times in turns)
        device = turns[0][0].device
        rows.append(dict(
            model=name, size=f"{TARGET[0]}x{TARGET[1]}",
            k=" ".join(f"{s.sr_pair[0]}x{s.sr_pair[1]}" for s in cfg.stages),
            k_retargeted=" ".join(f"{s.sr_pair[0]}x{s.sr_pair[1]}" for s in new.stages),
            subsample=" ".join(s.subsample for s in cfg.stages),
            subsample_retargeted=" ".join(s.subsample for s in new.stages),
            params_growth=res.budget.growth,
            windows_retargeted=" ".join("-" if s.window is None else f"{s.window[0]}x{s.window[1]}"
                                        for s in new.stages),
            attn_gmacs=a.attention / 1e9, attn_gmacs_retargeted=b.attention / 1e9,
            attn_cut_pct=100 * (1 - b.attention / a.attention),
            dense_gmacs=da.gmacs, dense_gmacs_retargeted=db.gmacs, dense_cut_pct=100 * (1 - db.total / da.total),
            params_m=analytic_dense_params(cfg, head)["total"] / 1e6,
            params_m_retargeted=analytic_dense_params(new, head)["total"] / 1e6,
            backbone_ms=before, backbone_ms_retargeted=after,
            latency_cut_pct=100 * (1 - after / before), device=device,
            weights=",".join(res.weights)))
        print(f"retargeted {name}: attention {rows[-1]['attn_cut_pct']:.1f} % less, backbone "
              f"{before:.0f} -> {after:.0f} ms", flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(out / "retarget.csv", index=False)

    print(f"\n### Retargeted to {TARGET[0]}x{TARGET[1]} (min keys 49, aspect <= 2, max params growth "
          f"{args.max_params_growth:g}; {rows[0]['device']}, torch {torch.__version__})\n")
    print("| model | k per stage -> retargeted | sub-sampling | attention matmuls GMACs | dense GMACs (+ Semantic FPN) "
          "| params M (dense) | backbone latency ms (CPU) | weights |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['k']} -> {r['k_retargeted']} | {r['subsample']} -> {r['subsample_retargeted']} "
              f"| {r['attn_gmacs']:.2f} -> "
              f"{r['attn_gmacs_retargeted']:.2f} (**-{r['attn_cut_pct']:.0f} %**) | {r['dense_gmacs']:.1f} -> "
              f"{r['dense_gmacs_retargeted']:.1f} (-{r['dense_cut_pct']:.1f} %) | {r['params_m']:.1f} -> "
              f"{r['params_m_retargeted']:.1f} ({100 * r['params_m_retargeted'] / r['params_m'] - 100:+.1f} %) | "
              f"{r['backbone_ms']:.0f} -> {r['backbone_ms_retargeted']:.0f} "
              f"({-r['latency_cut_pct']:+.0f} %) | {r['weights']} |")
    if args.retarget_only:
        return

    prof = pd.read_csv(out / "profile.csv")
    print("\n### Dense models (profile.csv)\n")
    print("| model | size | params M | GMACs backbone / neck / head | attention share | latency ms (CPU) "
          "| retarget: attention cut |")
    print("|---|---|---|---|---|---|---|")
    for _, r in prof.iterrows():
        lat = (f"{r['latency_ms']:,.0f}" if r["latency_ms"] == r["latency_ms"]
               else f"~{r['latency_est_ms']:,.0f} (est.)")
        print(f"| {r['model']} | {r['size']} | {r['params_m']:.1f} | {r['gmacs']:.1f} = {r['backbone_gmacs']:.1f} / "
              f"{r['neck_gmacs']:.1f} / {r['head_gmacs']:.1f} | {100 * r['attn_share']:.1f} % | {lat} | "
              f"-{r['retarget_attn_cut_pct']:.0f} % |")

    with tempfile.TemporaryDirectory() as tmp:
        times = [cli("profile", "--size", "1024x2048", "--head", "semantic-fpn", "--no-latency", "--out", tmp)
                 for _ in range(3)]
    print(f"\n`twins-nas profile --size 1024x2048 --head semantic-fpn --no-latency`: median "
          f"{statistics.median(times):.2f} s of 3 ({', '.join(f'{t:.2f}' for t in times)}; target <= 5 s)")


if __name__ == "__main__":
    main()
