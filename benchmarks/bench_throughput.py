"""Throughput of our Twins against timm's, same architecture and the same weights.

For each preset, timm's model is created (`pretrained=False`) and its state dict is loaded into
ours, so both compute the same function. Two measurements, each interleaved so that a change in
machine load hits both implementations alike (every repeat runs ours then timm's, or timm's then
ours, alternating):

* forward: eval mode, `torch.inference_mode`, images/s;
* train step: train mode, forward + cross-entropy + backward + AdamW step, images/s.

Reported: the median over the repeats of each, and ours / timm (> 1: ours is faster).
Defaults: CPU fp32 batch 8 at 224; on a GPU bf16 autocast, batch 64.

    python benchmarks/bench_throughput.py                       # all six presets
    python benchmarks/bench_throughput.py --models twins-svt-s,twins-pcpvt-s --repeats 9 --check
    python benchmarks/bench_throughput.py --device cuda --batch 128 --dtype bf16
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time

import timm
import torch
import torch.nn.functional as F

from twins_nas.models import build_model, fast_paths_enabled
from twins_nas.presets import PRESETS, TIMM_NAMES, get_preset
from twins_nas.profile.latency import Timer, autocast_context, resolve_device


def build_pair(name: str, device: torch.device):
    """(ours, timm's) with identical weights."""
    theirs = timm.create_model(TIMM_NAMES[name], pretrained=False)
    ours = build_model(get_preset(name))
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours.to(device), theirs.to(device)


@torch.inference_mode()
def max_diff(a, b, res: int, device: torch.device) -> float:
    a.eval(), b.eval()
    x = torch.randn(2, 3, res, res, device=device, generator=torch.Generator(device).manual_seed(0))
    return (a(x) - b(x)).abs().max().item()


def forward_fn(model, x, device, dtype):
    def run():
        with torch.inference_mode(), autocast_context(device, dtype):
            model(x)
    return run


def train_fn(model, x, y, device, dtype):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def run():
        with autocast_context(device, dtype):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return run


class CpuClock:
    """Process CPU time per call (ms): unlike wall time, not inflated while other processes hold
    the cores, so ratios stay meaningful on a shared machine (use with --threads 1)."""

    def __call__(self, fn) -> float:
        t0 = time.process_time()
        fn()
        return (time.process_time() - t0) * 1e3


def interleaved(fns: dict, repeats: int, iters: int, timer) -> dict:
    """Median ms per call of each fn, the fns alternating in order from repeat to repeat."""
    names = list(fns)
    times = {n: [] for n in names}
    for n in names:  # warm-up
        fns[n]()
    for r in range(repeats):
        for n in (names if r % 2 == 0 else names[::-1]):
            times[n].append(timer(lambda n=n: [fns[n]() for _ in range(iters)]) / iters)
    return {n: statistics.median(t) for n, t in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(PRESETS), help="comma-separated presets (default: all six)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=None, help="default: 8 on CPU, 64 on GPU")
    ap.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"], help="default: fp32 CPU, bf16 GPU")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=5, help="timed measurements per implementation")
    ap.add_argument("--iters", type=int, default=None, help="calls per measurement (default: 1 CPU, 10 GPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="wall time (default) or process CPU time (CPU only; robust on a busy machine with "
                         "--threads 1)")
    ap.add_argument("--no-train", action="store_true", help="forward only")
    ap.add_argument("--check", action="store_true", help="also print max |ours - timm| at 224 and 448")
    args = ap.parse_args(argv)

    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    batch = args.batch or (64 if gpu else 8)
    dtype = args.dtype or ("bf16" if gpu else "fp32")
    iters = args.iters or (10 if gpu else 1)
    if args.threads:
        torch.set_num_threads(args.threads)
    if gpu:
        torch.backends.cudnn.benchmark = True
    timer = CpuClock() if args.clock == "cpu" and not gpu else Timer(device)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    for n in names:
        if n not in PRESETS:
            sys.exit(f"error: unknown preset {n!r}; choose from {', '.join(PRESETS)}")
    where = torch.cuda.get_device_name(device) if gpu else f"cpu ({torch.get_num_threads()} threads)"
    print(f"# {where}, {dtype}, batch {batch}, {args.resolution}px, {args.repeats} interleaved repeats x {iters} "
          f"iters, {'CPU' if isinstance(timer, CpuClock) else 'wall'} clock, torch {torch.__version__}, "
          f"timm {timm.__version__}, fast paths {'on' if fast_paths_enabled() else 'off (TWINS_NAS_FAST_PATHS)'}")
    hdr = f"{'model':15s} {'fwd ours':>9s} {'fwd timm':>9s} {'ratio':>6s}"
    if not args.no_train:
        hdr += f" {'train ours':>10s} {'train timm':>10s} {'ratio':>6s}"
    if args.check:
        hdr += f" {'|d|@224':>9s} {'|d|@448':>9s}"
    print(hdr + "   (img/s)")
    for name in names:
        torch.manual_seed(0)
        ours, theirs = build_pair(name, device)
        row = f"{name:15s}"
        x = torch.randn(batch, 3, args.resolution, args.resolution, device=device)
        ours.eval(), theirs.eval()
        fwd = interleaved({"ours": forward_fn(ours, x, device, dtype), "timm": forward_fn(theirs, x, device, dtype)},
                          args.repeats, iters, timer)
        row += f" {batch * 1e3 / fwd['ours']:9.1f} {batch * 1e3 / fwd['timm']:9.1f} {fwd['timm'] / fwd['ours']:6.3f}"
        if not args.no_train:
            y = torch.randint(0, 1000, (batch,), device=device)
            ours.train(), theirs.train()
            tr = interleaved({"ours": train_fn(ours, x, y, device, dtype),
                              "timm": train_fn(theirs, x, y, device, dtype)}, args.repeats, iters, timer)
            row += f" {batch * 1e3 / tr['ours']:10.1f} {batch * 1e3 / tr['timm']:10.1f} {tr['timm'] / tr['ours']:6.3f}"
        if args.check:
            ours, theirs = build_pair(name, device)  # fresh, identical weights (training changed them)
            row += f" {max_diff(ours, theirs, 224, device):9.1e} {max_diff(ours, theirs, 448, device):9.1e}"
        print(row, flush=True)
        del ours, theirs
        if gpu:
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
