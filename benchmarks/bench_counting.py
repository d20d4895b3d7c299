"""Counting speed: the closed-form cost model vs fvcore's traced count, per preset.

For every preset and resolution: the analytic count (`analytic_flops`, best of many calls),
fvcore (`count_flops` on a model built once: a traced forward pass at that size) and the
one-off model build, whether the two counts agree exactly, and how many times faster the
closed form is than the trace (build excluded; with the build the ratio is larger still).

    python benchmarks/bench_counting.py                        # six presets at 224 and 1024
    python benchmarks/bench_counting.py --resolutions 224 --presets twins-svt-s
"""
from __future__ import annotations

import argparse
import platform
import time
import timeit

import torch

from twins_nas import build_model, get_preset
from twins_nas.presets import PRESETS
from twins_nas.profile import analytic_flops, count_flops
from twins_nas.profile.flops import _fvcore


def time_analytic(cfg, resolution: int) -> float:
    """Seconds per call, best of 5 rounds."""
    number = 200
    return min(timeit.repeat(lambda: analytic_flops(cfg, resolution), number=number, repeat=5)) / number


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="*", default=list(PRESETS))
    ap.add_argument("--resolutions", nargs="*", type=int, default=[224, 1024])
    args = ap.parse_args()
    _fvcore()  # import fvcore (~3 s) before timing anything
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    head = (f"{'model':<14} {'res':>5} {'GMACs':>9} {'equal':>5} {'analytic':>10} {'fvcore':>9} {'build':>7} "
            f"{'x faster':>10}")
    print(head)
    print("-" * len(head))
    for name in args.presets:
        cfg = get_preset(name)
        t0 = time.perf_counter()
        model = build_model(cfg)
        build_s = time.perf_counter() - t0
        for r in args.resolutions:
            t0 = time.perf_counter()
            traced = count_flops(model, r)
            fv_s = time.perf_counter() - t0
            closed = analytic_flops(cfg, r)
            an_s = time_analytic(cfg, r)
            same = closed.by_category == traced.by_category
            print(f"{name:<14} {r:>5} {traced.gmacs:>9.2f} {'yes' if same else 'NO':>5} {an_s * 1e6:>8.1f}us "
                  f"{fv_s:>8.2f}s {build_s:>6.2f}s {fv_s / an_s:>10,.0f}", flush=True)


if __name__ == "__main__":
    main()
