"""Training-free ("zero-cost") scores of an architecture: one look at the *full-size* network
at the space's resolution, with the weights it is initialised with, no training.

`zero_cost_scores(cfg, names, images, seed)` builds the network of `cfg` once
(`build_model(cfg, seed=seed)`: the same seed for every config, so every config is scored with
the same random draw of its weights) and returns the scores named in `names`:

* ``naswot``: NASWOT (Mellor, Turner, Storkey, Crowley, "Neural Architecture Search without
  Training", ICML 2021), adapted to GELU, which has no zero region: a unit of an MLP's hidden
  layer is *on* for an image when its pre-activation (fc1's output) is > 0, the ReLU pattern
  that GELU smooths (as activation-pattern scores after NASWOT, e.g. SWAP, Peng et al.,
  ICLR 2024, count ReLU patterns). An image's binary code is the on/off state of every
  hidden unit at every token of every MLP of the network, concatenated (N_A units: all
  tokens, no sub-sampling; the code of an image is what NASWOT's is for a CNN, where every
  spatial position of a ReLU map is a unit). K[i, j] = N_A - Hamming(c_i, c_j) over the
  images of one minibatch, score = log|det K| (`torch.linalg.slogdet`, float64). Higher: the
  network tells the images apart by more different activation patterns at initialisation.
  K = N_A - a_i - a_j + 2 c_i.c_j (a = ones per code) is accumulated block by block from
  float32 Gram matrices of at most 2**24 columns, in which every partial sum is an integer
  < 2**24, so K is exact. Note log det K = B log N_A + log det(K / N_A) for B images: the
  score grows with the number of units, as NASWOT's does.
* ``synflow``: SynFlow (Tanaka, Kunin, Yamins, Ganguli, "Pruning neural networks without any
  data by iteratively conserving synaptic flow", NeurIPS 2020), the saliency that TF-TAS
  (Zhou et al., "Training-free Transformer Architecture Search", CVPR 2022) builds its MLP
  term on. Every parameter is replaced by its absolute value, the network runs on one
  all-ones image, R = the sum of its logits, and score = log(sum over every parameter of
  |theta * dR/dtheta|). Data-free: `images` is not used. Choice: LayerNorm is *kept*, as the
  zero-cost proxy library (Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR
  2021) scores transformers (it removes BatchNorm only). Linearised to its affine part
  (x |gamma| + |beta|), LayerNorm would make the network positive end to end, but then every
  block multiplies the signal by its weights' L1 row sums: Twins-SVT-S (18 blocks) reaches
  1e72 at its logits and the square of that in its attention logits, far past float32's
  range, and float64 convolutions have no fast CPU kernel (the depthwise PEG runs channel by
  channel). With LayerNorm kept, every block's input is normalised, so the network runs in
  float32 without overflow; the per-parameter products are summed in float64 and the log of
  the sum reported.

Both scores: higher is better (a space names them with `maximize`). Fast paths: ``naswot``
reads fc1's outputs through forward hooks, so it runs with `kernels.fast_paths(False)` (the
inference fast path of the MLP calls fc1 on chunks of rows that mix images); ``synflow``
keeps them on.

`scoring_batch(data, n, resolution, in_chans)` is the minibatch: the first `n` images of the
proxy training set taken class by class (class 0, 1, ..., then the second image of each
class, ...), resized to the space's resolution (bilinear, antialiased) and channel count (a
one-channel set repeated over `in_chans`): the same images for every config of a study.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...config import ArchConfig
from ...models.cpu_fast_paths import fast_paths
from ...models.twins import Mlp, build_model
from ...sizes import as_size
from ..proxy.data import ProxyData

SCORES = ("naswot", "synflow")
DATA_SCORES = ("naswot",)  # scores that read the minibatch (synflow runs on an all-ones image)
NASWOT_BATCH = 16  # images in the NASWOT kernel (K is NASWOT_BATCH x NASWOT_BATCH)
EXACT_COLUMNS = 1 << 24  # a float32 Gram matrix of 0/1 codes over at most this many columns is exact


# ---- the minibatch ------------------------------------------------------------------------------
def scoring_batch(data: ProxyData, n: int, resolution: int | tuple[int, int], in_chans: int) -> torch.Tensor:
    """(n, in_chans, H, W) float32 for `resolution` n (n x n) or (H, W): the first `n` proxy
    training images taken class by class (see the module docstring), resized and with the
    channel count of the space."""
    size = as_size(resolution)
    x, y = data.train_x, data.train_y
    if n > len(x):
        raise ValueError(f"the scoring batch needs {n} images; the proxy training set has {len(x)}")
    # rank of each image within its class (0 for the first image of a class, 1 for the second, ...)
    onehot = F.one_hot(y, data.num_classes)
    rank = (onehot.cumsum(0) * onehot).sum(1) - 1
    order = torch.argsort(rank * data.num_classes + y, stable=True)[:n]
    batch = x[order]
    if batch.shape[1] != in_chans:
        if batch.shape[1] != 1:
            batch = batch.mean(dim=1, keepdim=True)
        batch = batch.expand(-1, in_chans, -1, -1)
    if tuple(batch.shape[-2:]) != size:
        batch = F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)
    return batch.contiguous()


# ---- NASWOT ---------------------------------------------------------------------------------------
class _CodeKernel:
    """Accumulates c_i.c_j, a_i = |c_i| and N_A over the binary codes of a batch, block by block."""

    def __init__(self, batch: int, device: torch.device):
        self.gram = torch.zeros(batch, batch, dtype=torch.float64, device=device)
        self.ones = torch.zeros(batch, dtype=torch.float64, device=device)
        self.units = 0

    def add(self, pre_activation: torch.Tensor) -> None:
        codes = (pre_activation > 0).reshape(pre_activation.shape[0], -1)  # (B, units of this block)
        for i in range(0, codes.shape[1], EXACT_COLUMNS):
            c = codes[:, i:i + EXACT_COLUMNS].float()
            self.gram += (c @ c.t()).double()
            self.ones += c.sum(1).double()
        self.units += codes.shape[1]

    def kernel(self) -> torch.Tensor:
        """K = N_A - Hamming distance = N_A - a_i - a_j + 2 c_i.c_j."""
        return self.units - self.ones[:, None] - self.ones[None, :] + 2 * self.gram


def naswot_kernel(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """NASWOT's K (float64, B x B) of `model` on `images`: the codes are the signs of the
    pre-activations of every `Mlp`'s hidden layer (its fc1's output), over every token."""
    mlps = [m for m in model.modules() if isinstance(m, Mlp)]
    if not mlps:
        raise ValueError("the model has no MLP (no Mlp module): no activation pattern to score")
    acc = _CodeKernel(images.shape[0], images.device)
    handles = [m.fc1.register_forward_hook(lambda mod, inp, out: acc.add(out)) for m in mlps]
    try:
        with fast_paths(False), torch.inference_mode():
            model.eval()
            model(images)
    finally:
        for h in handles:
            h.remove()
    return acc.kernel()


def naswot_score(model: nn.Module, images: torch.Tensor) -> float:
    """log|det K| of NASWOT's kernel (see the module docstring); -inf when K is singular."""
    return float(torch.linalg.slogdet(naswot_kernel(model, images)).logabsdet)


# ---- SynFlow -------------------------------------------------------------------------------------
def synflow_score(model: nn.Module, resolution: int | tuple[int, int], in_chans: int) -> float:
    """log of SynFlow's saliency sum(|theta * dR/dtheta|) (see the module docstring).

    Changes `model` for good (every parameter replaced by its absolute value); build a fresh
    one for anything else."""
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.no_grad():
        for p in params:
            p.abs_()
            p.grad = None
    like = params[0] if params else torch.empty(0)
    with torch.enable_grad():
        size = as_size(resolution)
        model(like.new_ones(1, in_chans, *size)).sum().backward()
    with torch.no_grad():
        total = sum(float(torch.sum((p * p.grad).abs(), dtype=torch.float64)) for p in params if p.grad is not None)
    if math.isnan(total):
        raise FloatingPointError("synflow: the gradients are NaN")
    return math.log(total) if total > 0 else -math.inf


# ---- all of them -------------------------------------------------------------------------------------
def zero_cost_scores(cfg: ArchConfig, names: Iterable[str], images: torch.Tensor | None,
                     resolution: int | tuple[int, int], seed: int = 0, device: str = "cpu") -> dict[str, float]:
    """The scores in `names` (any of `SCORES`) of the full-size network of `cfg`, built once
    with `seed`, at `resolution`, on `device` (`images`: the minibatch of `scoring_batch`,
    needed by the scores in `DATA_SCORES`). The network is built in this call and dropped
    after it."""
    names = set(names)
    wanted: Sequence[str] = [n for n in SCORES if n in names]
    unknown = names - set(SCORES)
    if unknown:
        raise ValueError(f"unknown zero-cost score(s) {sorted(unknown)}; valid: {', '.join(SCORES)}")
    if set(wanted) & set(DATA_SCORES) and images is None:
        raise ValueError(f"{', '.join(sorted(set(wanted) & set(DATA_SCORES)))} needs a minibatch of images")
    model = build_model(cfg, seed=seed).to(device)
    out: dict[str, float] = {}
    if "naswot" in wanted:
        assert images is not None  # checked above: naswot reads images
        out["naswot"] = naswot_score(model, images.to(device))
    if "synflow" in wanted:  # last: it changes the model
        out["synflow"] = synflow_score(model, resolution, cfg.in_chans)
    return out
