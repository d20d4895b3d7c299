"""How a supernet is trained (`SupernetSettings`), beside the space's own proxy settings
(batch size, learning rate, weight decay, warm-up, label smoothing, data), which it shares
with the proxy training."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from ..errors import ConfigError, one_line

PREFIX = "supernet."  # `--set supernet.KEY=VALUE` sets these; every other key is the space's


class SupernetSettings(BaseModel):
    """The sandwich rule and the bookkeeping of a supernet training."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    random_subnets: StrictInt = Field(
        default=2, ge=0, description="random subnets per step besides the largest and the smallest")
    distill: StrictBool = Field(
        default=True, description="the other subnets learn the largest subnet's soft predictions (in-place "
                                  "distillation) instead of the labels: on svt.yaml it ranks subnets as their "
                                  "stand-alone trainings do far better (see docs/supernet.md)")
    epochs: StrictInt = Field(default=20, ge=1,
                              description="planned length in passes over the proxy's training images (when no "
                                          "number of steps is given)")
    checkpoint_every: StrictInt = Field(default=25, ge=1, description="steps between checkpoints")
    eval_every: StrictInt = Field(default=25, ge=1,
                                  description="steps between validation accuracies of the largest and smallest subnets")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise ConfigError(one_line(err, lambda loc: list(SupernetSettings.model_fields) if not loc else None,
                                       prefix="supernet", noun="setting")) from None


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], SupernetSettings]:
    """`key.path=value` overrides split into the space's and the supernet settings
    (`supernet.random_subnets=3`, value parsed as YAML)."""
    space_overrides, values = [], {}
    for o in overrides:
        if not o.startswith(PREFIX):
            space_overrides.append(o)
            continue
        key, eq, raw = o[len(PREFIX):].partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"override {o!r}: expected supernet.KEY=VALUE; keys: "
                              f"{', '.join(SupernetSettings.model_fields)}")
        try:
            values[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"override {o!r}: value is not valid YAML") from None
    return space_overrides, SupernetSettings(**values)
