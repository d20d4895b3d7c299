"""Cluttered Fashion-MNIST: a grid of example canvases, the generation speed and, optionally,
how a proxy does on it next to plain Fashion-MNIST.

Writes a PNG grid of `--n` canvases of the registered `cluttered-fashion-mnist` (the first
canvases of a class-balanced draw, each with its class name) to `--out` and prints the
milliseconds per 1000 canvases (median of `--repeats` builds of 1000 random indices, after the
one-time read of the source images). Reads Fashion-MNIST as the registry does (the Debian
package, `--data-root`, the cache). Draws with PIL.

With `--compare`, trains the proxy of one small config of `--space` (the first choice of
every parameter) on fashion-mnist and on cluttered-fashion-mnist (`--datasets`) with the space's proxy
settings at `--resolution` and `--patch-size` (and `--train`/`--val` images, `--epochs`), for `--seeds` seeds
each, and prints the validation accuracies.

    python benchmarks/cluttered_examples.py                          # docs/img/cluttered-fashion-mnist.png
    python benchmarks/cluttered_examples.py --compare --resolution 48 --patch-size 3 --seeds 2
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from twins_nas.search.proxy import cluttered
from twins_nas.search.proxy.data import balanced_split, load_request
from twins_nas.search.proxy.datasets import get_dataset

NAME = "cluttered-fashion-mnist"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
ZOOM = 3          # canvas pixels -> grid pixels (nearest)
CAPTION = 14      # caption strip under each canvas, in pixels
GAP = 4


def grid(images: np.ndarray, labels: np.ndarray, cols: int) -> Image.Image:
    """The canvases, ZOOM x larger, `cols` per row, each with its class name under it."""
    side = images.shape[1] * ZOOM
    rows = -(-len(images) // cols)
    sheet = Image.new("L", (cols * (side + GAP) + GAP, rows * (side + CAPTION + GAP) + GAP), 255)
    draw = ImageDraw.Draw(sheet)
    for n, (img, label) in enumerate(zip(images, labels)):
        x = GAP + (n % cols) * (side + GAP)
        y = GAP + (n // cols) * (side + CAPTION + GAP)
        sheet.paste(Image.fromarray(img).resize((side, side), Image.NEAREST), (x, y))
        draw.text((x + 2, y + side + 1), f"{int(label)} {CLASSES[int(label)]}", fill=0)
    return sheet


def ms_per_1000(images, count: int, repeats: int) -> float:
    """Median milliseconds to build 1000 canvases at random indices (`count` canvases in all)."""
    rng = np.random.default_rng(0)
    times = []
    for _ in range(repeats):
        idx = rng.choice(count, 1000, replace=False)
        t = time.perf_counter()
        images(idx)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def compare(args: argparse.Namespace) -> None:
    """Proxy accuracy of one small config on fashion-mnist and on the cluttered canvases."""
    import torch  # heavy import: see README

    from twins_nas.search.proxy.data import load_proxy_data
    from twins_nas.search.proxy.train import train_proxy
    from twins_nas.search.space.space import load_space

    torch.set_num_threads(args.threads)
    space = load_space(args.space)
    cfg = space._assign(lambda name, choices: choices[0])  # the first choice of every parameter
    for dataset in args.datasets.split(","):
        proxy = space.proxy.model_copy(update=dict(dataset=dataset, resolution=args.resolution,
                                                   patch_size=args.patch_size, epochs=args.epochs,
                                                   train_samples=args.train, val_samples=args.val,
                                                   data_root=args.data_root))
        data = load_proxy_data(proxy, seed=0)
        accs, secs = [], []
        for seed in range(args.seeds):
            res = train_proxy(cfg, proxy, data, seed=seed, resolution=space.input_size,
                              choices=space.geometry_choices(), every_epoch=False)
            accs.append(res.accuracy)
            secs.append(res.seconds)
        print(f"{dataset:24s} res {args.resolution} patch {proxy.patch_size} width {proxy.width_mult:g} "
              f"{args.train}/{args.val} images {args.epochs} epochs: accuracy "
              + " ".join(f"{a:.3f}" for a in accs) + f"  ({statistics.mean(secs):.0f} s per run)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/img/cluttered-fashion-mnist.png")
    ap.add_argument("--n", type=int, default=16, help="canvases in the grid")
    ap.add_argument("--cols", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--compare", action="store_true", help="also train a proxy on both data sets")
    ap.add_argument("--space", default="search_spaces/svt.yaml")
    ap.add_argument("--resolution", type=int, default=48)
    ap.add_argument("--patch-size", type=int, default=3, help="stage-1 patch of the proxy (48 / 3: 16x16 maps)")
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--val", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--datasets", default=f"fashion-mnist,{NAME}", help="comma-separated data sets to train on")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    t = time.perf_counter()
    data = get_dataset(NAME).load(load_request(NAME, args.data_root, cluttered.CANVAS_SIZE))
    print(f"{NAME}: canvas {cluttered.CANVAS_SIZE}x{cluttered.CANVAS_SIZE}, item {cluttered.ITEM_SIZE} px, "
          f"{cluttered.NUM_DISTRACTORS} distractors of {cluttered.DISTRACTOR_SIZE}x{cluttered.DISTRACTOR_SIZE}, "
          f"seed {cluttered.CANVAS_SEED}; source read in {time.perf_counter() - t:.2f} s")
    print(f"generation: {ms_per_1000(data.images, len(data.labels), args.repeats):.1f} ms per 1000 canvases "
          f"(median of {args.repeats})")

    _, shown = balanced_split(data.labels, 10, 0, args.n, seed=0)
    shown = np.random.default_rng(0).permutation(shown)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid(data.images(shown), data.labels[shown], args.cols).save(out)
    print(f"wrote {out}")
    if args.compare:
        compare(args)


if __name__ == "__main__":
    main()
