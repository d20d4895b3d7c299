"""Shared CLI plumbing: one-line errors with exit code 2, the rich consoles."""
from __future__ import annotations

import functools
import warnings
from typing import Callable, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

from ..config import ConfigError, format_validation_error
from ..errors import RenamedWarning

console = Console()
err_console = Console(stderr=True)


def fail(msg: str, code: int = 2) -> NoReturn:
    """Print one readable line on stderr and exit with `code` (2: bad input)."""
    err_console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
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
    return wrapper
