"""Bad input as one line: `ConfigError`, and pydantic's multi-line report turned into one.

Configs (`config.py`) and search spaces (`search/space.py`) are validated by pydantic; both
report every problem as `key.path=value: rule`, joined by '; ', through `one_line`. Each
caller adds what only it knows (valid field names at a path, pair fields, metric keys)."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError


class ConfigError(ValueError):
    """One-line error about invalid input data; the message names the field and the rule."""


class RenamedWarning(DeprecationWarning):
    """Input used a name that has a new one (still accepted); the CLI prints it as a note."""


def loc_str(loc: Sequence) -> str:
    """('stages', 2, 'window') -> 'stages[2].window'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def show_value(value: Any) -> str:
    """A value as the user wrote it: JSON where it can be, a mapping as {...}."""
    if isinstance(value, dict):
        return "{...}"
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def rule_text(msg: str) -> str:
    """pydantic's message without its 'Value error, ' / 'Assertion failed, ' prefix."""
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


# special(error, loc, rule) -> the line for this error, "" to drop it, None for the default
Special = Callable[[Mapping[str, Any], tuple, str], str | None]


def one_line(err: ValidationError, valid_at: Callable[[tuple], Iterable[str] | None],
             special: Special | None = None, prefix: str = "", noun: str = "field") -> str:
    """Every problem of `err` as `path=value: rule`, joined by '; ' (first problem first).

    `valid_at(loc)` names the valid keys of the mapping at `loc` (for unknown keys); `special`
    formats the errors only the caller understands; `prefix` goes before every path; `noun`
    is what the report calls a key ('field' in configs, 'key' in spaces)."""
    msgs = []
    for e in err.errors():
        loc, rule = tuple(e["loc"]), rule_text(e["msg"])
        line = special(e, loc, rule) if special else None
        if line is None:
            path = loc_str(loc)
            if prefix:
                path = prefix + ("." + path if path and not path.startswith("[") else path)
            kind = e["type"]
            if kind == "extra_forbidden":
                valid = valid_at(loc[:-1])
                line = f"{path}: unknown {noun}" + (f"; valid {noun}s: {', '.join(valid)}" if valid else "")
            elif kind == "missing":
                line = f"{path}: required {noun} missing"
            elif kind == "value_error" or not path:
                line = (f"{path}{rule}" if rule.startswith("=") else f"{path}: {rule}") if path else rule
            else:
                given = f"={show_value(e['input'])}" if "input" in e else ""
                line = f"{path}{given}: {rule}"
        if line:
            msgs.append(line.replace("\n", " "))
    return "; ".join(dict.fromkeys(msgs))
