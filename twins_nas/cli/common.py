"""Shared CLI plumbing: one-line errors with exit code 2, the rich consoles."""
from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from ..atomic import OutputError
from ..config import ConfigError, format_validation_error
from ..errors import RenamedWarning

EXIT_OUTPUT = 3  # an output file could not be written (the study, if any, is intact: run again)

console = Console()
err_console = Console(stderr=True)


def one_line(msg: str) -> str:
    """`msg` on one printable line (rich markup in it escaped)."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(msg))
    return escape(text)


def fail(msg: str, code: int = 2) -> NoReturn:
    """Print one readable line on stderr and exit with `code` (2: bad input). Line breaks and
    other control characters the input carried are shown escaped (\\n, \\x1e)."""
    err_console.print(f"[bold red]error:[/] {one_line(msg)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


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
                fail(str(e))
            except ValidationError as e:
                fail(format_validation_error(e))
            except FileNotFoundError as e:
                fail(f"{e.filename or e}: file not found")
            except OutputError as e:  # disk full, read-only folder, no permission
                fail(str(e.strerror), code=EXIT_OUTPUT)
    return wrapper
