"""The ``measure:`` section of a space: how the full-size model is measured (`MeasureSettings`)
and how hard it is timed (`MeasureBudget`). Plain data: the timing code reads it without the
YAML schema of a space."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_serializer, model_validator

from ...errors import ConfigError, RenamedWarning
from ...hardware import DEVICE_NAMES, DTYPE_NAMES, check_device_name, check_dtype_name
from ...models.head_config import HEADS, DenseHead, HeadConfig
from ...models.head_config import head_config as as_head_config
from ...profile.backends import BACKENDS, DEFAULT_BACKEND, MeasureSpec
from ...sizes import SizeField

HEAD_CLASSES = HeadConfig.model_fields["num_classes"].default  # a measured head's classes when not given (ADE20K's)
_OPTIONAL = ("head", "num_classes", "size", "runtime", "predictor")  # left out of a dump while unset (see `_dump`)


class MeasureSettings(BaseModel):
    """How the full-size model is measured (throughput, latency, peak memory).

    * `batch_size`, `dtype`, `device`: the timed forward passes;
    * `size`: the input size (H, W) at which the full-size model is timed, its peak memory
      measured and its GMACs counted; written ``512x1024``, ``[512, 1024]`` or one number for a
      square. Unset (null): the space's ``resolution``;
    * `head`: measure the backbone with a dense-prediction head instead of the classifier, one
      of `HEADS` (``semantic-fpn``, ``upernet``); unset: the classifier model;
    * `num_classes`: classes of that head (>= 1; default `HEAD_CLASSES` = 150 when `head` is
      set; only with `head`);
    * `runtime`: what runs the timed passes, a name of `profile.backends.BACKENDS`: ``eager``
      (the module itself; also when unset), ``compile`` (`torch.compile`) or ``onnxruntime``
      (the model exported to ONNX; see `profile.runtimes`). ``backend`` is read as ``runtime``;
    * `predictor`: a latency table (JSON, `twins-nas latency-table`) that predicts the timed
      metrics instead of timing each model; a relative path is read from the space file's
      folder (`SearchSpace.predictor_path`). Unset: every model is timed.

    `head`, `num_classes`, `size`, `runtime` and `predictor` are left out of the dumped settings while
    unset, so a space that does not use them hashes (and is stored by a study) as it did before
    they existed. `spec` is the `MeasureSpec` the timed passes run with."""

    model_config = ConfigDict(extra="forbid")

    batch_size: StrictInt = Field(default=8, ge=1)
    dtype: str = Field(default="fp32", description=" | ".join(DTYPE_NAMES))
    device: str = Field(default="auto", description="auto (cuda if available), cpu, cuda, cuda:N, mps")
    size: SizeField | None = Field(default=None,
                                      description="HxW of the measured input; null: the space's resolution")
    head: str | None = Field(default=None, description="null (the classifier) or " + " | ".join(HEADS))
    num_classes: StrictInt | None = Field(default=None, ge=1,
                                             description=f"classes of the head (default {HEAD_CLASSES})")
    runtime: str | None = Field(default=None, description=f"what runs the timed passes: {' | '.join(BACKENDS)} "
                                                          f"(null: {DEFAULT_BACKEND})")
    predictor: str | None = Field(default=None, min_length=1,
                                  description="latency table (JSON) predicting the timed metrics; null: time them")

    @model_validator(mode="before")
    @classmethod
    def _backend_is_runtime(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "backend" not in data:
            return data
        data = dict(data)
        if "runtime" in data:
            raise ValueError("backend and runtime: the same setting twice (backend is another name of runtime); "
                             "keep runtime")
        warnings.warn("measure.backend is called measure.runtime; backend still reads the same", RenamedWarning,
                      stacklevel=2)
        data["runtime"] = data.pop("backend")
        return data

    @field_validator("runtime")
    @classmethod
    def _runtime(cls, v: str | None) -> str | None:
        if v is not None and v not in BACKENDS:
            raise ValueError(f"={v!r}: valid runtimes are {', '.join(BACKENDS)} (or null for {DEFAULT_BACKEND})")
        return None if v == DEFAULT_BACKEND else v  # the default, named: hashes as unset

    @field_validator("head")
    @classmethod
    def _head(cls, v: str | None) -> str | None:
        if v is not None and v not in HEADS:
            raise ValueError(f"={v!r}: valid heads are {', '.join(HEADS)} (or null for the classifier)")
        return v

    @model_validator(mode="after")
    def _head_classes(self) -> MeasureSettings:
        if self.head is None and self.num_classes is not None:
            raise ValueError(f"num_classes={self.num_classes}: classes of a measured head; give head too "
                             f"({', '.join(HEADS)})")
        if self.head is not None and self.num_classes is None:
            self.num_classes = HEAD_CLASSES
        return self

    @property
    def head_config(self) -> DenseHead | None:
        """The measured head as `build_model(cfg, head=...)` takes it; None: the classifier."""
        return as_head_config(self.head, self.num_classes)

    def spec(self, budget: MeasureBudget | None = None, device: str | None = None) -> MeasureSpec:
        """The `MeasureSpec` of the timed passes: this section's batch, dtype and runtime,
        `device` (the run's; default this section's) and how hard `budget` (default
        `MeasureBudget()`) says. Threads are left as the run set them."""
        b = budget or MeasureBudget()
        return MeasureSpec(device=self.device if device is None else device, dtype=self.dtype,
                           batch=self.batch_size, warmup=b.warmup, min_repeats=b.min_repeats,
                           max_repeats=b.max_repeats, budget_s=b.budget_s, backend=self.runtime or DEFAULT_BACKEND)

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


@dataclass(frozen=True)
class MeasureBudget:
    """How hard the full-size model is timed (see `measure_latency`): passes stop once the
    relative IQR is <= 5% or `budget_s` seconds are spent, after at least `min_repeats`."""

    warmup: int = 1
    min_repeats: int = 3
    max_repeats: int = 30
    budget_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.budget_s > 0:
            raise ConfigError(f"budget_s={self.budget_s}: must be a positive number of seconds", field="budget_s")
