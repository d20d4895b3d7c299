"""Cluttered Fashion-MNIST: one Fashion-MNIST item at a random place on a larger canvas among
small patches of other items (in the spirit of cluttered MNIST, Mnih et al. 2014, and
multi-MNIST). The label is the item's class.

Plain Fashion-MNIST at the proxy's 32 px saturates: every architecture of a space reaches about
the same accuracy. On a cluttered canvas the network has to find the item among texture that
looks like items, so how far a stage sees (LSA windows, the GSA sub-sampling k, global
attention) changes what it can learn.

Canvas i (`ClutteredCanvases.images`) is built from source item i (its target, so the canvases
have the source's labels and class balance) and `num_distractors` crops of other items:

* the target, scaled to `item_size` x `item_size` (area averaging; `ITEM_SIZE` 28 keeps it
  as it is), is pasted at a uniformly drawn position that keeps it whole on the canvas;
* each distractor is a `distractor_size` x `distractor_size` crop at a uniformly drawn place of
  a uniformly drawn item other than the target (scaled like the target), pasted at a uniformly
  drawn position; pixels are composed with the maximum (items are bright on black, so a crop's
  black corners do not cut into what is below).

Every draw is a hash of (seed, canvas index, draw number) (splitmix64), not a stream: canvas i
depends only on the seed, i and the source images, whichever other canvases are built with it
or before it, and any subset is built on demand, vectorised over the canvases asked for.

Selected with `proxy: {dataset: cluttered-fashion-mnist, resolution: 48, patch_size: 3}`: the
canvas as it is, in 16x16 first-stage maps (the token count of the default 32 px / patch 2
proxy). The defaults keep the item at its own 28 px and let it move over 21x21 places among
8 crops: a short proxy training learns it, well below what it reaches on plain Fashion-MNIST.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError

CANVAS_SIZE = 48         # canvas side in pixels (square, one channel, uint8): the item moves over 21x21 places
ITEM_SIZE = 28           # side of the target item on the canvas (28: Fashion-MNIST's own size, unscaled)
NUM_DISTRACTORS = 8      # crops of other items per canvas
DISTRACTOR_SIZE = 8      # side of a distractor crop: texture of an item, never a whole one
CANVAS_SEED = 0          # the seed of the registered data set's canvases

_DRAWS_TARGET = 2        # target row, column
_DRAWS_DISTRACTOR = 5    # source item, crop row, crop column, paste row, paste column


@dataclass(frozen=True)
class CanvasLayout:
    """Where everything of some canvases went (n canvases, K distractors): `target_yx` (n, 2)
    the target's top-left corner on the canvas; `distractor_items` (n, K) the source index of
    each distractor; `crop_yx` (n, K, 2) the crop's top-left corner in its (scaled) item;
    `paste_yx` (n, K, 2) the crop's top-left corner on the canvas. Distractors are pasted in
    order k = 0..K-1, over the target."""

    target_yx: np.ndarray
    distractor_items: np.ndarray
    crop_yx: np.ndarray
    paste_yx: np.ndarray


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 that scatters every input bit."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniform_draws(seed: int, indices: np.ndarray, draws: int, bounds: np.ndarray) -> np.ndarray:
    """(len(indices), draws) integers, draw d of canvas i uniform in [0, bounds[d]) and a
    function of (seed, i, d) only."""
    idx = np.asarray(indices, dtype=np.uint64).reshape(-1, 1)
    key = _mix(np.full(1, seed & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15))
    h = _mix(_mix(key + idx * np.uint64(0xD1B54A32D192ED03)) + np.arange(draws, dtype=np.uint64)[None, :])
    # the top 32 bits times the bound, top half: uniform in [0, bound) up to 2^-32
    return ((h >> np.uint64(32)) * np.asarray(bounds, dtype=np.uint64)[None, :] >> np.uint64(32)).astype(np.int64)


def _square(side: int, width: int) -> np.ndarray:
    """Flat offsets of the pixels of a side x side square in a row-major image `width` wide."""
    return (np.arange(side)[:, None] * width + np.arange(side)[None, :]).reshape(-1)


def _area_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) weights of area-averaging resampling: output pixel o averages the input
    interval [o, o+1) * src / dst."""
    edges = np.arange(dst + 1) * (src / dst)
    lo, hi = edges[:-1, None], edges[1:, None]
    pix = np.arange(src)[None, :]
    overlap = np.clip(np.minimum(hi, pix + 1) - np.maximum(lo, pix), 0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def scale_items(items: np.ndarray, size: int) -> np.ndarray:
    """uint8 items (N, h, w) resampled to (N, size, size) by area averaging (unchanged when
    already that size)."""
    if items.shape[1:] == (size, size):
        return items
    ry, rx = _area_matrix(items.shape[1], size), _area_matrix(items.shape[2], size)
    out = np.empty((len(items), size, size), dtype=np.uint8)
    for s in range(0, len(items), 4096):  # bounded float32 temporaries
        chunk = items[s:s + 4096].astype(np.float32)
        out[s:s + 4096] = np.clip(np.rint(ry @ chunk @ rx.T), 0, 255).astype(np.uint8)
    return out


@dataclass(frozen=True, eq=False)
class ClutteredCanvases:
    """Cluttered canvases of `source_images` (N, h, w) uint8 with `source_labels` (N,): canvas i
    shows source item i, so `labels` are the source's. Built on demand by `images(indices)`."""

    source_images: np.ndarray
    source_labels: np.ndarray
    seed: int = CANVAS_SEED
    canvas_size: int = CANVAS_SIZE
    item_size: int = ITEM_SIZE
    num_distractors: int = NUM_DISTRACTORS
    distractor_size: int = DISTRACTOR_SIZE

    def __post_init__(self) -> None:
        n = len(self.source_images)
        if self.source_images.ndim != 3 or len(self.source_labels) != n:
            raise ConfigError(f"source_images={self.source_images.shape}, source_labels={len(self.source_labels)}: "
                              f"need (N, h, w) images and N labels")
        if not 1 <= self.item_size <= self.canvas_size:
            raise ConfigError(f"item_size={self.item_size}: must be in 1..canvas_size={self.canvas_size}")
        if not 1 <= self.distractor_size <= self.item_size:
            raise ConfigError(f"distractor_size={self.distractor_size}: must be in 1..item_size={self.item_size}")
        if self.num_distractors < 0:
            raise ConfigError(f"num_distractors={self.num_distractors}: must be 0 or more")
        if self.num_distractors and n < 2:
            raise ConfigError(f"num_distractors={self.num_distractors}: distractors need 2 or more source items")

    @property
    def labels(self) -> np.ndarray:
        """The class of every canvas: its target's."""
        return np.asarray(self.source_labels)

    @functools.cached_property
    def items(self) -> np.ndarray:
        """The source items at `item_size` (scaled once, when first needed)."""
        return np.ascontiguousarray(scale_items(np.asarray(self.source_images, dtype=np.uint8), self.item_size))

    def layout(self, indices: np.ndarray) -> CanvasLayout:
        """Where the target and the distractors of canvases `indices` go."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        c, s, d, k = self.canvas_size, self.item_size, self.distractor_size, self.num_distractors
        per = np.array([len(self.source_images) - 1, s - d + 1, s - d + 1, c - d + 1, c - d + 1])
        bounds = np.concatenate([[c - s + 1, c - s + 1], np.tile(per, k)])
        r = uniform_draws(self.seed, idx, len(bounds), bounds)
        dist = r[:, _DRAWS_TARGET:].reshape(len(idx), k, _DRAWS_DISTRACTOR)
        items = dist[:, :, 0]
        items = items + (items >= idx[:, None])  # one of the other N - 1 items
        return CanvasLayout(target_yx=r[:, :_DRAWS_TARGET], distractor_items=items,
                            crop_yx=dist[:, :, 1:3], paste_yx=dist[:, :, 3:5])

    def images(self, indices: np.ndarray) -> np.ndarray:
        """The canvases `indices` (n, canvas_size, canvas_size) uint8."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        lay = self.layout(idx)
        c, s, d, n = self.canvas_size, self.item_size, self.distractor_size, len(idx)
        items = self.items
        canvas = np.zeros(n * c * c, dtype=np.uint8)
        start = np.arange(n) * (c * c)
        canvas[(start + lay.target_yx[:, 0] * c + lay.target_yx[:, 1])[:, None] + _square(s, c)] = \
            items[idx].reshape(n, s * s)
        src = (lay.distractor_items * (s * s) + lay.crop_yx[..., 0] * s + lay.crop_yx[..., 1])[..., None]
        src = src + _square(d, s)
        dst = (start[:, None] + lay.paste_yx[..., 0] * c + lay.paste_yx[..., 1])[..., None] + _square(d, c)
        crops = items.reshape(-1)[src]  # (n, K, d * d)
        for j in range(self.num_distractors):  # one distractor of every canvas at a time: no two overlap
            canvas[dst[:, j]] = np.maximum(canvas[dst[:, j]], crops[:, j])
        return canvas.reshape(n, c, c)
