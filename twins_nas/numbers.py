"""Strict number types for validated input (configs, spaces, settings): pydantic's lax mode
would take `true` as 1 and `"4"` as 4; these take only real numbers.

- `PositiveInt`: an integer > 0 (not a bool, a float or a string);
- `Number`: an int or a float, finite (not a bool, a string, NaN or inf); stored as float.
"""
from __future__ import annotations

from typing import Annotated

from pydantic import Field, Strict

PositiveInt = Annotated[int, Strict(), Field(gt=0)]
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
