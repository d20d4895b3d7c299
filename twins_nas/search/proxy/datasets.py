"""The proxy data sets by name: what each one is (`DataSetInfo`: classes, channels, image size,
where it comes from) and how its training images are read (`DataSetInfo.load`).

A space names its data set in `proxy.dataset`; `ProxySettings` accepts exactly the names of
`DATASETS`, and `data.load_proxy_data` reads the images through the entry's `load`. Adding a
data set is one `register_dataset(DataSetInfo(...))`. An entry with a `param` takes a value
after its name: `imagefolder:PATH`.

Built in:
* `fashion-mnist`: the idx files (`train-images-idx3-ubyte[.gz]`, ...) in `data_root`
  (or its `FashionMNIST/raw` / `fashion-mnist` sub-folder), then the Debian package's
  /usr/share/datasets/fashion-mnist, then ~/.cache/twins-nas; failing all, torchvision
  downloads it into ~/.cache/twins-nas (where a network allows).
* `cifar10`, `cifar100`: torchvision's data sets in `data_root` or ~/.cache/twins-nas,
  downloaded there if missing.
* `imagefolder:PATH`: torchvision's `ImageFolder` on PATH/train if it exists, else PATH; one
  class per subfolder; only the selected images are decoded (RGB, shorter side resized to the
  proxy resolution, centre-cropped).
* `cluttered-fashion-mnist`: 48x48 canvases, each one Fashion-MNIST training item at a random
  place among 8x8 crops of other items (`cluttered`); read through the `fashion-mnist` entry
  (same folders), the canvases built only for the images selected.
"""
from __future__ import annotations

import functools
import gzip
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import ConfigError
from . import cluttered


@dataclass(frozen=True)
class LoadRequest:
    """What a loader is asked for: `name` as the space wrote it (`imagefolder:/data/pets`),
    `param` the part after `NAME:` ("" for entries without a param), the folders to read
    (`data_root` first when given; `system_dirs`: where system packages installed data sets, by
    name; `cache_dir`: where downloads are kept) and the proxy `resolution` (a loader that decodes
    files may decode straight to it)."""

    name: str
    param: str
    data_root: Path | None
    cache_dir: Path
    system_dirs: Mapping[str, Path]
    resolution: int


@dataclass(frozen=True)
class TrainingSet:
    """A data set's training split as a loader returns it: `labels` (N,) the class index of
    every image; `images(indices)` the uint8 images at those indices, (n, H, W) or (n, H, W, C)
    (resized to the proxy resolution afterwards unless already that size); `num_classes` the
    class count read from the data, for entries whose `num_classes` is None."""

    labels: np.ndarray
    images: Callable[[np.ndarray], np.ndarray]
    num_classes: int | None = None

    @classmethod
    def of(cls, images: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> TrainingSet:
        """A training split held in memory: uint8 images (N, H, W[, C]) and their labels (N,)."""
        return cls(labels=np.asarray(labels), images=np.asarray(images).__getitem__, num_classes=num_classes)


Loader = Callable[[LoadRequest], TrainingSet]


@dataclass(frozen=True)
class DataSetInfo:
    """One proxy data set: its `name` (no ':'), `num_classes` (None: read from the data, then
    `count_classes(request)` must say it without loading the images), input channels
    `in_chans`, `image_size` (H, W) of its images (None: they vary), `source` (where it comes
    from and its license), `load` (its training split, `TrainingSet`) and `param`, the name of
    the value it takes after `NAME:` (None: it takes none)."""

    name: str
    num_classes: int | None
    in_chans: int
    image_size: tuple[int, int] | None
    source: str
    load: Loader = field(repr=False)
    param: str | None = None
    count_classes: Callable[[LoadRequest], int] | None = field(default=None, repr=False)

    @property
    def spelling(self) -> str:
        """How a space names it: `fashion-mnist`, `imagefolder:PATH`."""
        return self.name if self.param is None else f"{self.name}:{self.param}"


DATASETS: dict[str, DataSetInfo] = {}


def register_dataset(info: DataSetInfo) -> DataSetInfo:
    """Make `info` selectable as `proxy.dataset: NAME` (replacing an entry of that name)."""
    if not info.name or ":" in info.name:
        raise ConfigError(f"data set name {info.name!r}: must be non-empty and without ':'")
    if info.num_classes is None and info.count_classes is None:
        raise ConfigError(f"data set {info.name!r}: num_classes=None needs count_classes (classes read from "
                          f"the data)")
    DATASETS[info.name] = info
    return info


def dataset_choices() -> list[str]:
    """Every registered data set as a space names it, in registration order."""
    return [info.spelling for info in DATASETS.values()]


def find_dataset(name: str) -> DataSetInfo | None:
    """The entry `name` selects (`imagefolder:PATH` selects `imagefolder`), None when none does."""
    key, colon, param = name.partition(":")
    info = DATASETS.get(key)
    return info if info is not None and (bool(param) if info.param else not colon) else None


def get_dataset(name: str) -> DataSetInfo:
    """The entry `name` selects; a one-line `ConfigError` listing the valid names when none does."""
    info = find_dataset(name)
    if info is None:
        raise ConfigError(f"proxy.dataset={name!r}: valid data sets are {', '.join(dataset_choices())}")
    return info


# ---- Fashion-MNIST ----------------------------------------------------------------------
def read_idx(path: Path) -> np.ndarray:
    """An idx file (optionally gzipped) as a uint8 array of its shape."""
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


def _read_fashion_mnist(folders: list[Path]) -> TrainingSet | None:
    for folder in folders:
        img = _find_idx(folder, "train-images-idx3-ubyte")
        lab = _find_idx(folder, "train-labels-idx1-ubyte")
        if img and lab:
            return TrainingSet.of(read_idx(img), read_idx(lab))
    return None


def load_fashion_mnist(request: LoadRequest) -> TrainingSet:
    """Fashion-MNIST's 60 000 training images: the idx files in data_root (or its
    FashionMNIST/raw or fashion-mnist folder), the Debian package's folder, the cache; else
    torchvision downloads them into the cache."""
    folders = []
    if request.data_root:
        r = request.data_root
        folders += [r, r / "FashionMNIST" / "raw", r / "fashion-mnist"]
    if "fashion-mnist" in request.system_dirs:
        folders.append(request.system_dirs["fashion-mnist"])
    folders.append(request.cache_dir / "FashionMNIST" / "raw")
    found = _read_fashion_mnist(folders)
    if found is not None:
        return found
    try:
        from torchvision.datasets import FashionMNIST  # heavy import (torchvision): see README
        FashionMNIST(str(request.cache_dir), train=True, download=True)
    except Exception as e:  # no network, proxy, disk full, ...
        looked = ", ".join(str(f) for f in folders)
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise ConfigError(
            lambda name: f"fashion-mnist: train-images-idx3-ubyte[.gz] not found (looked in {looked}) and the "
            f"download failed ({why}); install the Debian package dataset-fashion-mnist or pass "
            f"{name('data_root')}=DIR holding the idx files", field="data_root") from None
    found = _read_fashion_mnist([request.cache_dir / "FashionMNIST" / "raw"])
    if found is None:
        raise ConfigError(f"fashion-mnist: the download into {request.cache_dir} left no idx files")
    return found


# ---- CIFAR ------------------------------------------------------------------------------
def load_cifar(class_name: str, request: LoadRequest) -> TrainingSet:
    """torchvision's CIFAR-10 / CIFAR-100 (`class_name`) training split from data_root or the
    cache, downloaded into the first of them if missing."""
    import torchvision.datasets  # heavy import (torchvision): see README
    cls = getattr(torchvision.datasets, class_name)
    roots = ([request.data_root] if request.data_root else []) + [request.cache_dir]
    for root in roots:
        try:
            ds = cls(str(root), train=True, download=False)
            return TrainingSet.of(ds.data, ds.targets)
        except (RuntimeError, OSError):
            continue
    try:
        ds = cls(str(roots[0]), train=True, download=True)
        return TrainingSet.of(ds.data, ds.targets)
    except Exception as e:
        looked = ", ".join(str(r) for r in roots)
        why = type(e).__name__
        raise ConfigError(
            lambda name: f"{request.name}: not found (looked in {looked}) and the download failed ({why}); "
            f"pass {name('data_root')}=DIR holding torchvision's {cls.base_folder} folder, or use a machine "
            f"with network access once", field="data_root") from None


# ---- ImageFolder ------------------------------------------------------------------------
def _image_root(request: LoadRequest) -> Path:
    root = Path(request.param).expanduser()
    if (root / "train").is_dir():
        root = root / "train"
    if not root.is_dir():
        raise ConfigError(f"proxy.dataset='{request.name}': no such folder")
    return root


def count_image_classes(request: LoadRequest) -> int:
    """The class subfolders of an image folder (hidden ones aside)."""
    return sum(1 for d in _image_root(request).iterdir() if d.is_dir() and not d.name.startswith("."))


def load_imagefolder(request: LoadRequest) -> TrainingSet:
    """torchvision's `ImageFolder` on PATH/train (or PATH); images decoded when selected: RGB,
    shorter side resized to the proxy resolution, centre-cropped to a square."""
    from torchvision.datasets import ImageFolder  # heavy import (torchvision): see README
    from torchvision.transforms import functional as TF  # heavy import (torchvision): see README
    root = _image_root(request)
    try:
        ds = ImageFolder(str(root))
    except (FileNotFoundError, RuntimeError) as e:
        raise ConfigError(f"proxy.dataset='{request.name}': {str(e).splitlines()[0]}") from None
    resolution = request.resolution

    def decode(indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), resolution, resolution, 3), dtype=np.uint8)
        for n, i in enumerate(indices):  # once, at load
            img = ds.loader(ds.samples[i][0]).convert("RGB")
            img = TF.center_crop(TF.resize(img, resolution), [resolution, resolution])
            out[n] = np.asarray(img)
        return out

    return TrainingSet(labels=np.asarray(ds.targets), images=decode, num_classes=len(ds.classes))


# ---- Cluttered Fashion-MNIST --------------------------------------------------------------
def load_cluttered_fashion_mnist(request: LoadRequest) -> TrainingSet:
    """Cluttered canvases (`cluttered.ClutteredCanvases`, seed `cluttered.CANVAS_SEED`) of the
    60 000 Fashion-MNIST training items, read by the `fashion-mnist` entry with this request;
    canvas i shows item i, so the labels are Fashion-MNIST's."""
    source = get_dataset("fashion-mnist").load(request)
    canvases = cluttered.ClutteredCanvases(source.images(np.arange(len(source.labels))), source.labels)
    return TrainingSet(labels=canvases.labels, images=canvases.images)


register_dataset(DataSetInfo(
    name="fashion-mnist", num_classes=10, in_chans=1, image_size=(28, 28), load=load_fashion_mnist,
    source="Zalando Research (github.com/zalandoresearch/fashion-mnist), MIT license; Debian package "
           "dataset-fashion-mnist or torchvision's download"))
register_dataset(DataSetInfo(
    name="cifar10", num_classes=10, in_chans=3, image_size=(32, 32), load=functools.partial(load_cifar, "CIFAR10"),
    source="Krizhevsky 2009 (www.cs.toronto.edu/~kriz/cifar.html), no license stated; torchvision's download"))
register_dataset(DataSetInfo(
    name="cifar100", num_classes=100, in_chans=3, image_size=(32, 32),
    load=functools.partial(load_cifar, "CIFAR100"),
    source="Krizhevsky 2009 (www.cs.toronto.edu/~kriz/cifar.html), no license stated; torchvision's download"))
register_dataset(DataSetInfo(
    name="imagefolder", num_classes=None, in_chans=3, image_size=None, load=load_imagefolder, param="PATH",
    count_classes=count_image_classes,
    source="your images: PATH/CLASS/*.jpg|png (or PATH/train/CLASS/...), one class per subfolder; their license"))
register_dataset(DataSetInfo(
    name="cluttered-fashion-mnist", num_classes=10, in_chans=1,
    image_size=(cluttered.CANVAS_SIZE, cluttered.CANVAS_SIZE), load=load_cluttered_fashion_mnist,
    source="Fashion-MNIST (Zalando, MIT) items composed on a cluttered canvas by twins-nas"))
