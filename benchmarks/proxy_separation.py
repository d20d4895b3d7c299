"""Which proxy tells a space's architectures apart fastest? Separation per minute of training,
from `twins-nas fidelity` reports, with every proxy timed in the same run.

For each fidelity report given (a folder with fidelity.json and plan.json), reads the default
proxy's seed SNR (`seed_snr`: the variance of the architectures' true accuracies over one
training's seed variance) and the reference's reliability, then trains that report's default
proxy on the first `--archs` random architectures of its plan, interleaved with the other
reports' proxies in one process (`--threads` CPU threads), so that every proxy's seconds come
from the same machine state. Prints, per report: the data set, SNR per training, seconds per
training, SNR per minute (the exchange rate of separation for search time), the reference's
seed tau, span and verdict, and the proxy's Kendall tau against the reference.

    python benchmarks/proxy_separation.py reports/proxy-fidelity reports/proxy-fidelity-cluttered
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
from twins_nas.search.proxy.data import load_proxy_data
from twins_nas.search.proxy.settings import ProxySettings
from twins_nas.search.proxy.train import train_proxy
from twins_nas.search.space.space import load_space


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", type=Path, help="fidelity report folders")
    ap.add_argument("--space", default="search_spaces/svt.yaml", help="the space the reports measured")
    ap.add_argument("--archs", type=int, default=6, help="architectures timed per report")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    space = load_space(args.space)
    rows = []
    for d in args.reports:
        summary = json.loads((d / "fidelity.json").read_text())
        plan = json.loads((d / "plan.json").read_text())
        proxy = ProxySettings(**{k: v for k, v in summary["space"]["proxy"].items() if k != "data_root"})
        cfgs = [ArchConfig.from_dict(a["config"]) for a in plan["archs"] if a["kind"] == "random"][:args.archs]
        rows.append(dict(name=str(d), proxy=proxy, cfgs=cfgs, summary=summary, seconds=[],
                         data=load_proxy_data(proxy, seed=0)))
    choices = space.geometry_choices()
    for i in range(args.archs):  # interleaved: a drift of the machine hits every proxy alike
        for r in rows:
            if i >= len(r["cfgs"]):
                continue
            t0 = time.perf_counter()
            train_proxy(r["cfgs"][i], r["proxy"], r["data"], seed=i, resolution=space.input_size,
                        choices=choices, every_epoch=False)
            r["seconds"].append(time.perf_counter() - t0)
            print(f"{r['name']}: architecture {i} trained in {r['seconds'][-1]:.1f} s", flush=True)
    print()
    print("| report | data set | proxy SNR per training | s per training (this run) | SNR per minute | "
          "proxy seed τ | reference seed τ | reference span (points) | verdict | τ proxy vs reference |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s = r["summary"]
        acc = s["scorers"].get("accuracy", {})
        sec = statistics.mean(r["seconds"]) if r["seconds"] else math.nan
        snr = acc.get("seed_snr")
        per_min = snr / (sec / 60) if snr is not None and sec > 0 else math.nan
        sep, ref = s["separation"], s["reference"]
        span = sep.get("reference_span_points")
        print(f"| {r['name']} | {r['proxy'].dataset} | {_fmt(snr)} | {_fmt(sec, '.1f')} | {_fmt(per_min)} | "
              f"{_fmt(acc.get('seed_tau'))} | {_fmt(ref.get('seed_tau'))} | "
              f"{_fmt(None if span is None else 100 * span, '.1f')} | {sep.get('verdict')} | "
              f"{_fmt(acc.get('kendall_tau'))} |")


if __name__ == "__main__":
    main()
