"""The `twins-nas` command line: a thin layer over the Python API."""
from __future__ import annotations

import signal
import sys

import typer
from typer.exceptions import TyperException

from .app import app
from .common import err_console, one_line

# Importing a command module registers its commands on `app`; --help lists them in this order.
from . import show  # noqa: F401, I001  # isort: skip
from . import profile  # noqa: F401  # isort: skip
from . import retarget  # noqa: F401  # isort: skip
from . import export_onnx  # noqa: F401  # isort: skip
from . import search  # noqa: F401  # isort: skip
from . import latency  # noqa: F401  # isort: skip
from . import fidelity  # noqa: F401  # isort: skip
from . import supernet  # noqa: F401  # isort: skip
from . import dashboard  # noqa: F401  # isort: skip


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """The `twins-nas` command. Usage errors (unknown option, missing or malformed value) are one
    line with exit code 2, like every other bad input; Ctrl-C and SIGTERM stop it as Ctrl-C
    does (a running trial is marked failed, the report of what is done written) with 130."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = app(args=argv, standalone_mode=False, prog_name="twins-nas")
    except TyperException as e:  # click's UsageError and friends (typer vendors click)
        message = " ".join(str(e.format_message()).split()) if hasattr(e, "format_message") else str(e)
        err_console.print(f"[bold red]error:[/] {one_line(message)}", highlight=False, soft_wrap=True)
        sys.exit(getattr(e, "exit_code", 2) or 2)
    except typer.Abort:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
