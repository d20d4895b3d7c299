"""Settings of the measurements: how the full-size model is measured (`MeasureSettings`, the
``measure:`` section of a space file, and `MeasureBudget`, how hard it is timed) and how the
proxy is trained (`ProxySettings`, the ``proxy:`` section). Plain data: the training, data and
timing code read these without the YAML schema of a space (`twins_nas.search.space`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_serializer, model_validator

from ..config import SizeField
from ..hardware import DEVICE_NAMES, DTYPE_NAMES, check_device_name, check_dtype_name
from ..models.head_config import HEADS, HeadConfig
from ..numbers import Number

DATASETS = ("fashion-mnist", "cifar10", "cifar100", "imagefolder:PATH")
DATASET_CLASSES = {"fashion-mnist": 10, "cifar10": 10, "cifar100": 100}  # an image folder: its subfolders
HEAD_CLASSES = HeadConfig.model_fields["num_classes"].default  # a measured head's classes when not given (ADE20K's)
_OPTIONAL = ("head", "num_classes", "size")  # left out of a dump while unset (see `_dump`)


class MeasureSettings(BaseModel):
    """How the full-size model is measured (throughput, latency, peak memory).

    * `batch_size`, `dtype`, `device`: the timed forward passes;
    * `size`: the input size (H, W) at which the full-size model is timed, its peak memory
      measured and its GMACs counted; written ``512x1024``, ``[512, 1024]`` or one number for a
      square. Unset (null): the space's ``resolution``;
    * `head`: measure the backbone with a dense-prediction head instead of the classifier, one
      of `HEADS` (``semantic-fpn``); unset: the classifier model;
    * `num_classes`: classes of that head (>= 1; default `HEAD_CLASSES` = 150 when `head` is
      set; only with `head`).

    `head`, `num_classes` and `size` are left out of the dumped settings while unset, so a
    space that does not use them hashes (and is stored by a study) as it did before they existed."""

    model_config = ConfigDict(extra="forbid")

    batch_size: StrictInt = Field(default=8, ge=1)
    dtype: str = Field(default="fp32", description=" | ".join(DTYPE_NAMES))
    device: str = Field(default="auto", description="auto (cuda if available), cpu, cuda, cuda:N, mps")
    size: Optional[SizeField] = Field(default=None,
                                      description="HxW of the measured input; null: the space's resolution")
    head: Optional[str] = Field(default=None, description="null (the classifier) or " + " | ".join(HEADS))
    num_classes: Optional[StrictInt] = Field(default=None, ge=1,
                                             description=f"classes of the head (default {HEAD_CLASSES})")

    @field_validator("head")
    @classmethod
    def _head(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and v not in HEADS:
            raise ValueError(f"={v!r}: valid heads are {', '.join(HEADS)} (or null for the classifier)")
        return v

    @model_validator(mode="after")
    def _head_classes(self) -> "MeasureSettings":
        if self.head is None and self.num_classes is not None:
            raise ValueError(f"num_classes={self.num_classes}: classes of a measured head; give head too "
                             f"({', '.join(HEADS)})")
        if self.head is not None and self.num_classes is None:
            self.num_classes = HEAD_CLASSES
        return self

    @property
    def head_config(self) -> Optional[HeadConfig]:
        """The measured head as `build_model(cfg, head=...)` takes it; None: the classifier."""
        return None if self.head is None else HeadConfig(type=self.head, num_classes=self.num_classes)

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        d = handler(self)
        for key in _OPTIONAL:
            if d.get(key, 0) is None:
                del d[key]
        return d

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        try:
            return check_dtype_name(v)
        except ValueError:
            raise ValueError(f"={v!r}: valid dtypes are {', '.join(DTYPE_NAMES)}") from None

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        try:
            return check_device_name(v)
        except ValueError:
            raise ValueError(f"={v!r}: valid devices are {DEVICE_NAMES}") from None


class ProxySettings(BaseModel):
    """Proxy training: a width-scaled copy of the sampled architecture trained briefly at a
    low resolution on an in-memory data set (see `twins_nas.search.proxy_train`).

    `train_samples` training images (a fixed class-balanced subset of the training set) for
    `epochs` passes; top-1 accuracy on `val_samples` held-out training images (class-balanced,
    disjoint from the training subset). The test set is never used. Frozen (hashable), so a
    data set loaded for these settings can be cached."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(default="fashion-mnist",
                         description="fashion-mnist, cifar10, cifar100 or imagefolder:PATH")
    data_root: Optional[str] = Field(default=None, description="where to look for the data set first")
    resolution: StrictInt = Field(default=32, ge=8)
    patch_size: Optional[StrictInt] = Field(
        default=2, ge=1, description="stage-1 patch of the proxy (null: the full-size one); 32 px / 2 = 16x16 maps")
    geometry: Literal["faithful", "clamp"] = Field(
        default="faithful", description="faithful: windows and k scaled with the maps; clamp: clamped to them")
    width_mult: Number = Field(default=0.25, gt=0, le=4)
    min_head_dim: StrictInt = Field(default=8, ge=1, description="proxy heads are at least this wide")
    train_samples: StrictInt = Field(default=2000, ge=1)
    val_samples: StrictInt = Field(default=1000, ge=1)
    epochs: StrictInt = Field(default=2, ge=1)
    batch_size: StrictInt = Field(default=128, ge=1)
    lr: Number = Field(default=2e-3, gt=0)
    weight_decay: Number = Field(default=0.05, ge=0)
    warmup_epochs: Number = Field(default=0.5, ge=0, description="linear warm-up length (fractions allowed)")
    label_smoothing: Number = Field(default=0.1, ge=0, lt=1)

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v: str) -> str:
        if v in DATASETS[:3] or (v.startswith("imagefolder:") and len(v) > len("imagefolder:")):
            return v
        raise ValueError(f"={v!r}: valid data sets are {', '.join(DATASETS)}")

    @model_validator(mode="after")
    def _consistent(self) -> "ProxySettings":
        """Rules between fields (each message names its field, as pydantic's own do)."""
        problems = []
        if self.warmup_epochs >= self.epochs:
            problems.append(f"warmup_epochs={self.warmup_epochs:g}: must be less than epochs={self.epochs} "
                            f"(the warm-up would take the whole training)")
        classes = DATASET_CLASSES.get(self.dataset)
        for name in ("train_samples", "val_samples"):
            n = getattr(self, name)
            if classes is not None and n < classes:
                problems.append(f"{name}={n}: fewer than the {classes} classes of {self.dataset} "
                                f"(every class needs an image)")
            elif n < self.batch_size:
                problems.append(f"{name}={n}: fewer than one batch (batch_size={self.batch_size})")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class FidelitySettings(BaseModel):
    """Successive halving on the front (the ``fidelity:`` section of a space): every trial is
    trained at rung 0 (the ``proxy:`` settings); after every `batch` finished trials the best
    1/eta of the trials at a rung (non-dominated rank, then crowding distance) are trained again
    at the next rung, with eta x the training images. `rungs: 1` turns it off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rungs: StrictInt = Field(default=1, ge=1, le=4, description="number of rungs (1 = every trial at rung 0 only)")
    eta: StrictInt = Field(default=3, ge=2, description="1/eta of a rung is promoted, with eta x the images")
    batch: StrictInt = Field(default=12, ge=2, description="finished trials between two promotion rounds")


@dataclass(frozen=True)
class MeasureBudget:
    """How hard the full-size model is timed (see `measure_latency`): passes stop once the
    relative IQR is <= 5% or `budget_s` seconds are spent, after at least `min_repeats`."""

    warmup: int = 1
    min_repeats: int = 3
    max_repeats: int = 30
    budget_s: float = 1.0
