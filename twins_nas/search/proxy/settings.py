"""The ``proxy:`` section of a space: how the proxy is trained (`ProxySettings`). Plain data:
the training and data code read it without the YAML schema of a space."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from ...numbers import Number
from .datasets import dataset_choices, find_dataset, get_dataset


class ProxySettings(BaseModel):
    """Proxy training: a width-scaled copy of the sampled architecture trained briefly at a
    low resolution on an in-memory data set (see `twins_nas.search.proxy.train`).

    `train_samples` training images (a fixed class-balanced subset of the training set) for
    `epochs` passes; top-1 accuracy on `val_samples` held-out training images (class-balanced,
    disjoint from the training subset). The test set is never used. Frozen (hashable), so a
    data set loaded for these settings can be cached."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(default="fashion-mnist",
                         description="a data set of the registry (twins_nas.search.proxy.datasets): fashion-mnist, "
                                     "cifar10, cifar100, imagefolder:PATH, cluttered-fashion-mnist or one registered")
    data_root: str | None = Field(default=None, description="where to look for the data set first")
    resolution: StrictInt = Field(default=32, ge=8)
    patch_size: StrictInt | None = Field(
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
        if find_dataset(v) is None:
            raise ValueError(f"={v!r}: valid data sets are {', '.join(dataset_choices())}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ProxySettings:
        """Rules between fields (each message names its field, as pydantic's own do)."""
        problems = []
        if self.warmup_epochs >= self.epochs:
            problems.append(f"warmup_epochs={self.warmup_epochs:g}: must be less than epochs={self.epochs} "
                            f"(the warm-up would take the whole training)")
        classes = get_dataset(self.dataset).num_classes  # None: read from the data
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
