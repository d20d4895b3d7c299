"""`twins-nas export-onnx`: `twins_nas.profile.onnx_export.export_onnx`."""
from __future__ import annotations

from pathlib import Path

import typer

from ..config import load_config
from ..models import HEADS
from .app import app
from .common import console, user_errors


def _shape(dims: list) -> str:
    return "(" + ", ".join(str(d) for d in dims) + ")"


@app.command("export-onnx", short_help="Export an architecture to ONNX at one input size and check it in "
                                       "onnxruntime.")
@user_errors
def export_onnx_command(
    name_or_json: str = typer.Argument(..., metavar="CONFIG",
                                       help="A preset (twins-svt-s, ...) or a config JSON (best_config.json, ...)."),
    size: str = typer.Option(..., "--size", metavar="HxW",
                             help="Input size H x W in pixels, e.g. 512x1024; one number is a square. Fixed in "
                                  "the graph (the LSA windows and GSA keys follow from it)."),
    head: str | None = typer.Option(None, "--head", metavar="NAME",
                                    help=f"Export the dense model: the backbone plus this segmentation head "
                                         f"({', '.join(HEADS)}, 150 classes); output (B, classes, H, W)."),
    index: int = typer.Option(None, "--index", help="Entry to take when the JSON holds several configs."),
    batch: int = typer.Option(1, "--batch", "-b", help="Images of the traced input."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset, 17 to 20."),
    dynamic_batch: bool = typer.Option(True, "--dynamic-batch/--no-dynamic-batch",
                                       help="Leave the batch axis free in the graph (the spatial size is fixed "
                                            "either way)."),
    out: Path = typer.Option(..., "--out", "-o", metavar="FILE.onnx", help="Where to write the graph."),
) -> None:
    """Export an architecture (weights initialised with seed 0, eval mode) to ONNX at one input
    size, written atomically. Then, when onnxruntime is installed, load the file, run it and
    check that it matches PyTorch within the tolerance (|out - ref| <= 1e-4 max|ref| + 1e-3 |ref|);
    print the opset, the input and output names and shapes, the dynamic axes and the max error."""
    from ..profile.onnx_export import export_onnx  # heavy import: see README
    cfg = load_config(name_or_json, index=index)
    with console.status(f"exporting {cfg.name or name_or_json}"):
        rep = export_onnx(cfg, size, out, head=head, batch=batch, opset=opset, dynamic_batch=dynamic_batch)
    console.print(f"wrote [bold]{rep.path}[/] (opset {rep.opset}, {rep.path.stat().st_size / 2 ** 20:.1f} MiB) "
                  f"in {rep.export_s:.1f} s", highlight=False)
    for kind, items in (("input", rep.inputs), ("output", rep.outputs)):
        for name, dims in items:
            console.print(f"  {kind} {name}: {_shape(dims)}", highlight=False)
    axes = ", ".join(f"{name}[{axis}] = {label}" for name, d in rep.dynamic_axes.items() for axis, label in d.items())
    console.print(f"  dynamic axes: {axes or 'none (every axis fixed)'}", highlight=False)
    if rep.max_error is None:
        console.print("[yellow]note:[/] onnxruntime is not installed: the graph was not checked "
                      "(pip install 'twins-nas[onnx]')")
    else:
        console.print(f"onnxruntime matches PyTorch: max abs error {rep.max_error:.3g}", highlight=False)
