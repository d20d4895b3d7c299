"""Multiply-adds counted by tracing the model with fvcore, attention matmuls included.

Convention (fvcore's, also the one of the closed-form `analytic_flops`): one fused multiply-add
counts 1, and only matmul-like ops count: linear, conv (bias ignored), LayerNorm (5 per
element, fvcore's norm handle) and, through the handle registered here, the two matmuls of
`scaled_dot_product_attention` (Q·Kᵀ and A·V; fvcore 0.1.5 counts the op as 0), or the two
explicit matmuls LSA runs instead on CPU for small windows. The attention
mask, the softmax and the scaling are not counted, like every other elementwise op (GELU,
residual adds, padding, average pooling, the final mean).

fvcore traces with torch.jit: shapes, and so the padding the model decides from them, are
recorded for the traced input only. Every call traces anew at its own resolution.

With a head, `count_flops` counts a `TwinsSegmentation` (backbone + Semantic FPN or UperNet) the
same way, with fvcore's own handles for what the heads add (eval BatchNorm 2 per element, nearest
upsample 1 and bilinear upsample 4 per output element, adaptive average pool 1 per input element;
ReLU, dropout and concatenation 0), as `head_cost.py` does.
"""
from __future__ import annotations

import math
import warnings
from typing import cast

import torch
import torch.nn as nn

from ..config import ArchConfig
from ..models.cost_model import FlopReport
from ..models.head_config import head_config
from ..models.head_cost import HeadLike, flop_report
from ..models.segmentation import TwinsSegmentation, UPerHead
from ..models.twins import GlobalSubSampleAttn, LocallyGroupedAttn, Twins, build_model
from ..sizes import Resolution, as_size

SDPA = "aten::scaled_dot_product_attention"

# Ops that are traced but carry no multiply-adds in this convention: elementwise maths
# (residual adds, GELU, the mask fill, index arithmetic, ReLU), padding, average pooling,
# the global mean and dropout. Registered as "ignored" so fvcore does not warn about them.
ZERO_COST_OPS = ("aten::add", "aten::add_", "aten::sub", "aten::mul", "aten::div", "aten::neg", "aten::fill_",
                 "aten::gelu", "aten::pad", "aten::avg_pool2d", "aten::mean", "aten::softmax",
                 "aten::masked_fill", "aten::bitwise_not", "aten::relu", "aten::relu_", "aten::dropout",
                 "aten::feature_dropout")


def sdpa_flop_jit(inputs, outputs) -> int:
    """fvcore handle for `scaled_dot_product_attention(q, k, v, ...)`:
    q (..., Lq, E), k (..., Lk, E), v (..., Lk, Ev) -> Q·Kᵀ: (...)*Lq*Lk*E, A·V: (...)*Lq*Lk*Ev."""
    from fvcore.nn.jit_handles import get_shape  # heavy import: see README
    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = math.prod(q[:-2])
    lq, lk = q[-2], k[-2]
    return batch * lq * lk * q[-1] + batch * lq * lk * v[-1]


def _category(model: nn.Module, module: str, op: str) -> str:
    """The FlopReport category of `op` run directly inside the module named `module`."""
    if op == "layer_norm":
        return "norm"
    parts = module.split(".")
    top = parts[0]
    if top == "patch_embeds":
        return "patch_embed"
    if top == "pos_block":
        return "peg"
    if top == "head":
        return "head"
    if top == "blocks" and len(parts) >= 4:
        if parts[3] == "mlp":
            return "mlp"
        if parts[3] == "attn":
            if len(parts) == 4 and op in ("scaled_dot_product_attention", "matmul"):  # LSA on CPU: explicit
                attn = model.get_submodule(module)
                if isinstance(attn, LocallyGroupedAttn):
                    return "lsa_matmul"
                if isinstance(attn, GlobalSubSampleAttn):
                    return "gsa_matmul"
            elif len(parts) >= 5:
                leaf = parts[4]
                if leaf in ("qkv", "q", "kv", "proj"):
                    return f"attn_{leaf}"
                if leaf == "sr":
                    return "gsa_subsample"
    raise RuntimeError(f"count_flops: no FLOP category for op {op!r} in module {module!r}; "
                       "update twins_nas/profile/flops.py and the cost model together")


def _own_counts(by_module_and_op: dict[str, dict]) -> dict[tuple[str, str], int]:
    """fvcore attributes an op to its module and all its ancestors; keep each op once, at
    the innermost module that ran it: own(m) = counts(m) - sum(counts(direct children))."""
    names = list(by_module_and_op)
    own = {}
    for name in names:
        counts = dict(by_module_and_op[name])
        prefix = name + "." if name else ""
        for child in names:
            if child != name and child.startswith(prefix) and "." not in child[len(prefix):]:
                for op, v in by_module_and_op[child].items():
                    counts[op] = counts.get(op, 0) - v
        for op, v in counts.items():
            if v:
                own[(name, op)] = v
    return own


def _fvcore():
    """fvcore's FlopCountAnalysis, imported on first use (heavy import: see README). Importing
    fvcore scripts a loss function with torch.jit.script, which torch deprecates: that warning
    is not ours."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=FutureWarning)
        from fvcore.nn import FlopCountAnalysis  # heavy import: see README
    return FlopCountAnalysis


def _trace(model: nn.Module, x: torch.Tensor):
    """fvcore's by_module_and_operator() of `model` on `x`, in eval mode, without gradients."""
    FlopCountAnalysis = _fvcore()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            fca = FlopCountAnalysis(model, x).set_op_handle(SDPA, sdpa_flop_jit)
            fca.set_op_handle(**{op: None for op in ZERO_COST_OPS})
            fca.tracer_warnings("none").uncalled_modules_warnings(False)
            return fca.by_module_and_operator()
    finally:
        model.train(was_training)


def _dense_category(model: TwinsSegmentation, module: str, op: str) -> tuple[str, str]:
    """(part, category) of `op` run directly inside `module` of a TwinsSegmentation: part is
    backbone (FlopReport's categories, as `_category` on the backbone), neck or head."""
    parts = module.split(".")
    top = parts[0]
    if top == "backbone" and len(parts) > 1:
        return "backbone", _category(model.backbone, module[len("backbone."):], op)
    if top == "decode_head" and isinstance(model.decode_head, UPerHead) and len(parts) >= 2:
        found = _upernet_category(parts[1], parts[-1], op)
        if found is not None:
            return found
    if top == "neck":
        if len(parts) == 1 and op == "upsample_nearest2d":  # FPN.forward: the top-down pass
            return "neck", "top_down"
        if len(parts) >= 2 and parts[1] == "lateral_convs" and op == "conv":
            return "neck", "lateral"
        if len(parts) >= 2 and parts[1] == "fpn_convs" and op == "conv":
            return "neck", "fpn_conv"
    if top == "decode_head":
        if len(parts) == 1 and op == "upsample_bilinear2d":  # FPNHead.forward: resizes to level 0
            return "head", "upsample"
        if len(parts) >= 2 and parts[1] == "conv_seg" and op == "conv":
            return "head", "cls"
        if len(parts) >= 2 and parts[1] == "scale_heads":
            leaf = parts[-1]
            if leaf == "conv" and op == "conv":
                return "head", "conv"
            if leaf == "bn" and op == "batch_norm":
                return "head", "norm"
            if op == "upsample_bilinear2d":  # the x2 nn.Upsample of a scale head
                return "head", "upsample"
    if module == "" and op == "upsample_bilinear2d":  # TwinsSegmentation.forward: to the input size
        return "head", "resize"
    raise RuntimeError(f"count_flops: no FLOP category for op {op!r} in module {module!r}; "
                       "update twins_nas/profile/flops.py and twins_nas/models/head_cost.py together")


_UPERNET_NECK = {"psp_modules": "ppm_conv", "bottleneck": "bottleneck", "lateral_convs": "lateral",
                 "fpn_convs": "fpn_conv"}  # UPerHead's ConvModules in the neck -> the category of their conv


def _upernet_category(child: str, leaf: str, op: str) -> tuple[str, str] | None:
    """(part, category) of `op` run inside `decode_head.<child>....<leaf>` of an UPerHead
    (see `head_cost.upernet_flops`); None for what `_dense_category` knows already (conv_seg)."""
    if child == "psp_modules" and op == "adaptive_avg_pool2d":
        return "neck", "ppm_pool"
    if child == "psp_modules" and leaf == "psp_modules" and op == "upsample_bilinear2d":  # PPM.forward
        return "neck", "ppm_upsample"
    if child == "top_down" and op == "upsample_bilinear2d":
        return "neck", "top_down"
    if child == "fuse_resize" and op == "upsample_bilinear2d":
        return "head", "upsample"
    part = "neck" if child in _UPERNET_NECK else "head" if child == "fpn_bottleneck" else None
    if part is None:
        return None
    if leaf == "bn" and op == "batch_norm":
        return part, "norm"
    if leaf == "conv" and op == "conv":
        return part, _UPERNET_NECK.get(child, "conv")
    return None


def _twins_part(model: Twins, module: str, op: str) -> tuple[str, str]:
    """(part, category) of `op` run directly inside `module` of a classifier `Twins`: one
    network, so the part is the backbone (`flop_report` merges the classifier's parts)."""
    return "backbone", _category(model, module, op)


_PART_OF = ((Twins, _twins_part), (TwinsSegmentation, _dense_category))  # model type -> its ops' (part, category)


def _part_of(model: nn.Module):
    """The (part, category) function of the ops of `model`; TypeError for another module."""
    for kind, part_of in _PART_OF:
        if isinstance(model, kind):
            return part_of
    raise TypeError(f"count_flops: a config, a Twins or a TwinsSegmentation, got {type(model).__name__}")


def count_flops(cfg_or_model: ArchConfig | nn.Module | dict | str, resolution: Resolution, batch: int = 1, *,
                head: HeadLike = None) -> FlopReport:
    """Multiply-adds of one inference forward pass on CPU, traced by fvcore, split as
    `FlopReport` splits them (`head_cost.flop_report`). Accepts a config (ArchConfig, dict,
    preset name or JSON path), built with `head` (a name, dict, HeadConfig or UperNetConfig; None: the
    classifier the config has), or a built `Twins` / `TwinsSegmentation` (`head` None or its
    own); `resolution` is an int (square) or (H, W)."""
    head = head_config(head)
    model = cfg_or_model if isinstance(cfg_or_model, nn.Module) else build_model(cfg_or_model, head=head)
    part_of, own = _part_of(model), getattr(model, "head_cfg", None)
    if head not in (None, own):
        raise ValueError(f"count_flops: head={head!r} is not the model's ({own!r})")
    h, w = as_size(resolution)
    cfg = cast(ArchConfig, model.cfg)  # Twins and TwinsSegmentation both carry theirs
    cfg.stage_sizes((h, w))  # one-line ConfigError when the input is too small
    by_mod = _trace(model, torch.zeros(batch, cfg.in_chans, h, w))
    parts: dict[str, dict[str, int]] = {}
    for (module, op), v in _own_counts(by_mod).items():
        part, c = part_of(model, module, op)
        cats = parts.setdefault(part, {})
        cats[c] = cats.get(c, 0) + int(v)
    report = flop_report(own, parts)
    if report.total != by_mod[""].total():
        raise RuntimeError(f"count_flops: categories sum to {report.total}, fvcore's total is "
                           f"{by_mod[''].total()}")
    return report


def count_dense_flops(cfg_or_model: ArchConfig | TwinsSegmentation | dict | str, head: HeadLike,
                      size: Resolution, batch: int = 1) -> FlopReport:
    """`count_flops(cfg_or_model, size, batch, head=head)`."""
    return count_flops(cfg_or_model, size, batch, head=head)
