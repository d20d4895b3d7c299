"""Counting conventions of the Twins paper's tables: twins-nas's count of a model, corrected
piece by piece into what the paper's counter reported for the official code's model.

Three named conventions (`CONVENTIONS`), each the one that reproduces one of the paper's tables:

* `twins-nas`: twins-nas's own count, no correction (fvcore's convention, attention matmuls
  included; `analytic_flops` / `analytic_params`). Reproduces Table 1 (ImageNet, 224 px): the
  paper counts timm's parameters and fvcore multiply-adds with the attention matmuls.
* `mmcv`: mmcv's `get_model_complexity_info` on the official mmseg model (the paper's Semantic
  FPN column, Table 2). mmcv counts forward hooks on module types only: the Q·Kᵀ and A·V
  matmuls (tensor ops, no module) count 0; LayerNorm and BatchNorm count 2 per element (fvcore:
  5 and 2), but the configs' SyncBN is not a hooked type (0); a conv adds its bias (1 per output
  element; fvcore ignores biases; a Linear's bias counts 0 in both); ReLU counts 1 per element;
  GELU, softmax, `F.interpolate` and mmseg's `Upsample` (not `nn.Upsample`) count 0.
* `fvcore-official`: fvcore on the official mmseg model (the paper's UperNet column, the
  figures of the official repository's "Fix FLOPs use fvcore" commit): twins-nas's count
  with the official code's differences.

The official segmentation code differs from twins-nas's model (timm's) in two ways both dense
conventions apply: its LSA projects q/k/v on the zero-padded map (twins-nas projects the real
tokens, then pads), and its SVT backbones (ALTGVT, `extra_norm=True`) put a LayerNorm on every
stage's output. Its parameter count (mmseg's: every parameter of the segmentor) also holds the
unused ImageNet classifier and final norm of the backbone (`num_classes=1000`) and, for
UperNet, the auxiliary FCNHead that mmseg trains with and does not run at inference.

GFLOPs in the paper are multiply-adds (1 per fused multiply-add), as twins-nas counts: 2 x MACs
would double every row.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..config import ArchConfig
from ..errors import ConfigError
from ..models.cost_model import FlopReport, classifier_params
from ..models.head_config import HeadConfig, UperNetConfig, head_config
from ..models.head_cost import HeadLike, analytic_flops, analytic_params, upernet_params
from ..sizes import Resolution, Size, as_size

CONVENTIONS = ("twins-nas", "mmcv", "fvcore-official")
IMAGENET_CLASSES = 1000  # the official backbones keep their ImageNet classifier in the dense model
FVCORE_NORM = 5  # fvcore: an affine LayerNorm, per element
MMCV_NORM = 2  # mmcv: an affine norm layer, per element


@dataclass(frozen=True)
class PaperCount:
    """A model's parameters and multiply-adds under `convention`: twins-nas's count (the
    "twins-nas" piece) plus each named correction (a signed count), so `params` and `macs` are
    the sums of their pieces."""

    convention: str
    params_pieces: dict[str, int] = field(default_factory=dict)
    macs_pieces: dict[str, int] = field(default_factory=dict)

    @property
    def params(self) -> int:
        return sum(self.params_pieces.values())

    @property
    def macs(self) -> int:
        return sum(self.macs_pieces.values())

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


def check_convention(convention: str) -> str:
    """`convention` when it is one of `CONVENTIONS`; else a one-line ConfigError naming them."""
    if convention not in CONVENTIONS:
        raise ConfigError(f"convention={convention!r}: unknown counting convention; choose one of: "
                          f"{', '.join(CONVENTIONS)}")
    return convention


def has_stage_norms(cfg: ArchConfig) -> bool:
    """Whether the official segmentation code builds `cfg` with a LayerNorm after every stage:
    its SVT backbones (ALTGVT, any stage with LSA blocks) do, its PCPVT backbones do not."""
    return any("L" in s.block_types for s in cfg.stages)


def padded_lsa_qkv_macs(cfg: ArchConfig, size: Resolution, batch: int = 1) -> int:
    """MACs the official LSA adds by projecting q/k/v on the zero-padded map: per LSA block,
    (Hp*Wp - H*W) padded tokens x C x 3C, Hp x Wp the map padded to whole windows."""
    total = 0
    for stage, (h, w) in zip(cfg.stages, cfg.stage_sizes(as_size(size))):
        n_lsa = stage.block_types.count("L")
        if n_lsa:
            m, n = stage.lsa_window((h, w))
            padded = math.ceil(h / m) * m * math.ceil(w / n) * n
            total += n_lsa * batch * (padded - h * w) * 3 * stage.embed_dim ** 2
    return total


def stage_norm_elements(cfg: ArchConfig, size: Resolution, batch: int = 1) -> int:
    """Elements the official SVT's per-stage LayerNorms normalise: sum of B*H_i*W_i*C_i (0 when
    the official code has none for `cfg`)."""
    if not has_stage_norms(cfg):
        return 0
    return sum(batch * h * w * s.embed_dim for s, (h, w) in zip(cfg.stages, cfg.stage_sizes(as_size(size))))


def conv_bias_elements(cfg: ArchConfig, size: Resolution, batch: int = 1) -> int:
    """Output elements of the backbone's convs that have a bias (mmcv adds 1 per element): the
    patch embeddings and PEGs (B*H_i*W_i*C_i each) and the GSA sub-sampling conv (`conv`) or its
    pointwise conv (`dwconv`) (B*M*C per GSA block, M = ceil(H/k1)*ceil(W/k2))."""
    total = 0
    for s, (h, w) in zip(cfg.stages, cfg.stage_sizes(as_size(size))):
        tokens = batch * h * w * s.embed_dim
        total += tokens * (2 if cfg.peg else 1)
        k1, k2 = s.sr_pair
        if (k1, k2) != (1, 1) and s.subsample in ("conv", "dwconv"):
            total += s.block_types.count("G") * batch * math.ceil(h / k1) * math.ceil(w / k2) * s.embed_dim
    return total


def fpn_mmcv_pieces(hc: HeadConfig, report: FlopReport, sizes: list[Size], batch: int = 1) -> dict[str, int]:
    """mmcv's corrections of the Semantic FPN `hc` in `report` (stage maps `sizes`): conv biases
    of the FPN convs (a lateral 1x1 and a 3x3 per level) and of `conv_seg`, ReLU 1 per element
    (as many as the BNs normalise: fvcore's BN count / 2), the SyncBN count removed, and the
    interpolations (top-down, scale-head upsamples, resizes) removed."""
    n = [batch * h * w for h, w in sizes]
    bn = report.head["norm"]
    interp = report.neck["top_down"] + report.head["upsample"] + report.head["resize"]
    return {"FPN conv biases": sum(2 * ni * hc.neck_channels for ni in n) + n[0] * hc.num_classes,
            "ReLU 1 per element": bn // 2, "SyncBN not hooked": -bn, "interpolations not hooked": -interp}


def paper_count(cfg: ArchConfig, size: Resolution, head: HeadLike = None, convention: str = "twins-nas",
                batch: int = 1) -> PaperCount:
    """Parameters and multiply-adds of `build_model(cfg, head=head)` on a `size` input, counted
    as `convention` counts the official code's model (see the module's docstring); every
    correction is a named piece of the result. `head`: None (the classifier), a head name or
    config. ConfigError for an unknown convention, or for `mmcv` with a head it does not model
    (Semantic FPN and the classifier only)."""
    check_convention(convention)
    hc = head_config(head)
    report = analytic_flops(cfg, size, batch, head=hc)
    params = {"twins-nas": analytic_params(cfg, head=hc)}
    macs = {"twins-nas": report.total}
    if convention == "twins-nas":
        return PaperCount(convention, params, macs)
    if hc is not None:  # the official backbone keeps its classifier; SVT's stage norms
        params["unused ImageNet classifier"] = classifier_params(cfg.replace(num_classes=IMAGENET_CLASSES))
        if has_stage_norms(cfg):
            params["stage norms"] = 2 * sum(cfg.embed_dims)
        if isinstance(hc, UperNetConfig) and not hc.aux:  # mmseg keeps its auxiliary FCNHead
            params["auxiliary FCN head"] = upernet_params(hc.model_copy(update={"aux": True}), cfg)["aux"]
        macs["LSA q/k/v on the padded map"] = padded_lsa_qkv_macs(cfg, size, batch)
    norm_per_element = FVCORE_NORM if convention == "fvcore-official" else MMCV_NORM
    if hc is not None:
        macs["stage norms"] = norm_per_element * stage_norm_elements(cfg, size, batch)
    if convention == "mmcv":
        if hc is not None and hc.type != "semantic-fpn":
            raise ConfigError(f"convention='mmcv': head {hc.type!r} is not modelled; choose one of: "
                              "semantic-fpn, none (the classifier)")
        backbone = report.by_category
        macs["attention matmuls"] = -report.attention
        macs["LayerNorm 2 per element"] = -backbone["norm"] * (FVCORE_NORM - MMCV_NORM) // FVCORE_NORM
        macs["conv biases"] = conv_bias_elements(cfg, size, batch)
        if hc is not None:
            assert isinstance(hc, HeadConfig)  # checked above: the Semantic FPN
            macs.update(fpn_mmcv_pieces(hc, report, cfg.stage_sizes(as_size(size)), batch))
    return PaperCount(convention, params, macs)
