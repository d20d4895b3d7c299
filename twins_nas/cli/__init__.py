"""The `twins-nas` command line: a thin layer over the Python API."""
from __future__ import annotations

from .app import app

# Importing a command module registers its commands on `app`; --help lists them in this order.
from . import show  # noqa: F401, I001  # isort: skip
from . import profile  # noqa: F401  # isort: skip
from . import search  # noqa: F401  # isort: skip
from . import fidelity  # noqa: F401  # isort: skip
from . import dashboard  # noqa: F401  # isort: skip


def main() -> None:
    app()
