"""`HeadConfig`: the dense-prediction head put on a Twins backbone, as plain validated data.

One head for now, `semantic-fpn`: Semantic FPN (Kirillov et al. 2019) as mmsegmentation runs
it on ADE20K for the Twins paper: an FPN neck (`neck_channels` wide) over the four stage maps,
then an FPNHead (`channels` wide) that merges them at the stride of the first stage and
classifies every pixel into `num_classes`. The modules are in `segmentation.py`, their
closed-form cost in `head_cost.py`. No torch here: the cost model reads this without a model.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import ConfigError, one_line, show_value
from ..numbers import PositiveInt

HEADS = ("semantic-fpn",)


def stage_strides(patch_sizes: Sequence[int]) -> list[int]:
    """Stride of every stage map: the cumulative product of the patch sizes."""
    strides, s = [], 1
    for p in patch_sizes:
        s *= p
        strides.append(s)
    return strides


def head_lengths(strides: Sequence[int]) -> list[int]:
    """ConvModules in each scale head of the FPNHead: max(1, round(log2(stride_i / stride_0))),
    in integers: the n >= 1 whose 2^n is nearest the ratio r (never halfway for an integer r).
    mmseg truncates the log2 instead; the two agree for power-of-two ratios (4, 8, 16, 32)."""
    out = []
    for s in strides:
        r, n = s // strides[0], 1
        while r * r > 2 * 4 ** n:  # log2 r > n + 1/2
            n += 1
        out.append(n)
    return out


def _valid_fields(loc: tuple) -> list | None:
    return list(HeadConfig.model_fields) if not loc else None


def _special(e: Mapping[str, Any], loc: tuple, rule: str) -> str | None:
    if loc == ("type",) and e["type"] == "literal_error":
        return f"head.type={show_value(e['input'])}: unknown head; choose one of: {', '.join(HEADS)}"
    return None


class HeadConfig(BaseModel):
    """A Semantic FPN head (mmseg's `FPN` neck + `FPNHead`, BN, dropout 0.1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["semantic-fpn"] = "semantic-fpn"
    num_classes: PositiveInt = 150  # ADE20K
    neck_channels: PositiveInt = 256  # FPN out_channels
    channels: PositiveInt = 128  # FPNHead channels

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise ConfigError(one_line(err, _valid_fields, _special, prefix="head")) from None

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


def head_config(head: None | str | dict | HeadConfig, num_classes: int | None = None) -> HeadConfig | None:
    """A head by name (`semantic-fpn`), dict or HeadConfig -> HeadConfig (None -> None);
    `num_classes`, when given, replaces the head's. Bad input: one-line ConfigError."""
    if head is None:
        return None
    if isinstance(head, str):
        if head not in HEADS:
            raise ConfigError(f"head={show_value(head)}: unknown head; choose one of: {', '.join(HEADS)}")
        data: dict[str, Any] = {"type": head}
    elif isinstance(head, HeadConfig):
        data = head.to_dict()
    elif isinstance(head, dict):
        data = dict(head)
    else:
        raise ConfigError(f"head: must be a head name ({', '.join(HEADS)}), a mapping or a HeadConfig, "
                          f"got {type(head).__name__}")
    if num_classes is not None:
        data["num_classes"] = num_classes
    if isinstance(head, HeadConfig) and num_classes is None:
        return head
    return HeadConfig(**data)


def model_head(head: None | str | dict | HeadConfig, num_classes: int | None = None) -> HeadConfig | None:
    """`head_config` of `build_model`'s arguments: `num_classes` without a head is a TypeError
    (the classifier's classes are the config's `num_classes`)."""
    if head is None and num_classes is not None:
        raise TypeError("build_model: num_classes is the segmentation head's; without a head, "
                        "set the classifier's in the config (cfg.num_classes)")
    return head_config(head, num_classes)


def head_fields(head: HeadConfig | None) -> dict[str, str | int]:
    """The head as flat fields, {"head": type, "num_classes": classes}; {} for the classifier
    (its classes are the config's)."""
    return {} if head is None else {"head": head.type, "num_classes": head.num_classes}
