"""The dense-prediction heads put on a Twins backbone, as plain validated data.

Two heads, the two decoders of the Twins paper's ADE20K table, as mmsegmentation runs them:

* `semantic-fpn` (`HeadConfig`): Semantic FPN (Kirillov et al. 2019), an FPN neck
  (`neck_channels` wide) over the four stage maps, then an FPNHead (`channels` wide) that
  merges them at the stride of the first stage and classifies every pixel into `num_classes`;
* `upernet` (`UperNetConfig`): UperNet (Xiao et al. 2018), mmseg's `UPerHead` (`channels`
  wide): a pyramid pooling module on the last stage map, an FPN over the others, every level
  fused at the first stage's stride and classified; `aux` adds mmseg's auxiliary FCNHead
  (`aux_channels` wide) on the stage before the last, a training-time head.

A head is told apart by its `type` (`DenseHead` is the union of both). The modules are in
`segmentation.py`, their closed-form cost in `head_cost.py`. No torch here: the cost model
reads this without a model.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from ..errors import ConfigError, one_line, show_value
from ..numbers import PositiveInt


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


def aux_stage(num_stages: int) -> int:
    """Index of the stage map UperNet's auxiliary FCNHead reads: the one before the last
    (mmseg's in_index 2 of four stages); the only one of a one-stage network."""
    return max(0, num_stages - 2)


def _valid_fields(model: type[BaseModel]):
    """`one_line`'s valid keys of `model`'s fields (at the top level only)."""
    def valid_at(loc: tuple) -> list | None:
        return list(model.model_fields) if not loc else None
    return valid_at


def _special(e: Mapping[str, Any], loc: tuple, rule: str) -> str | None:
    if loc == ("type",) and e["type"] == "literal_error":
        return f"head.type={show_value(e['input'])}: unknown head; choose one of: {', '.join(HEADS)}"
    return None


class _DenseHeadBase(BaseModel):
    """What every dense head config shares: one-line errors naming ``head.FIELD`` and the
    valid fields, frozen and strict about unknown keys, and `to_dict`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise ConfigError(one_line(err, _valid_fields(type(self)), _special, prefix="head")) from None

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


class HeadConfig(_DenseHeadBase):
    """A Semantic FPN head (mmseg's `FPN` neck + `FPNHead`, BN, dropout 0.1)."""

    type: Literal["semantic-fpn"] = "semantic-fpn"
    num_classes: PositiveInt = 150  # ADE20K
    neck_channels: PositiveInt = 256  # FPN out_channels
    channels: PositiveInt = 128  # FPNHead channels


class UperNetConfig(_DenseHeadBase):
    """An UperNet head: mmseg's `UPerHead` as the Twins configs set it (`upernet_*.py`:
    channels 512, pool_scales (1, 2, 3, 6), BN, dropout 0.1) and, with `aux`, the auxiliary
    `FCNHead` (channels 256, one 3x3 ConvModule, dropout 0.1) on the stage before the last
    (stage 3 of four), which mmseg trains with and does not run at inference."""

    type: Literal["upernet"] = "upernet"
    num_classes: PositiveInt = 150  # ADE20K
    channels: PositiveInt = 512  # UPerHead channels
    pool_scales: tuple[PositiveInt, ...] = Field(default=(1, 2, 3, 6), min_length=1)  # PPM output sides
    aux: StrictBool = False  # build the auxiliary FCNHead too
    aux_channels: PositiveInt = 256  # FCNHead channels


DenseHead = HeadConfig | UperNetConfig  # a dense head, told apart by its `type`
HEAD_TYPES: dict[str, type[HeadConfig] | type[UperNetConfig]] = {"semantic-fpn": HeadConfig,
                                                                  "upernet": UperNetConfig}
HEADS = tuple(HEAD_TYPES)  # the heads by name, as `--head`, `head=` and a space's `measure.head` take them


def head_config(head: None | str | dict | DenseHead, num_classes: int | None = None) -> DenseHead | None:
    """A head by name (`semantic-fpn`, `upernet`), dict (its `type` picks the head;
    semantic-fpn without one) or config -> its config (None -> None); `num_classes`, when
    given, replaces the head's. Bad input: one-line ConfigError."""
    if head is None:
        return None
    if isinstance(head, str):
        if head not in HEADS:
            raise ConfigError(f"head={show_value(head)}: unknown head; choose one of: {', '.join(HEADS)}",
                              field="head")
        data: dict[str, Any] = {"type": head}
    elif isinstance(head, (HeadConfig, UperNetConfig)):
        if num_classes is None:
            return head
        data = head.to_dict()
    elif isinstance(head, dict):
        data = dict(head)
    else:
        raise ConfigError(f"head: must be a head name ({', '.join(HEADS)}), a mapping or a HeadConfig, "
                          f"got {type(head).__name__}")
    if num_classes is not None:
        data["num_classes"] = num_classes
    kind = data.get("type", "semantic-fpn")
    if not isinstance(kind, str) or kind not in HEAD_TYPES:
        raise ConfigError(f"head.type={show_value(kind)}: unknown head; choose one of: {', '.join(HEADS)}")
    return HEAD_TYPES[kind](**data)


def model_head(head: None | str | dict | DenseHead, num_classes: int | None = None) -> DenseHead | None:
    """`head_config` of `build_model`'s arguments: `num_classes` without a head is a TypeError
    (the classifier's classes are the config's `num_classes`)."""
    if head is None and num_classes is not None:
        raise TypeError("build_model: num_classes is the segmentation head's; without a head, "
                        "set the classifier's in the config (cfg.num_classes)")
    return head_config(head, num_classes)


def head_fields(head: DenseHead | None) -> dict[str, str | int]:
    """The head as flat fields, {"head": type, "num_classes": classes}; {} for the classifier
    (its classes are the config's)."""
    return {} if head is None else {"head": head.type, "num_classes": head.num_classes}
