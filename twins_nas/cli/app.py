"""The `twins-nas` Typer application and its root options; each command module registers
its commands on `app`."""
from __future__ import annotations

import typer

from .. import __version__

HELP = ("Hardware-aware architecture search over Twins vision transformers (PCPVT / SVT): show an architecture, "
        "profile its costs over input sizes, retarget it to a deployment size, export it to ONNX, time a space's "
        "blocks into a latency table, search a space, export a study's report, measure the fidelity of cheap "
        "scorers, train a weight-sharing supernet of a space and open a study in the dashboard.")

app = typer.Typer(
    name="twins-nas",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"twins-nas {__version__}")
        raise typer.Exit()


@app.callback(help=HELP)
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """The root of the command line: its options; each command is in its own module."""
