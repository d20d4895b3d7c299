"""Prints a digest of what twins-nas computes, to compare two versions of the code.

Run it before and after a refactor that should change nothing and diff the outputs:

    python scripts/behaviour_digest.py > before.txt   # on the old commit
    python scripts/behaviour_digest.py > after.txt    # on the new one
    diff before.txt after.txt

Covered: the weights `build_model` initialises from a seed, the closed-form and fvcore costs of
every preset (classifier at 224 px, Semantic FPN at 512x1024), `show`, `retarget` and the
analytic `profile` (optimality table), and a seeded 8-trial search on a tiny space with
deterministic objectives (accuracy, GMACs, params): every trial's config and metrics, and
the exported front. Timings are left out: they are not reproducible.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from twins_nas import ArchConfig, build_model
from twins_nas.presets import PRESETS
from twins_nas.profile import analytic_flops, analytic_params, count_flops

ROOT = Path(__file__).resolve().parents[1]
SPACE = """\
name: digest
resolution: 64
num_classes: 10
stages:
  - {patch_size: 4, depth: [1, 2], embed_dim: [16, 32], head_dim: 16, mlp_ratio: [2, 4], window: [2, 4],
     sr_ratio: [1, 2], pattern: [LG, G]}
  - {patch_size: 2, depth: [1, 2], embed_dim: [32, 48], head_dim: 16, mlp_ratio: 2, window: 2, sr_ratio: 1,
     pattern: [LG, G]}
objectives: {accuracy: maximize, gmacs: minimize, params_m: minimize}
measure: {batch_size: 1}
proxy: {resolution: 16, width_mult: 0.5, train_samples: 200, val_samples: 100, epochs: 2, batch_size: 100}
"""
TIMED = ("throughput", "latency", "seconds", "duration", "datetime", "time", "worker", "host", "pid")


def _hash_state(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _cli(*args: str) -> str:
    """stdout of `twins-nas ARGS`, with temporary folders and run times masked."""
    out = subprocess.run([sys.executable, "-m", "twins_nas", *args], cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"twins-nas {' '.join(args)} failed ({out.returncode}): {out.stderr[-2000:]}")
    text = re.sub(r"\S*/tmp[^/\s]*/", "<tmp>/", out.stdout)
    return re.sub(r"\bin \d+(\.\d+)? s\b", "in <time> s", text)


def _stable_csv(path: Path) -> list[str]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [k for k in (rows[0] if rows else {}) if not any(t in k.lower() for t in TIMED)]
    return [json.dumps({k: r[k] for k in keep}, sort_keys=True) for r in rows]


def main() -> None:
    torch.manual_seed(0)
    for name in sorted(PRESETS):
        cfg = ArchConfig.preset(name)
        flops = analytic_flops(cfg, 224)
        print(name, "analytic", json.dumps(dict(flops.by_category), sort_keys=True), analytic_params(cfg))
        print(name, "fvcore", json.dumps(dict(count_flops(cfg, 224).by_category), sort_keys=True))
    for name in ("twins-svt-s", "twins-pcpvt-s"):
        print(name, "weights", _hash_state(build_model(ArchConfig.preset(name), seed=0)))
        print(name, "dense weights", _hash_state(build_model(ArchConfig.preset(name), head="semantic-fpn",
                                                             num_classes=150, seed=0)))
    print(_cli("show", "twins-svt-s", "--size", "512x1024"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(_cli("profile", "--preset", "twins-svt-s", "--preset", "twins-pcpvt-s", "--size", "512x1024",
                   "--head", "semantic-fpn", "--no-latency", "--no-memory", "--no-png", "--out", str(tmp / "p")))
        for line in _stable_csv(tmp / "p" / "profile.csv") + _stable_csv(tmp / "p" / "optimality.csv"):
            print("profile", line)
        _cli("retarget", "twins-svt-s", "--size", "1024x1024", "--out", str(tmp / "r.json"))
        print("retarget", (tmp / "r.json").read_text())
        (tmp / "space.yaml").write_text(SPACE)
        _cli("search", "--space", str(tmp / "space.yaml"), "--trials", "8", "--seed", "3", "--out", str(tmp / "s"))
        for line in _stable_csv(tmp / "s" / "trials.csv"):
            print("trial", line)
        front = json.loads((tmp / "s" / "pareto.json").read_text())["configs"]
        for entry in sorted(front, key=lambda e: e["meta"]["trial"]):
            meta = {k: entry["meta"][k] for k in ("trial", "knee", "picked", "params")}
            metrics = {k: v for k, v in entry["meta"]["metrics"].items() if not any(t in k for t in TIMED)}
            print("front", json.dumps({**meta, "metrics": metrics}, sort_keys=True))


if __name__ == "__main__":
    main()
