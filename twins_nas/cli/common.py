"""Shared CLI plumbing: one-line errors with exit code 2 (the library's field names written as
the flags that set them), the rich consoles."""
from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterable
from typing import NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from ..atomic import OutputError
from ..config import ConfigError, format_validation_error
from ..errors import RenamedWarning, render_text

EXIT_OUTPUT = 3  # an output file could not be written (the study, if any, is intact: run again)

console = Console()
err_console = Console(stderr=True)


# The argument or field a library error names -> the flag that sets it. Library messages name
# arguments as a Python caller writes them (`ConfigError.field`); the command line shows flags.
FLAGS: dict[str, str] = {
    # show, retarget
    "size": "--size", "resolution": "--resolution", "index": "--index", "proxy": "--proxy",
    "min_keys": "--min-keys", "max_aspect": "--max-aspect", "keep_weights": "--keep-weights", "budget": "--budget",
    "max_params_growth": "--max-params-growth",
    # export-onnx
    "opset": "--opset",
    "out": "--out",
    # profile (sizes and budget_s: see cli/profile.py)
    "head": "--head", "num_classes": "--num-classes", "batch": "--batch", "dtype": "--dtype", "runtime": "--runtime",
    # search, export
    "space": "--space", "overrides": "--set", "trials": "--trials", "study_name": "--study-name",
    "storage": "--storage", "out_dir": "--out", "device": "--device", "seed": "--seed", "workers": "--workers",
    "threads": "--threads", "timeout": "--timeout", "sampler": "--sampler", "data_root": "--data-root",
    "pick": "--pick", "heartbeat": "--heartbeat", "budget_s": "--timing-budget", "study": "--study",
    # fidelity
    "reference": "--reference", "archs": "--archs", "pairs": "--pairs", "seeds": "--seeds", "seeded": "--seeded",
    "stop_after": "--stop-after",
    # latency-table
    "calibration": "--calibration", "predictor": "--predictor",
    # supernet
    "minutes": "--minutes", "steps": "--steps", "supernet": "--supernet", "retrain": "--retrain",
    "retrain_seeds": "--retrain-seeds", "supernet_samples": "--supernet-samples",
    "samples": "--supernet-samples",   # the supernet scorer's own name of it
    # dashboard
    "study_dir": "--study-dir", "host": "--host", "port": "--port",
}


def flag(field: str, *items: object) -> str:
    """A library argument as the command line sets it: its flag (`--study-name`), or the flag
    once per item of a list argument (`--set a=1 --set b=2`). A name with no flag stays as it is."""
    name = FLAGS.get(field, field)
    return " ".join(f"{name} {item}" for item in items) if items else name


def device_of(name: str):
    """The torch device `name` names ('auto': a GPU when there is one); a one-line ConfigError
    about `device` when it is not there."""
    from ..profile.latency import resolve_device  # heavy import: see README
    try:
        return resolve_device(name)
    except ValueError as e:
        raise ConfigError(str(e), field="device") from None


def one_line(msg: str) -> str:
    """`msg` on one printable line (rich markup in it escaped)."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(msg))
    return escape(text)


def fail(msg: str, code: int = 2) -> NoReturn:
    """Print one readable line on stderr and exit with `code` (2: bad input). Line breaks and
    other control characters the input carried are shown escaped (\\n, \\x1e)."""
    err_console.print(f"[bold red]error:[/] {one_line(msg)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_notes(notes: Iterable[str]) -> None:
    """Each note of a result on stderr, one line each, the arguments it names as flags."""
    for note in notes:
        err_console.print(f"[yellow]note:[/] {render_text(note, flag)}", highlight=False, soft_wrap=True)


def user_errors(fn: Callable) -> Callable:
    """Turn the errors that mean 'bad input' into `fail(...)` instead of a traceback, and show
    each renamed name the input used (a `RenamedWarning`) once, as a note on stderr."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("always", RenamedWarning)
            show, noted = warnings.showwarning, set()

            def note(message, category, filename, lineno, file=None, line=None):
                if issubclass(category, RenamedWarning):
                    if str(message) in noted:
                        return
                    noted.add(str(message))
                    err_console.print(f"[yellow]note:[/] {message}", highlight=False, soft_wrap=True)
                else:
                    show(message, category, filename, lineno, file, line)

            warnings.showwarning = note
            try:
                return fn(*args, **kwargs)
            except ConfigError as e:
                fail(e.render(flag))
            except ValidationError as e:
                fail(format_validation_error(e))
            except FileNotFoundError as e:
                fail(f"{e.filename or e}: file not found")
            except OutputError as e:  # disk full, read-only folder, no permission
                fail(str(e.strerror), code=EXIT_OUTPUT)
    return wrapper
