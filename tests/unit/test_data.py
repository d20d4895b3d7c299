"""Proxy data: class-balanced, disjoint train/val subsets of the training set, in memory."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from twins_nas.config import ConfigError
from twins_nas.search.proxy import data as data_mod
from twins_nas.search.proxy.data import balanced_split, load_proxy_data
from twins_nas.search.proxy.settings import ProxySettings

HAVE_FMNIST = (data_mod.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file()


def write_idx(folder: Path, n: int = 200, classes: int = 10, seed: int = 0) -> None:
    """A fake Fashion-MNIST (idx.gz) with `n` 28x28 images, labels cycling over the classes."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % classes).astype(np.uint8)
    for name, arr, magic in (("train-images-idx3-ubyte.gz", images, 3), ("train-labels-idx1-ubyte.gz", labels, 1)):
        header = bytes([0, 0, 8, magic]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
        with gzip.open(folder / name, "wb") as f:
            f.write(header + arr.tobytes())


def test_balanced_split_is_balanced_disjoint_and_seeded():
    labels = np.repeat(np.arange(10), 50)
    np.random.default_rng(1).shuffle(labels)
    tr, va = balanced_split(labels, 10, 103, 40, seed=3)
    assert len(tr) == 103 and len(va) == 40 and not set(tr) & set(va)
    assert np.ptp(np.bincount(labels[tr], minlength=10)) <= 1
    assert (np.bincount(labels[va], minlength=10) == 4).all()
    tr2, va2 = balanced_split(labels, 10, 103, 40, seed=3)
    assert (tr == tr2).all() and (va == va2).all()
    tr3, va3 = balanced_split(labels, 10, 103, 40, seed=4)
    assert set(tr3) != set(tr)
    # the validation split does not depend on train_samples; a bigger subset contains a smaller
    tr4, va4 = balanced_split(labels, 10, 300, 40, seed=3)
    assert (va4 == va).all() and set(tr) <= set(tr4)
    with pytest.raises(ConfigError, match="train_samples=500 .* has only 50 training images of class"):
        balanced_split(labels, 10, 500, 40, seed=3)


def test_load_from_data_root_shapes_dtypes_and_cache(tmp_path):
    write_idx(tmp_path)
    settings = ProxySettings(data_root=str(tmp_path), train_samples=60, val_samples=30, resolution=32, batch_size=30)
    d = load_proxy_data(settings)
    assert d.name == "fashion-mnist" and d.num_classes == 10 and d.in_chans == 1
    assert d.train_x.shape == (60, 1, 32, 32) and d.val_x.shape == (30, 1, 32, 32)
    assert d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    assert torch.bincount(d.train_y, minlength=10).tolist() == [6] * 10
    assert torch.bincount(d.val_y, minlength=10).tolist() == [3] * 10
    assert abs(d.train_x.mean().item()) < 1e-4 and abs(d.train_x.std().item() - 1) < 1e-2  # normalized
    # train and val are different images
    flat_t, flat_v = d.train_x.flatten(1), d.val_x.flatten(1)
    assert torch.cdist(flat_v, flat_t).min() > 0
    # cached per process; settings that do not touch the data share the cache
    assert load_proxy_data(settings) is d
    assert load_proxy_data(settings.model_copy(update={"epochs": 5, "lr": 0.1})) is d
    other = load_proxy_data(settings, seed=1)
    assert other is not d and not torch.equal(other.val_x, d.val_x)


def test_same_seed_same_subset(tmp_path):
    write_idx(tmp_path)
    a = data_mod._load_cached.__wrapped__("fashion-mnist", str(tmp_path), 16, 40, 20, 7)
    b = data_mod._load_cached.__wrapped__("fashion-mnist", str(tmp_path), 16, 40, 20, 7)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)
    assert a.train_x.shape[-2:] == (16, 16)


def test_too_many_samples_is_a_config_error(tmp_path):
    write_idx(tmp_path, n=100)
    with pytest.raises(ConfigError, match="proxy.train_samples=95 \\+ proxy.val_samples=10"):
        load_proxy_data(ProxySettings(data_root=str(tmp_path), train_samples=95, val_samples=10, batch_size=10))


def test_missing_data_set_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod, "DEBIAN_FASHION_MNIST", tmp_path / "nope")
    monkeypatch.setattr(data_mod, "CACHE_DIR", tmp_path / "cache")

    def no_network(*a, **k):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")
    import torchvision.datasets
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", no_network)
    with pytest.raises(ConfigError) as e:
        load_proxy_data(ProxySettings(data_root=str(tmp_path / "empty"), train_samples=10, val_samples=10,
                                      batch_size=10))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("fashion-mnist: ")
    assert str(tmp_path / "empty") in msg and "dataset-fashion-mnist" in msg and "data_root=DIR" in msg


def test_imagefolder(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in ("cat", "dog", "emu"):
        (tmp_path / "train" / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "train" / c / f"{i}.png")
    d = load_proxy_data(ProxySettings(dataset=f"imagefolder:{tmp_path}", train_samples=9, val_samples=6, batch_size=3,
                                      resolution=16))
    assert d.num_classes == 3 and d.in_chans == 3
    assert d.train_x.shape == (9, 3, 16, 16) and d.val_x.shape == (6, 3, 16, 16)
    assert torch.bincount(d.val_y).tolist() == [2, 2, 2]
    with pytest.raises(ConfigError, match="no such folder"):
        load_proxy_data(ProxySettings(dataset=f"imagefolder:{tmp_path / 'x'}", train_samples=3, val_samples=3,
                                      batch_size=3))


@pytest.mark.skipif(not HAVE_FMNIST, reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_the_debian_package():
    d = load_proxy_data(ProxySettings(train_samples=500, val_samples=200))
    assert d.train_x.shape == (500, 1, 32, 32) and d.num_classes == 10
    assert torch.bincount(d.train_y).tolist() == [50] * 10
