"""`twins-nas show`: print an architecture as a table, or its proxy next to it."""
from __future__ import annotations

import typer
from rich.table import Table

from ..config import ArchConfig, load_config
from ..sizes import MIN_RESOLUTION, format_pair, format_size, parse_size
from ..summary import summarize
from .app import app
from .common import console, fail, user_errors


def _proxy_table(cfg, space, title: str) -> tuple[Table, ArchConfig]:
    from ..search.proxy.network import geometry_rows, proxy_of
    proxy = proxy_of(cfg, space)
    t = Table(title=title)
    for col in ("stage", "blocks", "map", "window", "windows/side", "k", "keys/side", "sub-sample", "dim", "heads"):
        t.add_column(col, justify="left" if col in ("blocks", "sub-sample") else "right")
    full_rows, proxy_rows = geometry_rows(cfg, space.input_size), geometry_rows(proxy, space.proxy.resolution)
    for i, (f, p) in enumerate(zip(full_rows, proxy_rows)):
        pairs = ("map", "window", "windows_per_side", "k", "keys_per_side")
        cells = [(format_pair(f[key], square_as_one=True), format_pair(p[key], square_as_one=True)) for key in pairs]
        cells += [(f["subsample"] or "-", p["subsample"] or "-"), (str(f["embed_dim"]), str(p["embed_dim"])),
                  (str(f["num_heads"]), str(p["num_heads"]))]
        t.add_row(str(i + 1), " ".join(f["blocks"]), *(f"{a} -> {b}" for a, b in cells))
    return t, proxy


@app.command()
@user_errors
def show(
    name_or_json: str = typer.Argument(..., metavar="NAME_OR_JSON",
                                       help="A preset (twins-svt-s, twins-pcpvt-b, ...) or a config JSON "
                                            "(best_config.json, pareto.json, ...)."),
    resolution: int | None = typer.Option(None, "--resolution", "-r", min=MIN_RESOLUTION,
                                             help="Input size in pixels, square (default 224); or give --size."),
    size: str | None = typer.Option(None, "--size", metavar="HxW",
                                       help="Input size H x W in pixels, e.g. 512x1024 (rows x columns); one "
                                            "number is a square. Not together with --resolution."),
    index: int = typer.Option(None, "--index", help="Entry to show when the JSON holds several configs."),
    proxy: str | None = typer.Option(None, "--proxy", metavar="SPACE.yaml",
                                        help="Show the proxy network this space's search trains for the config, "
                                             "per stage as full size -> proxy (at the space's resolution)."),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                        help="Override a key of the --proxy space, e.g. proxy.resolution=64."),
    as_json: bool = typer.Option(False, "--json", help="Write the config JSON to stdout (with --proxy: the "
                                                       "proxy's), nothing else."),
) -> None:
    """Show an architecture: per-stage map size, width, heads, blocks, windows, sub-sampling, params,
    and its GMACs at an input size (--resolution N for N x N, or --size HxW)."""
    if resolution is not None and size is not None:
        fail(f"--resolution {resolution} and --size {size}: give one of them (--size HxW, e.g. 512x1024, "
             f"or --resolution N for N x N)")
    hw = parse_size(size, field="--size") if size is not None else (resolution or 224,) * 2
    cfg = load_config(name_or_json, index=index)
    if overrides and proxy is None:
        fail("--set overrides keys of the --proxy space: give --proxy SPACE.yaml too")
    if proxy is not None:
        from ..search.space.space import load_space
        space = load_space(proxy, overrides)
        t, pcfg = _proxy_table(cfg, space, f"{cfg.name or name_or_json} @ {format_size(space.input_size)} -> proxy @ "
                                            f"{format_size(space.proxy.resolution)} ({space.proxy.dataset}, geometry "
                                            f"{space.proxy.geometry})")
        if as_json:
            typer.echo(pcfg.to_json())
            return
        console.print(t)
        console.print(f"proxy params: [bold]{summarize(pcfg, space.proxy.resolution)['params']:,}[/]   "
                      f"(windows/side = ceil(map / window), keys/side = ceil(map / k))")
        return
    if as_json:
        typer.echo(cfg.to_json())
        return
    info = summarize(cfg, hw)
    t = Table(title=f"{cfg.name or name_or_json} @ {format_size(hw)}")
    for col in ("stage", "map HxW", "dim", "heads", "mlp", "blocks", "window (m, n)", "k (sub-sample)", "params (M)"):
        t.add_column(col, justify="left" if col in ("blocks", "k (sub-sample)") else "right")
    for row in info["stages"]:
        t.add_row(str(row["stage"]), f"{row['map'][0]}x{row['map'][1]}", str(row["embed_dim"]), str(row["num_heads"]),
                  f"{row['mlp_ratio']:g}", row["blocks"], row["window"], row["subsample"], f"{row['params'] / 1e6:.3f}")
    console.print(t)
    console.print(f"total params: [bold]{info['params'] / 1e6:.2f} M[/] ({info['params']:,})   "
                  f"GMACs @ {format_size(hw)}: [bold]{info['gmacs']:.3f}[/]")
