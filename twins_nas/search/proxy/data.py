"""Proxy data: a small, fixed, class-balanced image set held in memory as tensors.

`load_proxy_data(proxy)` reads the data set once per process (cached), picks a fixed
class-balanced validation split of `val_samples` images and a disjoint class-balanced training
subset of `train_samples` images, both from the *training* set (the test set is never used
for search), resizes them once to the proxy resolution with one batched antialiased
interpolation and normalizes them with the training subset's per-channel mean and std.
The validation images are drawn first, so they do not change with `train_samples`, and a
smaller training subset is contained in a larger one (same seed).

Which data set and where its files are read from: its entry in `datasets.DATASETS`, found
by `proxy.dataset`; the entry's loader is given `data_root`, the folders system packages
installed data sets into (`DEBIAN_FASHION_MNIST`) and the download cache (`CACHE_DIR`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import ConfigError
from .datasets import LoadRequest, get_dataset
from .settings import ProxySettings

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # the Debian package dataset-fashion-mnist
CACHE_DIR = Path.home() / ".cache" / "twins-nas"  # downloads are kept here


@dataclass
class ProxyData:
    """Tensors ready for proxy training: images (N, C, R, R) float32, normalized; labels (N,) int64."""

    name: str
    num_classes: int
    in_chans: int
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor


def load_request(dataset: str, data_root: str | None, resolution: int) -> LoadRequest:
    """What the loader of `dataset` is asked for, with this machine's folders (read at each
    call, so they can be pointed elsewhere)."""
    return LoadRequest(name=dataset, param=dataset.partition(":")[2],
                       data_root=Path(data_root).expanduser() if data_root else None,
                       cache_dir=CACHE_DIR, system_dirs={"fashion-mnist": DEBIAN_FASHION_MNIST},
                       resolution=resolution)


def dataset_shape(proxy: ProxySettings) -> tuple[int, int]:
    """(classes, input channels) of the proxy data set, without loading its images."""
    info = get_dataset(proxy.dataset)
    if info.num_classes is not None:
        return info.num_classes, info.in_chans
    assert info.count_classes is not None  # register_dataset refuses an entry with neither
    return info.count_classes(load_request(proxy.dataset, proxy.data_root, proxy.resolution)), info.in_chans


def load_proxy_data(proxy: ProxySettings, seed: int = 0) -> ProxyData:
    """The proxy data set for these settings (cached per process on the settings that matter
    for the data: data set, root, resolution, sample counts, seed)."""
    return _load_cached(proxy.dataset, proxy.data_root, proxy.resolution, proxy.train_samples,
                        proxy.val_samples, seed)


@functools.lru_cache(maxsize=4)
def _load_cached(dataset: str, data_root: str | None, resolution: int, train_samples: int,
                 val_samples: int, seed: int) -> ProxyData:
    info = get_dataset(dataset)
    data = info.load(load_request(dataset, data_root, resolution))
    num_classes = info.num_classes if info.num_classes is not None else data.num_classes
    if num_classes is None:
        raise ConfigError(f"proxy.dataset={dataset!r}: its loader did not say how many classes it has")
    tr, va = balanced_split(data.labels, num_classes, train_samples, val_samples, seed, dataset)
    return _to_tensors(dataset, num_classes, data.images(tr), data.labels[tr], data.images(va), data.labels[va],
                       resolution)


def balanced_split(labels: np.ndarray, num_classes: int, train_samples: int, val_samples: int,
                   seed: int, dataset: str = "data set") -> tuple[np.ndarray, np.ndarray]:
    """Indices of a class-balanced validation split and a disjoint class-balanced training
    subset (per-class counts differ by at most one; the first classes get the remainder).
    Each class's images are shuffled once with `seed`; validation takes the first ones."""
    rng = np.random.default_rng(seed)
    per_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
    per_class = [idx[rng.permutation(len(idx))] for idx in per_class]

    def counts(n: int) -> list[int]:
        return [n // num_classes + (c < n % num_classes) for c in range(num_classes)]

    n_tr, n_va = counts(train_samples), counts(val_samples)
    for c, idx in enumerate(per_class):
        if n_tr[c] + n_va[c] > len(idx):
            raise ConfigError(
                f"proxy.train_samples={train_samples} + proxy.val_samples={val_samples}: {dataset} has only "
                f"{len(idx)} training images of class {c} (needs {n_tr[c] + n_va[c]}); lower them")
    va = np.concatenate([idx[:n_va[c]] for c, idx in enumerate(per_class)])
    tr = np.concatenate([idx[n_va[c]:n_va[c] + n_tr[c]] for c, idx in enumerate(per_class)])
    return np.sort(tr), np.sort(va)  # data-set order; the training loop shuffles


def _to_tensors(name: str, num_classes: int, train_x: np.ndarray, train_y: np.ndarray,
            val_x: np.ndarray, val_y: np.ndarray, resolution: int) -> ProxyData:
    """uint8 (N, H, W[, C]) -> float32 (N, C, R, R), normalized with the training mean/std."""
    def prep(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(x))
        t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
        t = t.float().div_(255.0)
        if t.shape[-2:] != (resolution, resolution):
            t = F.interpolate(t, size=(resolution, resolution), mode="bilinear", align_corners=False,
                              antialias=True)
        return t.contiguous()

    tx, vx = prep(train_x), prep(val_x)
    mean = tx.mean(dim=(0, 2, 3), keepdim=True)
    std = tx.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3)
    tx, vx = (tx - mean) / std, (vx - mean) / std
    return ProxyData(name=name, num_classes=num_classes, in_chans=tx.shape[1],
                     train_x=tx, train_y=torch.from_numpy(train_y.astype(np.int64)),
                     val_x=vx, val_y=torch.from_numpy(val_y.astype(np.int64)))
