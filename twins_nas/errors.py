"""Bad input as one line: `ConfigError`, and pydantic's multi-line report turned into one.

Configs (`config.py`) and search spaces (`search/space.py`) are validated by pydantic; both
report every problem as `key.path=value: rule`, joined by '; ', through `one_line`. Each
caller adds what only it knows (valid field names at a path, pair fields, metric keys)."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

# name(field) -> how a reader writes that argument; name(field, *items): the items of a list argument
Namer = Callable[..., str]


def python_name(field: str, *items: object) -> str:
    """An argument as a Python caller writes it: `field`, or `field=[items]` for a list argument."""
    return f"{field}={list(items)!r}" if items else field


class ArgText(str):
    """Text that names arguments, made by `template(name)`: as a str it names them as a Python
    caller writes them; `render(name)` names them as another reader does (the command line: as
    its flags). For notes and messages that tell the reader which argument to change."""

    _template: Callable[[Namer], str]

    def __new__(cls, template: Callable[[Namer], str]) -> ArgText:
        text = super().__new__(cls, template(python_name))
        text._template = template
        return text

    def render(self, name: Namer) -> str:
        return self._template(name)

    def __reduce__(self):  # pickled (to another process) as the plain text
        return (str, (str(self),))


def render_text(text: str, name: Namer) -> str:
    """`text` with the arguments it names written by `name` (plain text as it is)."""
    return text.render(name) if isinstance(text, ArgText) else text


class ConfigError(ValueError):
    """One-line error about invalid input data; the message names the field and the rule.

    `field` is the argument or field the error is about, when it is about one; the message then
    starts with it (`field=value: rule`). A message that names further arguments is given as a
    function `message(name)` that writes each one as `name(field)` (or `name(field, *items)`):
    `str(error)` names them as a Python caller writes them, `render(name)` as another reader
    does (the command line: as its flags)."""

    def __init__(self, message: str | Callable[[Namer], str], field: str | None = None) -> None:
        self.field = field
        self._message = ArgText(message) if callable(message) else message
        super().__init__(str(self._message))

    def render(self, name: Namer) -> str:
        """The message with the arguments it names written by `name`."""
        if isinstance(self._message, ArgText):
            return self._message.render(name)
        text = str(self)
        rest = text[len(self.field):] if self.field and text.startswith(self.field) else None
        if rest is not None and rest[:1] in ("", "=", ":", " "):
            return name(self.field) + rest
        return text


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
