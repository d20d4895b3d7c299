"""The `twins-nas` command line: a thin layer over the Python API."""
from __future__ import annotations

import typer

app = typer.Typer(
    name="twins-nas",
    help="Hardware-aware architecture search over Twins vision transformers (PCPVT / SVT).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from . import show  # noqa: E402,F401  (each module registers its commands on `app`)
from . import profile  # noqa: E402,F401
from . import search  # noqa: E402,F401


def main() -> None:
    app()
