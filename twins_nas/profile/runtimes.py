"""Deployment runtimes that time a network besides eager PyTorch, registered in `BACKENDS`
under the names users choose them by (``runtime`` in a space's ``measure:`` section,
``--runtime`` of `profile` and `retarget`):

* ``compile``: `torch.compile` (inductor, static shapes, one whole graph) of the eval model
  under `torch.inference_mode`, bf16/fp16 under autocast;
* ``onnxruntime``: the model exported to ONNX (see `onnx_export`: TorchScript exporter, opset
  17, the input's shape fixed) and run by an onnxruntime `InferenceSession`, on the CPU
  (CPUExecutionProvider, the spec's threads or torch's, sequential execution) or on a CUDA GPU
  (CUDAExecutionProvider, when this onnxruntime has it); fp32 only. Input and output stay on
  the device (I/O binding), so the timed pass is the graph's run alone.

Both run the plain layers (`cpu_fast_paths.fast_paths(False)`; the fast paths are an
optimisation of eager mode). `prepare` does everything that is not a forward pass at the
measured size before the timed passes: compiling (including the first, compiling calls) or
exporting and loading the graph; then it runs the runtime and eager PyTorch on the example
input and compares them (`output_check.check_outputs`). A runtime that cannot take a model or
disagrees with eager PyTorch is a one-line ConfigError naming it and the reason; a runtime
never falls back to eager. Peak memory (`profile`) stays that of the eager forward.
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn as nn

from ..errors import ConfigError
from ..models.cpu_fast_paths import fast_paths
from .backends import BACKENDS, DEFAULT_BACKEND, MeasureSpec, autocast_context, register_backend, synchronize
from .onnx_export import DEFAULT_OPSET, export_graph, import_onnxruntime, open_inference, providers_for
from .output_check import as_tensors, check_outputs, reason


def check_runtime(name: str, device: torch.device | None = None) -> str:
    """`name` when it is a registered runtime and, given a `device`, can run on it here (e.g.
    onnxruntime installed); a one-line ConfigError about `runtime` otherwise (naming the valid
    ones for an unknown name)."""
    backend = BACKENDS.get(name) if isinstance(name, str) else None
    if backend is None:
        raise ConfigError(f"runtime={name!r}: unknown runtime; valid runtimes: {', '.join(BACKENDS)}",
                          field="runtime")
    check = getattr(backend, "check", None)
    if check is not None and device is not None:
        check(device)
    return name


@contextlib.contextmanager
def _eval_on(model: nn.Module, example: torch.Tensor, spec: MeasureSpec) -> Iterator[nn.Module]:
    """`model` in eval mode on the example's device and the spec's memory format; its training
    mode restored afterwards."""
    was_training = model.training
    model.to(example.device, memory_format=spec.memory_format(example.device)).eval()  # type: ignore[call-overload]  # torch's stubs omit memory_format
    try:
        yield model
    finally:
        model.train(was_training)


class CompileBackend:
    """`torch.compile` with inductor: `prepare` compiles and runs the first (compiling) call
    before the timed passes, which may not recompile (a recompile raises)."""

    name = "compile"

    def check(self, device: torch.device) -> None:
        """Nothing to check before compiling: inductor's own errors (no C++ compiler, say)
        surface from `prepare` as one line."""

    @contextlib.contextmanager
    def prepare(self, model: nn.Module, example: torch.Tensor,
                spec: MeasureSpec) -> Iterator[Callable[[torch.Tensor], object]]:
        import torch._dynamo  # heavy import: see README
        who = f"runtime={self.name!r}"
        with _eval_on(model, example, spec), torch.inference_mode(), autocast_context(example.device, spec.dtype):
            ref = model(example)
            with fast_paths(False):
                torch._dynamo.reset()  # a fresh cache: earlier sizes and models cannot use up its recompile limit
                try:
                    compiled = torch.compile(model, backend="inductor", dynamic=False, fullgraph=True)
                    out = compiled(example)
                except Exception as e:
                    raise ConfigError(f"{who}: torch.compile (inductor) cannot compile this model here ({reason(e)})",
                                      field="runtime") from None
                check_outputs(who, out, ref, spec.dtype)
                with torch._dynamo.config.patch(error_on_recompile=True):
                    yield compiled

    def synchronize(self, device: torch.device) -> None:
        synchronize(device)


class OnnxRuntimeBackend:
    """The model exported to ONNX and run by onnxruntime (see the module doc)."""

    name = "onnxruntime"

    def check(self, device: torch.device) -> None:
        """A one-line ConfigError when onnxruntime is not installed or lacks the device's provider."""
        providers_for(import_onnxruntime(), device)

    @contextlib.contextmanager
    def prepare(self, model: nn.Module, example: torch.Tensor,
                spec: MeasureSpec) -> Iterator[Callable[[torch.Tensor], object]]:
        who = f"runtime={self.name!r}"
        ort = import_onnxruntime(who)
        if spec.dtype != "fp32":
            raise ConfigError(f"{who}: dtype={spec.dtype!r}: the exported graph runs in fp32 only; use dtype fp32",
                              field="runtime")
        providers = providers_for(ort, example.device, who)
        with _eval_on(model, example, spec):
            with torch.inference_mode():
                ref = model(example)
            buffer = io.BytesIO()
            export_graph(model, example, buffer, DEFAULT_OPSET, dynamic_batch=False, who=who)
            threads = spec.threads or torch.get_num_threads()
            inference = open_inference(ort, buffer.getvalue(), providers, threads, who=who)
            run, outputs = _bound(inference, example.device)
            try:
                run(example)
            except Exception as e:
                raise ConfigError(f"{who}: onnxruntime cannot run the exported graph ({reason(e)})",
                                  field="runtime") from None
            check_outputs(who, [torch.from_numpy(a) for a in outputs()], as_tensors(ref))
            yield run

    def synchronize(self, device: torch.device) -> None:
        synchronize(device)  # onnxruntime returns once its own stream is done


def _bound(inference, device: torch.device) -> tuple[Callable[[torch.Tensor], object], Callable[[], list]]:
    """(run, outputs): `run(x)` runs `inference` on the fp32 tensor `x` where it lies (no copies:
    onnxruntime's I/O binding), its outputs kept on the device; `outputs()` copies the last
    outputs to the host as numpy arrays."""
    binding = inference.io_binding()
    name = inference.get_inputs()[0].name
    kind, index = ("cuda", device.index or 0) if device.type == "cuda" else ("cpu", 0)
    for out in inference.get_outputs():
        binding.bind_output(out.name, kind, index)

    def run(x: torch.Tensor) -> object:
        x = x.contiguous()
        binding.bind_input(name, kind, index, np.float32, list(x.shape), x.data_ptr())
        inference.run_with_iobinding(binding)
        return x

    return run, binding.copy_outputs_to_cpu


for _backend in (CompileBackend(), OnnxRuntimeBackend()):
    register_backend(_backend)

RUNTIMES = (DEFAULT_BACKEND, CompileBackend.name, OnnxRuntimeBackend.name)
