"""Proxy data: a small, fixed, class-balanced image set held in memory as tensors.

`load_proxy_data(proxy)` reads the data set once per process (cached), picks a fixed
class-balanced validation split of `val_samples` images and a disjoint class-balanced training
subset of `train_samples` images, both from the *training* set (the test set is never used
for search), resizes them once to the proxy resolution with one batched antialiased
interpolation and normalizes them with the training subset's per-channel mean and std.
The validation images are drawn first, so they do not change with `train_samples`, and a
smaller training subset is contained in a larger one (same seed).

Where the data comes from:
* `fashion-mnist`: the idx files (`train-images-idx3-ubyte[.gz]`, ...) in `data_root`
  (or its `FashionMNIST/raw` / `fashion-mnist` sub-folder), then the Debian package's
  /usr/share/datasets/fashion-mnist, then ~/.cache/twins-nas; failing all, torchvision
  downloads it into ~/.cache/twins-nas (where a network allows).
* `cifar10`, `cifar100`: torchvision's data sets in `data_root` or ~/.cache/twins-nas,
  downloaded there if missing.
* `imagefolder:PATH`: torchvision's `ImageFolder` on PATH/train if it exists, else PATH; only
  the selected images are decoded (RGB, shorter side resized, centre-cropped).
"""
from __future__ import annotations

import functools
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...config import ConfigError
from .settings import ProxySettings

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CACHE_DIR = Path.home() / ".cache" / "twins-nas"


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


def dataset_shape(proxy: ProxySettings) -> tuple[int, int]:
    """(classes, input channels) of the proxy data set, without loading it."""
    if proxy.dataset == "fashion-mnist":
        return 10, 1
    if proxy.dataset in ("cifar10", "cifar100"):
        return (10 if proxy.dataset == "cifar10" else 100), 3
    root = Path(proxy.dataset[len("imagefolder:"):]).expanduser()
    root = root / "train" if (root / "train").is_dir() else root
    if not root.is_dir():
        raise ConfigError(f"proxy.dataset='{proxy.dataset}': no such folder")
    return sum(1 for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), 3


def load_proxy_data(proxy: ProxySettings, seed: int = 0) -> ProxyData:
    """The proxy data set for these settings (cached per process on the settings that matter
    for the data: data set, root, resolution, sample counts, seed)."""
    return _load_cached(proxy.dataset, proxy.data_root, proxy.resolution, proxy.train_samples,
                 proxy.val_samples, seed)


@functools.lru_cache(maxsize=4)
def _load_cached(dataset: str, data_root: str | None, resolution: int, train_samples: int,
          val_samples: int, seed: int) -> ProxyData:
    if dataset == "fashion-mnist":
        images, labels, num_classes = _fashion_mnist(data_root)
    elif dataset in ("cifar10", "cifar100"):
        images, labels, num_classes = _cifar(dataset, data_root)
    elif dataset.startswith("imagefolder:"):
        return _imagefolder(dataset[len("imagefolder:"):], resolution, train_samples, val_samples, seed)
    else:
        raise ConfigError(f"proxy.dataset={dataset!r}: valid data sets are fashion-mnist, cifar10, "
                          f"cifar100, imagefolder:PATH")
    tr, va = balanced_split(labels, num_classes, train_samples, val_samples, seed, dataset)
    return _to_tensors(dataset, num_classes, images[tr], labels[tr], images[va], labels[va], resolution)


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


# ---- Fashion-MNIST ----------------------------------------------------------------------
def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _fashion_mnist(data_root: str | None) -> tuple[np.ndarray, np.ndarray, int]:
    folders = []
    if data_root:
        r = Path(data_root).expanduser()
        folders += [r, r / "FashionMNIST" / "raw", r / "fashion-mnist"]
    folders += [DEBIAN_FASHION_MNIST, CACHE_DIR / "FashionMNIST" / "raw"]
    for folder in folders:
        img = _find_idx(folder, "train-images-idx3-ubyte")
        lab = _find_idx(folder, "train-labels-idx1-ubyte")
        if img and lab:
            return _read_idx(img), _read_idx(lab), 10
    try:
        from torchvision.datasets import FashionMNIST  # heavy import (torchvision): see README
        FashionMNIST(str(CACHE_DIR), train=True, download=True)
    except Exception as e:  # no network, proxy, disk full, ...
        looked = ", ".join(str(f) for f in folders)
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise ConfigError(
            lambda name: f"fashion-mnist: train-images-idx3-ubyte[.gz] not found (looked in {looked}) and the "
            f"download failed ({why}); install the Debian package dataset-fashion-mnist or pass "
            f"{name('data_root')}=DIR holding the idx files", field="data_root") from None
    return _fashion_mnist(str(CACHE_DIR))


# ---- CIFAR ------------------------------------------------------------------------------
def _cifar(dataset: str, data_root: str | None) -> tuple[np.ndarray, np.ndarray, int]:
    from torchvision.datasets import CIFAR10, CIFAR100  # heavy import (torchvision): see README
    cls, num_classes = (CIFAR10, 10) if dataset == "cifar10" else (CIFAR100, 100)
    roots = ([Path(data_root).expanduser()] if data_root else []) + [CACHE_DIR]
    for root in roots:
        try:
            ds = cls(str(root), train=True, download=False)
            return np.asarray(ds.data), np.asarray(ds.targets), num_classes
        except (RuntimeError, OSError):
            continue
    try:
        ds = cls(str(roots[0]), train=True, download=True)
        return np.asarray(ds.data), np.asarray(ds.targets), num_classes
    except Exception as e:
        looked = ", ".join(str(r) for r in roots)
        why = type(e).__name__
        raise ConfigError(
            lambda name: f"{dataset}: not found (looked in {looked}) and the download failed ({why}); "
            f"pass {name('data_root')}=DIR holding torchvision's {cls.base_folder} folder, or use a machine "
            f"with network access once", field="data_root") from None


# ---- ImageFolder ------------------------------------------------------------------------
def _imagefolder(path: str, resolution: int, train_samples: int, val_samples: int, seed: int) -> ProxyData:
    from torchvision.datasets import ImageFolder  # heavy import (torchvision): see README
    from torchvision.transforms import functional as TF  # heavy import (torchvision): see README
    root = Path(path).expanduser()
    if (root / "train").is_dir():
        root = root / "train"
    if not root.is_dir():
        raise ConfigError(f"proxy.dataset='imagefolder:{path}': no such folder")
    try:
        ds = ImageFolder(str(root))
    except (FileNotFoundError, RuntimeError) as e:
        raise ConfigError(f"proxy.dataset='imagefolder:{path}': {str(e).splitlines()[0]}") from None
    labels = np.asarray(ds.targets)
    num_classes = len(ds.classes)
    tr, va = balanced_split(labels, num_classes, train_samples, val_samples, seed, f"imagefolder:{path}")

    def decode(indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), resolution, resolution, 3), dtype=np.uint8)
        for n, i in enumerate(indices):  # once, at load
            img = ds.loader(ds.samples[i][0]).convert("RGB")
            img = TF.center_crop(TF.resize(img, resolution), [resolution, resolution])
            out[n] = np.asarray(img)
        return out

    return _to_tensors(f"imagefolder:{path}", num_classes, decode(tr), labels[tr], decode(va), labels[va], resolution)
