"""The `twins-nas` Typer application and its root options; each command module registers
its commands on `app`."""
from __future__ import annotations

import typer

from .. import __version__

app = typer.Typer(
    name="twins-nas",
    help="Hardware-aware architecture search over Twins vision transformers (PCPVT / SVT).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
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
