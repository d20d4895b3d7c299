"""Runtimes side by side: eager PyTorch vs ONNX Runtime (and torch.compile with --compile) for
the six published models, and whether a search's knee changes when its front is timed in
ONNX Runtime instead of eager PyTorch.

Part 1: every preset at `--size` (224), batch 1 and 8, fp32, `--threads` torch/ORT threads:
latency (`measure_latency`, the fastest pass) per runtime and its ratio to eager; the
export / compilation time is reported apart (`prepare_s`).

Part 2 (`--study DIR`, default reports/svt-200): the study's architectures on its first
non-dominated layers of (mean accuracy, throughput) until `--archs` are taken (the front and
its runners-up), each timed as the study's space measures it (224, batch 8) with eager and
with onnxruntime; the front and the knee of the mean accuracies vs each throughput, and
whether the knee is the same architecture.

    python benchmarks/runtimes.py                  # presets, batch 1 and 8; then the svt-200 front
    python benchmarks/runtimes.py --no-study --compile
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import optuna
import torch

from twins_nas.presets import PRESETS, get_preset
from twins_nas.profile.backends import MeasureSpec, timing_model
from twins_nas.profile.latency import measure_latency
from twins_nas.search.pareto import knee_index, nondominated_ranks, pareto_mask
from twins_nas.search.run.replication import study_architectures
from twins_nas.search.space.space import space_from_dict

ROOT = Path(__file__).resolve().parents[1]


def presets_part(runtimes: list[str], size: int, spec: MeasureSpec) -> None:
    others = runtimes[1:]
    print("| preset | batch | " + " | ".join(f"{r} ms" for r in runtimes) + " | "
          + " | ".join(f"{r} / eager" for r in others) + " | " + " | ".join(f"{r} prepare s" for r in others) + " |")
    print("|---|---|" + "---|" * (3 * len(runtimes) - 2))
    for batch in (1, 8):
        for name in PRESETS:
            model = timing_model(get_preset(name))
            reps = {r: measure_latency(model, size, spec=replace(spec, batch=batch, backend=r)) for r in runtimes}
            base = reps["eager"].latency_ms
            print(f"| {name} | {batch} | " + " | ".join(f"{reps[r].latency_ms:.1f}" for r in runtimes) + " | "
                  + " | ".join(f"{reps[r].latency_ms / base:.2f}" for r in runtimes[1:]) + " | "
                  + " | ".join(f"{reps[r].prepare_s:.1f}" for r in runtimes[1:]) + " |", flush=True)


def study_part(study_dir: Path, archs: int, spec: MeasureSpec) -> None:
    storage = f"sqlite:///{study_dir / 'study.db'}"
    name = optuna.get_all_study_names(storage)[0]
    study = optuna.load_study(study_name=name, storage=storage)
    space = space_from_dict(study.user_attrs["space"])
    objectives = dict(space.objectives)
    pool, _ = study_architectures(study)
    pool = [a for a in pool if a.feasible and a.metrics.get("accuracy") is not None]
    ranks = nondominated_ranks([a.metrics for a in pool], objectives)
    order = sorted(range(len(pool)), key=lambda i: (ranks[i], -pool[i].metrics["accuracy"]))
    top = max(ranks[i] for i in order[:archs])
    picked = [pool[i] for i in order if ranks[i] <= top]
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    cfgs = {a.id: space.config_from_params(trials[a.first].params) for a in picked}
    spec = replace(spec, batch=space.measure.batch_size)
    print(f"\n{len(picked)} architectures of {study_dir} (non-dominated layers 1-{top}), "
          f"{space.measure_size[0]}x{space.measure_size[1]} px, batch {spec.batch}:")
    knees = {}
    for runtime in ("eager", "onnxruntime"):
        rows = []
        for a in picked:
            rep = measure_latency(timing_model(cfgs[a.id]), space.measure_size, spec=replace(spec, backend=runtime))
            rows.append({"accuracy": a.metrics["accuracy"], "throughput": rep.throughput})
        front = [picked[i].id for i in range(len(picked)) if pareto_mask(rows, objectives)[i]]
        knee = picked[knee_index(rows, objectives)].id
        knees[runtime] = knee
        print(f"{runtime:12s} front {', '.join(front)}; knee {knee}; throughput "
              + ", ".join(f"{a.id} {r['throughput']:.1f}" for a, r in zip(picked, rows)), flush=True)
    same = knees["eager"] == knees["onnxruntime"]
    print(f"the knee {'is the same architecture' if same else 'changes'}: eager {knees['eager']}, "
          f"onnxruntime {knees['onnxruntime']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=1, help="torch / ONNX Runtime threads")
    ap.add_argument("--budget", type=float, default=1.0, help="seconds of timing per model and runtime")
    ap.add_argument("--compile", action="store_true", help="also torch.compile (minutes of compilation)")
    ap.add_argument("--study", default=str(ROOT / "reports" / "svt-200"))
    ap.add_argument("--no-study", action="store_true")
    ap.add_argument("--archs", type=int, default=20, help="architectures of the study, at least")
    ap.add_argument("--no-presets", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = MeasureSpec(device="cpu", threads=args.threads, budget_s=args.budget)
    runtimes = ["eager", "onnxruntime"] + (["compile"] if args.compile else [])
    print(f"cpu, {args.threads} thread(s), fp32, {args.size} px")
    if not args.no_presets:
        presets_part(runtimes, args.size, spec)
    if not args.no_study:
        study_part(Path(args.study), args.archs, spec)


if __name__ == "__main__":
    main()
