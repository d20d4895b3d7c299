"""Whether a deployment runtime computes what eager PyTorch computes: the tolerance and the
check every non-eager runtime passes before it is timed (and `export-onnx` after it writes).

An output `out` matches the eager reference `ref` when, element by element,

    |out - ref| <= atol + rtol * |ref|,   atol = atol_scale * max|ref|

with rtol = 1e-3 and atol_scale = 1e-4 in fp32, both 2e-2 under bf16/fp16 autocast. The
absolute part is relative to the output's own scale, since a timing model's noise weights give
tiny outputs (logits of ~0.02). Compiled and exported Twins models in fp32 on a CPU stay within
about 1e-6 of max|ref| (odd sizes with padded LSA windows, every sub-sampler, the Semantic FPN
head): at most 2 % of the tolerance, which leaves room for other kernels and devices, while a
wrong graph (a mask dropped, a window misplaced) is off by 1e-2 of max|ref| or more.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import ConfigError

TOLERANCES = {"fp32": (1e-3, 1e-4), "bf16": (2e-2, 2e-2), "fp16": (2e-2, 2e-2)}  # dtype -> (rtol, atol_scale)


def tolerance(dtype: str = "fp32") -> tuple[float, float]:
    """(rtol, atol_scale) of outputs computed in `dtype`."""
    return TOLERANCES.get(dtype, TOLERANCES["fp32"])


def as_tensors(output: object) -> list[torch.Tensor]:
    """A forward's output as a flat list of tensors (a tensor, or a tuple / list / dict of them)."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, Sequence) and not isinstance(output, str):
        return [t for item in output for t in as_tensors(item)]
    return []


def max_error(out: object, ref: object) -> float:
    """The largest |out - ref| over every output tensor (inf when the shapes differ)."""
    outs, refs = as_tensors(out), as_tensors(ref)
    if len(outs) != len(refs) or any(o.shape != r.shape for o, r in zip(outs, refs)):
        return float("inf")
    return max((float((o.detach().float().cpu() - r.detach().float().cpu()).abs().max()) for o, r in zip(outs, refs)
                if r.numel()), default=0.0)


def check_outputs(who: str, out: object, ref: object, dtype: str = "fp32") -> float:
    """The max abs error of `out` against the eager reference `ref`; a one-line ConfigError
    starting with `who` (e.g. "runtime='compile'") that gives the error and the tolerance when
    any element is out of tolerance."""
    rtol, atol_scale = tolerance(dtype)
    outs, refs = as_tensors(out), as_tensors(ref)
    err = max_error(outs, refs)
    scale = max((float(r.detach().float().abs().max()) for r in refs if r.numel()), default=0.0)
    atol = atol_scale * scale
    ok = err != float("inf") and all(
        bool(((o.detach().float().cpu() - r.detach().float().cpu()).abs()
              <= atol + rtol * r.detach().float().cpu().abs()).all()) for o, r in zip(outs, refs))
    if not ok:
        shapes = "" if err != float("inf") else (f" (output shapes {[tuple(o.shape) for o in outs]}, eager "
                                                 f"{[tuple(r.shape) for r in refs]})")
        raise ConfigError(f"{who}: its output differs from eager PyTorch's: max abs error {err:.3g} "
                          f"> tolerance {atol:.3g} + {rtol:g}*|ref| (max|ref| = {scale:.3g}){shapes}",
                          field="runtime")
    return err


def reason(e: BaseException) -> str:
    """An exception as one line: its type and the first line of its message (for a compiler's
    wrapped error, the error inside)."""
    inner = getattr(e, "inner_exception", None)
    if isinstance(inner, BaseException):
        e = inner
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    first = lines[0].split(" [Caused by ")[0].split(" Please feel free to request support")[0]
    return f"{type(e).__name__}: {first if len(first) <= 200 else first[:197] + '...'}"
