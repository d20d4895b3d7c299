"""A Twins network as an ONNX graph (`export_onnx`, the `export-onnx` command) and the few
onnxruntime calls the ``onnxruntime`` timing runtime shares with it.

The graph is exported with PyTorch's TorchScript exporter (``torch.onnx.export(...,
dynamo=False)``), opset `DEFAULT_OPSET` (17: LayerNormalization is one op) by default: it
takes ~3 s for Twins-SVT-S where the dynamo exporter takes ~13 s, with identical outputs.
The plain layers are exported (`cpu_fast_paths.fast_paths(False)`): the CPU fast paths are an
optimisation of PyTorch's eager mode, which a graph runtime does its own way. The input is
``input`` (B, C, H, W), the output ``logits`` (B, classes) or, with a dense head, (B, classes,
H, W). Only the batch axis can be dynamic: the spatial size is fixed at export, since the
number of LSA windows, their padding and the GSA key grid follow from it.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import torch
import torch.nn as nn

from ..atomic import atomic_path
from ..config import ArchConfig, load_config
from ..errors import ConfigError
from ..models import DenseHead, build_model
from ..models.cpu_fast_paths import fast_paths
from ..sizes import Size, parse_size
from .latency import in_chans_of
from .output_check import as_tensors, check_outputs, reason

DEFAULT_OPSET = 17
OPSETS = range(17, 21)  # opsets the exporter writes with LayerNormalization as one op
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
INSTALL_HINT = "pip install 'twins-nas[onnx]'"


def import_onnxruntime(who: str = "runtime='onnxruntime'") -> ModuleType:
    """The onnxruntime module; a one-line ConfigError starting with `who` when it is not installed."""
    try:
        import onnxruntime  # heavy import: see README
    except ImportError:
        raise ConfigError(f"{who}: onnxruntime is not installed ({INSTALL_HINT})", field="runtime") from None
    return onnxruntime


def check_opset(opset: int) -> int:
    if isinstance(opset, bool) or opset not in OPSETS:
        raise ConfigError(f"opset={opset!r}: valid opsets are {OPSETS.start} to {OPSETS.stop - 1}", field="opset")
    return opset


@contextlib.contextmanager
def _no_output() -> Iterator[None]:
    """What the process writes to its stdout and stderr (file descriptors 1 and 2, where the
    exporter's C++ side prints a whole graph on an error) discarded inside the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter silenced (its warnings and prints); the plain layers."""
    with warnings.catch_warnings(), fast_paths(False), _no_output():
        warnings.simplefilter("ignore")
        yield


def export_graph(model: nn.Module, example: torch.Tensor, target: str | Path | io.BytesIO,
                 opset: int = DEFAULT_OPSET, dynamic_batch: bool = False,
                 who: str = "runtime='onnxruntime'") -> None:
    """Write `model` (in eval mode) traced on `example` as ONNX to `target` (a path or a buffer).
    A model the exporter cannot take is a one-line ConfigError starting with `who` that says why."""
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    try:
        with _quiet(), torch.no_grad():
            torch.onnx.export(model, (example,), cast(Any, target if isinstance(target, io.BytesIO) else str(target)),
                              dynamo=False, opset_version=check_opset(opset), input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], dynamic_axes=axes, do_constant_folding=True)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"{who}: the model cannot be exported to ONNX ({reason(e)})", field="runtime") from None


def timing_options(ort: ModuleType, threads: int) -> object:
    """onnxruntime's options for timing: `threads` intra-op threads, sequential
    execution, one inter-op thread, warnings off."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return so


def providers_for(ort: ModuleType, device: torch.device, who: str = "runtime='onnxruntime'") -> list[str]:
    """The execution provider of `device`: CPUExecutionProvider, or CUDAExecutionProvider for a
    CUDA device when this onnxruntime has it; a one-line ConfigError otherwise."""
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError(f"{who}: device={str(device)!r} needs onnxruntime's CUDAExecutionProvider, which this "
                              f"onnxruntime lacks (pip install onnxruntime-gpu, or device cpu)", field="runtime")
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]  # type: ignore[list-item]
    raise ConfigError(f"{who}: device={str(device)!r} is not supported (cpu or cuda)", field="runtime")


def open_inference(ort: ModuleType, model: bytes | str | Path, providers: list, threads: int,
                   who: str = "runtime='onnxruntime'") -> object:
    """onnxruntime's inference object of an ONNX graph (its InferenceSession class); a graph it
    cannot load (an op it lacks) is a one-line ConfigError starting with `who`."""
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model),
                                    timing_options(ort, threads), providers=providers)
    except Exception as e:
        raise ConfigError(f"{who}: onnxruntime cannot load the exported graph ({reason(e)})",
                          field="runtime") from None


def _check_file(path: str | Path, model: nn.Module, x: torch.Tensor, other_batch: int | None,
                who: str) -> float | None:
    """The max abs error of onnxruntime's outputs of the file at `path` against `model`'s, on
    `x` and, when given, on `other_batch` images; None when onnxruntime is not installed."""
    try:
        ort = import_onnxruntime(who)
    except ConfigError:
        return None
    sess = open_inference(ort, path, ["CPUExecutionProvider"], torch.get_num_threads(), who=who)
    gen = torch.Generator().manual_seed(1)
    inputs = [x] + ([torch.randn(other_batch, *x.shape[1:], generator=gen)] if other_batch else [])
    err = 0.0
    for xi in inputs:
        with torch.inference_mode():
            ref = model(xi)
        out = [torch.from_numpy(a) for a in sess.run(None, {INPUT_NAME: xi.numpy()})]  # type: ignore[attr-defined]
        err = max(err, check_outputs(who, out, ref))
    return err


@dataclass(frozen=True)
class OnnxExport:
    """What `export_onnx` wrote: the file, its opset, input and outputs as (name, shape) with
    'batch' for a dynamic batch axis, the dynamic axes, the export's seconds and the max abs
    error of onnxruntime's output against PyTorch's (None: onnxruntime is not installed)."""

    path: Path
    opset: int
    inputs: list[tuple[str, list[int | str]]]
    outputs: list[tuple[str, list[int | str]]]
    dynamic_axes: dict[str, dict[int, str]]
    export_s: float
    max_error: float | None


def export_onnx(cfg_or_model: ArchConfig | dict | str | nn.Module, size: int | str | Size, path: str | Path,
                head: DenseHead | str | None = None, batch: int = 1, opset: int = DEFAULT_OPSET,
                dynamic_batch: bool = True, check: bool = True) -> OnnxExport:
    """Export a network to ONNX at input `size` (n, 'HxW' or (H, W)) and write it to `path`
    atomically. `cfg_or_model`: a module (exported as it is, in eval mode) or anything
    `build_model` takes (built with seed 0 and `head`, a name of `HEADS` or a head config).
    `batch`: images of the traced input; `dynamic_batch`: the batch axis free in the graph.

    With `check` and onnxruntime installed, the written file is loaded and run on the traced
    input (and, with a dynamic batch, on batch + 1 images) and must match PyTorch's output
    within `output_check.tolerance` (fp32); a mismatch or a model the exporter cannot take is a
    one-line ConfigError. See the module doc for the names, opset and dynamic axes."""
    who = "export-onnx"
    hw = parse_size(size, field="size")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch={batch!r}: must be a whole number, at least 1", field="batch")
    check_opset(opset)
    if isinstance(cfg_or_model, nn.Module):
        if head is not None:
            raise ConfigError("head: give a config with `head`, or a module that has its head", field="head")
        model = cfg_or_model
    else:
        cfg = (load_config(cfg_or_model) if isinstance(cfg_or_model, str) else
               ArchConfig.from_dict(cfg_or_model) if isinstance(cfg_or_model, dict) else cfg_or_model)
        cfg.stage_sizes(hw)  # one line when too small
        model = build_model(cfg, seed=0, head=head)
    was_training = model.training
    model.eval()
    in_chans = in_chans_of(model)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, in_chans, *hw, generator=gen)
    try:
        t0 = time.perf_counter()
        with atomic_path(path) as tmp:
            export_graph(model, x, tmp, opset, dynamic_batch, who=who)
        export_s = time.perf_counter() - t0
        with torch.inference_mode():
            ref = model(x)
        err = _check_file(path, model, x, batch + 1 if dynamic_batch else None, who) if check else None
    finally:
        model.train(was_training)
    b: int | str = "batch" if dynamic_batch else batch
    refs = as_tensors(ref)
    return OnnxExport(path=Path(path), opset=opset, inputs=[(INPUT_NAME, [b, in_chans, *hw])],
                      outputs=[(OUTPUT_NAME, [b, *r.shape[1:]]) for r in refs],
                      dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else {},
                      export_s=export_s, max_error=err)
