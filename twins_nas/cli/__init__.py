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



def _version(value: bool) -> None:
    if value:
        from .. import __version__
        typer.echo(f"twins-nas {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Hardware-aware architecture search over Twins vision transformers (PCPVT / SVT).

    show: print an architecture; profile: GMACs, latency and memory vs resolution;
    search: Optuna accuracy-vs-throughput search with proxy training; export: rewrite a
    study's reports.
    """


from . import show  # noqa: E402,F401  (each module registers its commands on `app`)
from . import profile  # noqa: E402,F401
from . import search  # noqa: E402,F401


def main() -> None:
    app()
