"""Input sizes: one home for the size types, their parsing, formatting and normalising.

An input size is an int n (n x n pixels) or a pair (H, W). Code passes (H, W) around
(`as_size`); validated input goes through `parse_size` / `SizeField`; text uses `format_size`
and `format_pair`.
"""
from __future__ import annotations

import operator
import re
from typing import Annotated, Any

from pydantic import BeforeValidator

from .errors import ConfigError, show_value

MIN_RESOLUTION = 32  # the smallest input a Twins accepts (four stages of patches, the first of 4)

Size = tuple[int, int]  # an input size (H, W) in pixels
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?$")
SIZE_FORM = "expected H x W in pixels, e.g. 512x1024, or one number for a square"


def _size_rule(value: Any) -> tuple[Size | None, str]:
    """(H, W) of an input-size value, or (None, why it is not one)."""
    hw: Any = None
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        hw = (value, value)
    elif isinstance(value, str) and (match := _SIZE_RE.match(value)):
        h, w = match.groups()
        hw = (int(h), int(w if w is not None else h))
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        hw = (int(value[0]), int(value[1]))
    if hw is None:
        return None, SIZE_FORM
    if min(hw) < MIN_RESOLUTION:
        return None, f"each side must be at least {MIN_RESOLUTION} px ({SIZE_FORM})"
    return hw, ""


def parse_size(value: Any, field: str = "size") -> Size:
    """An input size as (H, W): an int n (n x n), a string '512' or '512x1024' ('X' and spaces
    around it allowed) or a pair [H, W] of ints. Each side must be >= MIN_RESOLUTION. Bools,
    floats, zero, negatives and anything else raise a one-line `ConfigError` naming `field`."""
    hw, rule = _size_rule(value)
    if hw is None:
        shown = repr(value) if isinstance(value, str) else show_value(value)
        raise ConfigError(f"{field}={shown}: {rule}", field=field)
    return hw


def as_size(resolution: int | Size) -> Size:
    """(H, W) of an int n (n x n) or a pair: how code passes an input size around (no minimum;
    integers of any kind, numpy's included; a one-line `ConfigError`, a ValueError, unless both
    sides are positive integers)."""
    sides = resolution if isinstance(resolution, (tuple, list)) else (resolution, resolution)
    try:
        if len(sides) != 2 or any(isinstance(v, bool) for v in sides):
            raise TypeError
        hw = (operator.index(sides[0]), operator.index(sides[1]))
    except TypeError:
        hw = (0, 0)
    if min(hw) < 1:
        raise ConfigError(f"resolution={resolution!r}: expected a positive int n (n x n) or a pair (H, W) "
                          f"of positive ints")
    return hw


def format_size(size: int | Size) -> str:
    """'512x1024'; a square prints both sides too ('512x512'), an int n as 'nxn'."""
    h, w = as_size(size)
    return f"{h}x{w}"


def _size_field(value: Any) -> Size:
    hw, rule = _size_rule(value)
    if hw is None:  # pydantic adds the key path; `errors.one_line` keeps the '=value: rule' form
        raise ValueError(f"={show_value(value)}: {rule}")
    return hw


def compact_size(size: int | Size) -> int | Size:
    """n for a square (n, n) (or an int n), (H, W) otherwise: how a size is stored and keyed
    where a square one was an int before non-square sizes existed."""
    h, w = as_size(size)
    return h if h == w else (h, w)


# An input size in a settings model: any form `parse_size` takes, stored as (H, W) (a JSON list).
SizeField = Annotated[Size, BeforeValidator(_size_field)]
# The same, stored compact (`compact_size`): an int for a square (as a square size always was), else (H, W).
CompactSizeField = Annotated[int | Size, BeforeValidator(lambda v: compact_size(_size_field(v)))]


Resolution = int | Size  # an input size as callers give it: n (n x n pixels) or (H, W)


def format_pair(pair: tuple[int, int] | None, square_as_one: bool = False) -> str:
    """'7x14' for a window, cell or map size; '-' for None; with `square_as_one` a square one
    prints one side ('7')."""
    if pair is None:
        return "-"
    return f"{pair[0]}" if square_as_one and pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"
