"""`twins-nas show`: print an architecture as a table."""
from __future__ import annotations

import typer
from rich.table import Table

from ..config import load_config
from ..summary import summarize
from .app import app
from .common import console, user_errors


@app.command()
@user_errors
def show(
    name_or_json: str = typer.Argument(..., metavar="NAME_OR_JSON",
                                       help="A preset (twins-svt-s, twins-pcpvt-b, ...) or a config JSON "
                                            "(best_config.json, pareto.json, ...)."),
    resolution: int = typer.Option(224, "--resolution", "-r", min=32, help="Input size (pixels, square)."),
    index: int = typer.Option(None, "--index", help="Entry to show when the JSON holds several configs."),
) -> None:
    """Show an architecture: per-stage map size, width, heads, blocks, windows, sub-sampling, params."""
    cfg = load_config(name_or_json, index=index)
    info = summarize(cfg, resolution)
    t = Table(title=f"{cfg.name or name_or_json} @ {resolution}x{resolution}")
    for col in ("stage", "map HxW", "dim", "heads", "mlp", "blocks", "window (m, n)", "k (sub-sample)", "params (M)"):
        t.add_column(col, justify="left" if col in ("blocks", "k (sub-sample)") else "right")
    for row in info["stages"]:
        t.add_row(str(row["stage"]), f"{row['map'][0]}x{row['map'][1]}", str(row["embed_dim"]), str(row["num_heads"]),
                  f"{row['mlp_ratio']:g}", row["blocks"], row["window"], row["subsample"], f"{row['params'] / 1e6:.3f}")
    console.print(t)
    console.print(f"total params: [bold]{info['params'] / 1e6:.2f} M[/] ({info['params']:,})   "
                  f"GMACs @ {resolution}: [bold]{info['gmacs']:.3f}[/]")
