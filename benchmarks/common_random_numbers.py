"""Common random numbers for proxy trainings: does one image order for every architecture make
their ranking more repeatable?

Draws `--archs` architectures of `--space` at random (seed `--seed`) and trains each one's proxy
(the space's ``proxy:`` settings, `--set` overrides) in two replicate sets A and B, two ways:

* independent: each training's image order comes from its own seed (what a search does);
* common: every architecture of set A sees one image order, every one of set B another; the
  weights still come from each training's own seed.

Prints, for each way, Kendall tau between the A and B accuracies (the seed agreement of the
ranking), the seed SD of one accuracy, and the SD of the A-minus-B change of an architecture's
difference to the mean of its set (the noise that ranking sees), and the seconds.

    python benchmarks/common_random_numbers.py --archs 12
"""
from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np
import torch

from twins_nas.search.fidelity.reliability import kendall_tau
from twins_nas.search.proxy.data import load_proxy_data
from twins_nas.search.proxy.train import train_proxy
from twins_nas.search.space.space import load_space


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="search_spaces/svt.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--archs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: every core)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    space = load_space(args.space, args.overrides)
    data = load_proxy_data(space.proxy, seed=0)
    rng = random.Random(args.seed)
    cfgs = [space.random_config(rng) for _ in range(args.archs)]
    choices = space.geometry_choices()
    order = {"A": 1_000_001, "B": 2_000_003}  # the set's image order in the common way
    acc: dict[tuple[str, str], list[float]] = {}
    t0 = time.perf_counter()
    for way in ("independent", "common"):
        for s, (name, common_order) in enumerate(order.items()):
            vals = []
            for i, cfg in enumerate(cfgs):
                seed = 10_000 * (s + 1) + i
                res = train_proxy(cfg, space.proxy, data, seed=seed, resolution=space.input_size, choices=choices,
                                  every_epoch=False, order_seed=common_order if way == "common" else None)
                vals.append(res.accuracy)
            acc[(way, name)] = vals
            print(f"{way:11s} set {name}: " + " ".join(f"{100 * v:.1f}" for v in vals), flush=True)
    seconds = time.perf_counter() - t0
    print(f"\n{args.archs} architectures of {space.source}, proxy {space.proxy.dataset} "
          f"({space.proxy.train_samples} images x {space.proxy.epochs} epochs, {space.proxy.val_samples} validation), "
          f"{4 * args.archs} trainings in {seconds:.0f} s")
    print(f"{'way':12s} {'tau(A,B)':>9s} {'seed SD':>8s} {'rank noise SD':>14s}")
    for way in ("independent", "common"):
        a, b = np.array(acc[(way, "A")]), np.array(acc[(way, "B")])
        seed_sd = float(np.sqrt(np.mean((a - b) ** 2) / 2))
        rank_noise = float(np.std((a - a.mean()) - (b - b.mean()), ddof=1) / np.sqrt(2))
        print(f"{way:12s} {kendall_tau(a, b):9.3f} {100 * seed_sd:7.2f}pt {100 * rank_noise:13.2f}pt")
    print(f"mean accuracy: {100 * statistics.fmean(acc[('independent', 'A')] + acc[('independent', 'B')]):.1f} %")


if __name__ == "__main__":
    main()
