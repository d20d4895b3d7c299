"""`twins-nas show`: `twins_nas.summary.describe` (and, with --proxy,
`twins_nas.search.space.proxy_view.describe_proxy`)."""
from __future__ import annotations

import typer
from rich.table import Table

from ..models import HEADS
from ..sizes import MIN_RESOLUTION, format_pair, format_size
from ..summary import DenseCost, Description, describe
from .app import app
from .common import console, fail, user_errors


def _print_proxy(desc: Description, space_file: str, overrides: list[str], as_json: bool) -> None:
    from ..search.space.proxy_view import describe_proxy
    view = describe_proxy(desc.config, space_file, overrides)
    if as_json:
        typer.echo(view.config.to_json())
        return
    space = view.space
    t = Table(title=f"{desc.name} @ {format_size(space.input_size)} -> proxy @ {format_size(space.proxy.resolution)} "
                    f"({space.proxy.dataset}, geometry {space.proxy.geometry})")
    for col in ("stage", "blocks", "map", "window", "windows/side", "k", "keys/side", "sub-sample", "dim", "heads"):
        t.add_column(col, justify="left" if col in ("blocks", "sub-sample") else "right")
    for st in view.stages:
        f, p = st.full, st.proxy
        pairs = ("map", "window", "windows_per_side", "k", "keys_per_side")
        cells = [(format_pair(f[key], square_as_one=True), format_pair(p[key], square_as_one=True)) for key in pairs]
        cells += [(f["subsample"] or "-", p["subsample"] or "-"), (str(f["embed_dim"]), str(p["embed_dim"])),
                  (str(f["num_heads"]), str(p["num_heads"]))]
        t.add_row(str(st.stage), " ".join(f["blocks"]), *(f"{a} -> {b}" for a, b in cells))
    console.print(t)
    console.print(f"proxy params: [bold]{view.params:,}[/]   "
                  f"(windows/side = ceil(map / window), keys/side = ceil(map / k))")


def _print_dense(dense: DenseCost, size: str) -> None:
    """The dense model's params and GMACs, each as its total and its parts."""
    params = " + ".join(f"{part} {n / 1e6:.3f} M" for part, n in dense.params.items())
    gmacs = " + ".join(f"{part} {g:.3f}" for part, g in dense.gmacs.items())
    console.print(f"dense model ({dense.head} head, {dense.num_classes} classes) @ {size}:", highlight=False)
    console.print(f"  params: [bold]{dense.total_params / 1e6:.2f} M[/] ({dense.total_params:,}) = {params}",
                  highlight=False)
    console.print(f"  GMACs: [bold]{dense.total_gmacs:.3f}[/] = {gmacs}", highlight=False)


@app.command(short_help="Show an architecture per stage, with its params and GMACs at an input size.")
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
    head: str | None = typer.Option(None, "--head", metavar="NAME",
                                    help=f"Also the dense model: the backbone plus this segmentation head "
                                         f"({', '.join(HEADS)}, 150 classes), its params and GMACs split into "
                                         f"backbone, neck and head."),
    as_json: bool = typer.Option(False, "--json", help="Write the config JSON to stdout (with --proxy: the "
                                                       "proxy's), nothing else."),
) -> None:
    """Show an architecture: per-stage map size, width, heads, blocks, windows, sub-sampling, params,
    and its GMACs at an input size (--resolution N for N x N, or --size HxW); with --head, the
    dense model's params and GMACs too, per part."""
    desc = describe(name_or_json, size=size, resolution=resolution, index=index, head=head)
    if overrides and proxy is None:
        fail("--set overrides keys of the --proxy space: give --proxy SPACE.yaml too")
    if proxy is not None:
        _print_proxy(desc, proxy, overrides, as_json)
        return
    if as_json:
        typer.echo(desc.config.to_json())
        return
    info = desc.summary
    t = Table(title=f"{desc.name} @ {format_size(info.size)}")
    for col in ("stage", "map HxW", "dim", "heads", "mlp", "blocks", "window (m, n)", "k (sub-sample)", "params (M)"):
        t.add_column(col, justify="left" if col in ("blocks", "k (sub-sample)") else "right")
    for row in info.stages:
        t.add_row(str(row.stage), f"{row.map[0]}x{row.map[1]}", str(row.embed_dim), str(row.num_heads),
                  f"{row.mlp_ratio:g}", row.blocks, row.window, row.subsample, f"{row.params / 1e6:.3f}")
    console.print(t)
    console.print(f"total params: [bold]{info.params / 1e6:.2f} M[/] ({info.params:,})   "
                  f"GMACs @ {format_size(info.size)}: [bold]{info.gmacs:.3f}[/]")
    if info.dense is not None:
        _print_dense(info.dense, format_size(info.size))
