"""The weight-sharing supernet of a search space: one network of which every proxy network
the space's search trains is a subnet (weight entanglement, as AutoFormer's).

A subnet is described by its proxy `ArchConfig` (`choices.subnet_of(space, cfg)`) and runs
the maths of `twins.py` on slices of the supernet's weights:

* width C of a stage: the first C channels of every weight (rows and columns), of the
  stage's norms, PEG and patch embedding (whose input channels are the previous stage's
  first channels); heads are those C channels split into the subnet's heads;
* MLP hidden h: the first h units of fc1 (rows) and fc2 (columns);
* depth d: the first d blocks of the stage (a PEG after block 0, as in Twins);
* attention: one `qkv` weight per block, rows [q | k | v] each `width` wide. An L block
  uses q, k, v of its tokens (Twins' LSA `qkv`), a G block q of its tokens and k, v of the
  sub-sampled ones (Twins' GSA `q` and `kv`): a block is L in one subnet and G in another
  with the same projections. The LSA window and GSA ratio k are geometry, no weights;
* GSA sub-samplers carry their own weights: one module per (function, k) per block that
  can be global (a k1 x k2 strided conv has k1 x k2 taps), with its LayerNorm;
* patch embedding: one conv per proxy patch size of the stage, one LayerNorm;
* classifier: the first C input columns of the widest stage's classifier.

Module and weight names follow `twins.py` where one module exists in both (`patch_embeds`,
`blocks.i.j.norm1`, `attn.proj`, `mlp.fc1`, `pos_block`, `norm`, `head`), so AdamW's groups
(no decay on `pos_block` and 1-d weights) are the proxy's.
"""
from __future__ import annotations

from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ArchConfig, StageConfig, clamp_window
from ..errors import ConfigError
from ..models.cpu_fast_paths import TokenConv, token_conv, window_attention
from ..models.twins import Twins, _windows, lsa_key_mask
from ..sizes import Size
from .shape import Sampler, SupernetShape, sampler_name

Tensor = torch.Tensor
State = dict[str, Tensor]


def _rows(t: Tensor | None, n: int) -> Tensor | None:
    return None if t is None else t[:n]


def _bias(conv: nn.Conv2d) -> Tensor:
    """A conv's bias (every conv here that is asked has one)."""
    assert conv.bias is not None
    return conv.bias


class SubSampler(nn.Module):
    """One GSA sub-sampler (function, k) at the block's full width, then its LayerNorm.

    forward(x (B, N, C) tokens of an H x W map, size) -> (B, M, C), M = ceil(H/k1)*ceil(W/k2),
    on the first C channels of its weights; the padding rules of `twins.py` (zeros for the
    convs, real tokens only for `avgpool`)."""

    def __init__(self, width: int, function: str, kernel: Size):
        super().__init__()
        self.function, self.kernel = function, kernel
        if function == "conv":
            self.sr = TokenConv(width, width, kernel)
        elif function == "dwconv":
            self.dw = nn.Conv2d(width, width, kernel, stride=kernel, groups=width, bias=False)
            self.pw = nn.Conv2d(width, width, 1)
        self.norm = nn.LayerNorm(width)

    def forward(self, x: Tensor, size: Size) -> Tensor:
        B, N, C = x.shape
        k1, k2 = self.kernel
        if self.function == "conv":
            x = token_conv(x, size, self.sr.weight[:C, :C], self.sr.bias[:C], self.kernel)
        else:
            x = x.transpose(1, 2).reshape(B, C, *size)  # (B, C, H, W)
            if self.function == "dwconv":
                pad_b, pad_r = (-size[0]) % k1, (-size[1]) % k2
                if pad_b or pad_r:  # zeros, as a conv's own padding would add
                    x = F.pad(x, (0, pad_r, 0, pad_b))
                x = F.conv2d(x, self.dw.weight[:C], None, stride=self.kernel, groups=C)
                x = F.conv2d(x, self.pw.weight[:C, :C], _bias(self.pw)[:C])
            else:  # avgpool: a cell cut by the border averages its real tokens only
                x = F.avg_pool2d(x, self.kernel, stride=self.kernel, ceil_mode=True)
            x = x.flatten(2).transpose(1, 2)
        return F.layer_norm(x, (C,), self.norm.weight[:C], self.norm.bias[:C], self.norm.eps)

    def export(self, C: int) -> State:
        """The weights of Twins' `attn.sr` and `attn.norm` at width C (names below `attn.`)."""
        out: State = {"norm.weight": self.norm.weight[:C], "norm.bias": self.norm.bias[:C]}
        if self.function == "conv":
            out.update({"sr.weight": self.sr.weight[:C, :C], "sr.bias": self.sr.bias[:C]})
        elif self.function == "dwconv":
            out.update({"sr.dw.weight": self.dw.weight[:C], "sr.pw.weight": self.pw.weight[:C, :C],
                        "sr.pw.bias": _bias(self.pw)[:C]})
        return out


class SuperAttention(nn.Module):
    """LSA or GSA of one block on shared projections: `qkv` rows [q | k | v], `proj`; the
    block's GSA sub-samplers by name (`shape.sampler_name`)."""

    def __init__(self, width: int, samplers: tuple[Sampler, ...], qkv_bias: bool):
        super().__init__()
        self.width = width
        self.qkv = nn.Linear(width, 3 * width, bias=qkv_bias)
        self.proj = nn.Linear(width, width)
        self.sr = nn.ModuleDict({sampler_name(f, (k1, k2)): SubSampler(width, f, (k1, k2)) for f, k1, k2 in samplers})

    def _qkv(self, C: int) -> tuple[Tensor, Tensor | None]:
        """q, k and v rows of width C stacked: weight (3C, C), bias (3C)."""
        W = self.width
        w = self.qkv.weight.view(3, W, W)[:, :C, :C].reshape(3 * C, C)
        b = None if self.qkv.bias is None else self.qkv.bias.view(3, W)[:, :C].reshape(3 * C)
        return w, b

    def _proj(self, x: Tensor) -> Tensor:
        C = x.shape[-1]
        return F.linear(x, self.proj.weight[:C, :C], self.proj.bias[:C])

    def local(self, x: Tensor, size: Size, heads: int, window: Size) -> Tensor:
        """LSA (`twins.LocallyGroupedAttn`): x (B, N, C) -> (B, N, C)."""
        B, N, C = x.shape
        H, W = size
        h, hd = heads, C // heads
        w, b = self._qkv(C)
        m, n = clamp_window(window, size)
        pad_b, pad_r = (-H) % m, (-W) % n
        Hp, Wp = H + pad_b, W + pad_r
        gh, gw = Hp // m, Wp // n
        if pad_b or pad_r:  # project the real tokens only, then pad (the padded keys are masked)
            qkv = _windows(F.pad(F.linear(x, w, b).view(B, H, W, 3 * C), (0, 0, 0, pad_r, 0, pad_b)), m, n)
        else:
            qkv = F.linear(_windows(x.view(B, H, W, C), m, n), w, b)
        # (B*gh*gw, m*n, 3C) -> q, k, v: (B*gh*gw, h, m*n, hd)
        q, k, v = qkv.view(B * gh * gw, m * n, 3, h, hd).permute(2, 0, 3, 1, 4).unbind(0)
        mask = lsa_key_mask(size, (m, n), x.device)
        if mask is not None:  # (gh*gw, m*n) -> (B*gh*gw, 1, 1, m*n)
            mask = mask.view(1, gh * gw, 1, 1, m * n).expand(B, -1, -1, -1, -1).reshape(B * gh * gw, 1, 1, m * n)
        x = window_attention(q, k, v, mask, hd ** -0.5)  # (B*gh*gw, h, m*n, hd)
        x = x.transpose(1, 2).reshape(B, gh, gw, m, n, C).transpose(2, 3).reshape(B, Hp, Wp, C)
        if pad_b or pad_r:
            x = x[:, :H, :W, :]
        return self._proj(x.reshape(B, N, C))

    def global_(self, x: Tensor, size: Size, heads: int, k: Size, function: str) -> Tensor:
        """GSA (`twins.GlobalSubSampleAttn`): x (B, N, C) -> (B, N, C)."""
        B, N, C = x.shape
        h, hd = heads, C // heads
        w, b = self._qkv(C)
        q = F.linear(x, w[:C], _rows(b, C)).view(B, N, h, hd).transpose(1, 2)  # (B, h, N, hd)
        if k != (1, 1):
            x = self.sr[sampler_name(function, k)](x, size)  # (B, M, C)
        kv = F.linear(x, w[C:], None if b is None else b[C:]).view(B, -1, 2, h, hd).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, kv[0], kv[1])  # (B, h, N, hd)
        return self._proj(x.transpose(1, 2).reshape(B, N, C))

    def export(self, C: int, kind: str, k: Size, function: str) -> State:
        """Twins' attention weights at width C (names below `attn.`)."""
        w, b = self._qkv(C)
        out: State = {"proj.weight": self.proj.weight[:C, :C], "proj.bias": self.proj.bias[:C]}
        if kind == "L":
            out["qkv.weight"] = w
            if b is not None:
                out["qkv.bias"] = b
            return out
        out.update({"q.weight": w[:C], "kv.weight": w[C:]})
        if b is not None:
            out.update({"q.bias": b[:C], "kv.bias": b[C:]})
        if k != (1, 1):
            out.update(cast(SubSampler, self.sr[sampler_name(function, k)]).export(C))
        return out


class SuperMlp(nn.Module):
    """fc1 -> GELU -> fc2 on the first `hidden` units and the first C channels."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor, hidden: int) -> Tensor:
        C = x.shape[-1]
        x = F.gelu(F.linear(x, self.fc1.weight[:hidden, :C], self.fc1.bias[:hidden]))
        return F.linear(x, self.fc2.weight[:C, :hidden], self.fc2.bias[:C])

    def export(self, C: int, hidden: int) -> State:
        return {"fc1.weight": self.fc1.weight[:hidden, :C], "fc1.bias": self.fc1.bias[:hidden],
                "fc2.weight": self.fc2.weight[:C, :hidden], "fc2.bias": self.fc2.bias[:C]}


def _norm(norm: nn.LayerNorm, x: Tensor) -> Tensor:
    C = x.shape[-1]
    return F.layer_norm(x, (C,), norm.weight[:C], norm.bias[:C], norm.eps)


def _norm_state(norm: nn.LayerNorm, C: int, prefix: str) -> State:
    return {prefix + "weight": norm.weight[:C], prefix + "bias": norm.bias[:C]}


class SuperBlock(nn.Module):
    """A Twins block (pre-norm attention and MLP, residuals) whose attention is L or G."""

    def __init__(self, width: int, hidden: int, samplers: tuple[Sampler, ...], qkv_bias: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = SuperAttention(width, samplers, qkv_bias)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = SuperMlp(width, hidden)

    def forward(self, x: Tensor, size: Size, stage: StageConfig, kind: str) -> Tensor:
        y = _norm(self.norm1, x)
        if kind == "L":
            assert stage.window is not None  # validated: a stage with L blocks has a window
            y = self.attn.local(y, size, stage.num_heads, stage.window)
        else:
            y = self.attn.global_(y, size, stage.num_heads, stage.sr_pair, stage.subsample)
        x = x + y
        return x + self.mlp(_norm(self.norm2, x), stage.mlp_hidden)

    def export(self, stage: StageConfig, kind: str) -> State:
        C = stage.embed_dim
        out = {**_norm_state(self.norm1, C, "norm1."), **_norm_state(self.norm2, C, "norm2.")}
        out.update({"attn." + k: v for k, v in self.attn.export(C, kind, stage.sr_pair, stage.subsample).items()})
        out.update({"mlp." + k: v for k, v in self.mlp.export(C, stage.mlp_hidden).items()})
        return out


class SuperPatchEmbed(nn.Module):
    """One strided conv per proxy patch size (`proj[str(p)]`), one LayerNorm."""

    def __init__(self, in_chans: int, width: int, patches: tuple[int, ...]):
        super().__init__()
        self.proj = nn.ModuleDict({str(p): nn.Conv2d(in_chans, width, p, stride=p) for p in patches})
        self.norm = nn.LayerNorm(width)

    def forward(self, x: Tensor, patch: int, C: int) -> tuple[Tensor, Size]:
        """x (B, C_in, H, W) -> tokens (B, H/p * W/p, C) and the map size (floors, as Twins)."""
        H, W = x.shape[-2] // patch, x.shape[-1] // patch
        conv = cast(nn.Conv2d, self.proj[str(patch)])
        x = F.conv2d(x, conv.weight[:C, :x.shape[1]], _bias(conv)[:C], stride=patch).flatten(2).transpose(1, 2)
        return _norm(self.norm, x), (H, W)

    def export(self, patch: int, C_in: int, C: int) -> State:
        conv = cast(nn.Conv2d, self.proj[str(patch)])
        return {"proj.weight": conv.weight[:C, :C_in], "proj.bias": _bias(conv)[:C],
                **_norm_state(self.norm, C, "norm.")}


class SuperPosConv(nn.Module):
    """PEG: depthwise 3x3 conv (first C channels) plus residual."""

    def __init__(self, width: int):
        super().__init__()
        self.proj = nn.Conv2d(width, width, 3, 1, 1, bias=True, groups=width)

    def forward(self, x: Tensor, size: Size) -> Tensor:
        B, N, C = x.shape
        feat = x.transpose(1, 2).view(B, C, *size)
        out = F.conv2d(feat, self.proj.weight[:C], _bias(self.proj)[:C], 1, 1, 1, C) + feat
        return out.flatten(2).transpose(1, 2)

    def export(self, C: int) -> State:
        return {"proj.0.weight": self.proj.weight[:C], "proj.0.bias": _bias(self.proj)[:C]}


class Supernet(nn.Module):
    """The supernet of a `SupernetShape` (`shape.supernet_shape(space)`). forward(x, sub):
    images (B, C_in, R, R) at the proxy resolution and a subnet's proxy config -> logits."""

    def __init__(self, shape: SupernetShape):
        super().__init__()
        self.shape = shape
        self.patch_embeds = nn.ModuleList()
        prev = shape.in_chans
        for s in shape.stages:
            self.patch_embeds.append(SuperPatchEmbed(prev, s.width, s.patches))
            prev = s.width
        self.blocks = nn.ModuleList(
            nn.ModuleList(SuperBlock(s.width, s.hidden, s.samplers[j], shape.qkv_bias) for j in range(s.depth))
            for s in shape.stages)
        self.pos_block = nn.ModuleList(SuperPosConv(s.width) for s in shape.stages) if shape.peg else None
        last = shape.stages[-1].width
        self.norm = nn.LayerNorm(last, eps=1e-6)
        self.head = nn.Linear(last, shape.num_classes)
        self.apply(Twins._init_weights)

    def _embed(self, i: int) -> SuperPatchEmbed:
        return cast(SuperPatchEmbed, self.patch_embeds[i])

    def _block(self, i: int, j: int) -> SuperBlock:
        return cast(SuperBlock, cast(nn.ModuleList, self.blocks[i])[j])

    def _peg(self, i: int) -> SuperPosConv | None:
        return None if self.pos_block is None else cast(SuperPosConv, self.pos_block[i])

    def check(self, sub: ArchConfig) -> None:
        """A one-line `ConfigError` unless `sub` (a proxy config) is a subnet of this supernet."""
        sh = self.shape

        def refuse(what: str) -> None:
            raise ConfigError(f"subnet: {what}; not a subnet of this supernet", field="config")

        if len(sub.stages) != len(sh.stages):
            refuse(f"{len(sub.stages)} stages, the supernet has {len(sh.stages)}")
        if (sub.in_chans, sub.num_classes, sub.qkv_bias, sub.peg) != (sh.in_chans, sh.num_classes, sh.qkv_bias,
                                                                       sh.peg):
            refuse(f"in_chans={sub.in_chans}, num_classes={sub.num_classes}, qkv_bias={sub.qkv_bias}, "
                   f"peg={sub.peg}; the supernet has {sh.in_chans}, {sh.num_classes}, {sh.qkv_bias}, {sh.peg}")
        for i, (s, st) in enumerate(zip(sub.stages, sh.stages)):
            p = f"stages[{i}]"
            if s.patch_size not in st.patches:
                refuse(f"{p}.patch_size={s.patch_size}, the supernet has {list(st.patches)}")
            for name, have, most in (("embed_dim", s.embed_dim, st.width), ("mlp hidden", s.mlp_hidden, st.hidden),
                                     ("depth", s.depth, st.depth)):
                if have > most:
                    refuse(f"{p}.{name}={have} exceeds the supernet's {most}")
            for j, kind in enumerate(s.block_types):
                if kind == "G" and s.sr_pair != (1, 1) and (s.subsample, *s.sr_pair) not in st.samplers[j]:
                    refuse(f"{p} block {j}: no {s.subsample} sub-sampler with k={s.sr_pair[0]}x{s.sr_pair[1]}")

    def forward_features(self, x: Tensor, sub: ArchConfig) -> Tensor:
        """The last stage's tokens (B, N, C) of subnet `sub`, before the final norm."""
        B = x.shape[0]
        size: Size = (x.shape[-2], x.shape[-1])
        for i, s in enumerate(sub.stages):
            if i:
                x = x.transpose(1, 2).view(B, -1, *size)  # tokens -> (B, C, H, W)
            x, size = self._embed(i)(x, s.patch_size, s.embed_dim)
            peg = self._peg(i)
            for j, kind in enumerate(s.block_types):
                x = self._block(i, j)(x, size, s, kind)
                if j == 0 and peg is not None:
                    x = peg(x, size)
        return x

    def forward(self, x: Tensor, sub: ArchConfig) -> Tensor:
        x = _norm(self.norm, self.forward_features(x, sub)).mean(dim=1)
        return F.linear(x, self.head.weight[:, :x.shape[-1]], self.head.bias)

    def subnet_state(self, sub: ArchConfig) -> State:
        """The state dict of `twins.Twins(sub)` made of this supernet's slices (views and
        copies of them; copy before training one apart)."""
        out: State = {}
        prev = sub.in_chans
        for i, s in enumerate(sub.stages):
            out.update({f"patch_embeds.{i}.{k}": v
                        for k, v in self._embed(i).export(s.patch_size, prev, s.embed_dim).items()})
            for j, kind in enumerate(s.block_types):
                out.update({f"blocks.{i}.{j}.{k}": v for k, v in self._block(i, j).export(s, kind).items()})
            peg = self._peg(i)
            if peg is not None:
                out.update({f"pos_block.{i}.{k}": v for k, v in peg.export(s.embed_dim).items()})
            prev = s.embed_dim
        out.update(_norm_state(self.norm, prev, "norm."))
        out.update({"head.weight": self.head.weight[:, :prev], "head.bias": self.head.bias})
        return out
