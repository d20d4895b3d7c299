"""Proxy training: how good is an architecture, measured in seconds on a CPU?

`train_proxy(cfg, ...)` takes a *full-size* config, shrinks it with `proxy_arch` and trains
the copy briefly on an in-memory image set (`twins_nas.search.proxy.data`), reporting validation
top-1 after every epoch.

The proxy network (widths scaled, attention geometry kept) is `proxy_arch`'s, in
`twins_nas.search.proxy.network`.

Training: AdamW (no weight decay on norms, biases and 1-d parameters), linear warm-up then
cosine decay per step, label-smoothed cross entropy, batches indexed from in-memory tensors
with a permutation drawn from a generator seeded with `seed` (no per-sample Python). The
weights are initialised under `torch.manual_seed(seed)` (the caller's RNG state is restored),
so the same config, settings and seed give the same accuracy on CPU (same thread count).
`torch.set_num_threads` is left to the caller.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ...config import ArchConfig
from ...models.twins import Twins
from ...sizes import Resolution
from .data import ProxyData
from .network import StageChoices, proxy_arch
from .settings import ProxySettings

EVAL_BATCH = 1000


class ProxyDiverged(RuntimeError):
    """The proxy training loss (or the validation logits) became NaN or infinite."""


@dataclass
class ProxyResult:
    """Outcome of one proxy training run."""

    accuracy: float                       # validation top-1 after the last epoch, in [0, 1]
    epoch_accuracies: list[float]         # validation top-1 after each evaluated epoch
    build_seconds: float                  # building the proxy model
    train_seconds: float                  # optimisation steps
    eval_seconds: float                   # all validation passes
    proxy_params: int                     # parameters of the proxy model
    proxy_config: ArchConfig | None = None
    steps: int = 0
    final_loss: float = math.nan          # training loss of the last step
    seconds: float = field(init=False)    # build + train + eval

    def __post_init__(self) -> None:
        self.seconds = self.build_seconds + self.train_seconds + self.eval_seconds


def lr_at(step: int, total: int, warmup: int, lr: float) -> float:
    """The learning rate of optimizer step `step` (from 0) of `total`: linear warm-up over the
    first `warmup` steps to `lr`, then cosine decay towards 0."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW's parameter groups: `weight_decay` on the weights, none on norms, biases, other
    1-d parameters and the position convs (`pos_block.*`)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name.startswith("pos_block") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.inference_mode()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = EVAL_BATCH) -> float:
    """Top-1 accuracy of `model` on (x, y); raises ProxyDiverged on non-finite logits."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        logits = model(x[i:i + batch])
        if not torch.isfinite(logits).all():
            raise ProxyDiverged("validation logits are NaN/inf: the weights diverged")
        correct += (logits.argmax(1) == y[i:i + batch]).sum().item()
    return correct / max(1, len(x))


def train_proxy(cfg: ArchConfig, proxy: ProxySettings, data: ProxyData, seed: int, device: str = "cpu",
                on_epoch: Callable[[int, float], None] | None = None, resolution: Resolution | None = None,
                choices: Sequence[StageChoices] | None = None, every_epoch: bool = True,
                order_seed: int | None = None) -> ProxyResult:
    """Train the proxy of the full-size `cfg` on `data` and return its validation accuracy.

    `resolution` is the full-size input size and `choices` the space's geometry choices per
    stage (see `proxy_arch`). With `every_epoch` False (and no `on_epoch`) only the last epoch
    is evaluated: the same final accuracy, one validation pass. `on_epoch(epoch, accuracy)` is
    called after every epoch (epoch counts from 1); whatever it raises (e.g.
    `optuna.TrialPruned`) propagates. A NaN/inf loss raises `ProxyDiverged`. `order_seed`
    seeds the order of the training images apart from the weights (default: `seed`): one
    order for several networks gives them common random numbers."""
    t0 = time.perf_counter()
    pcfg = proxy_arch(cfg, proxy, data.num_classes, data.in_chans, resolution, choices)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Twins(pcfg)
    model.to(device)
    opt = torch.optim.AdamW(param_groups(model, proxy.weight_decay), lr=proxy.lr)
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    val_x, val_y = data.val_x.to(device), data.val_y.to(device)
    n, bs = len(train_x), proxy.batch_size
    steps_per_epoch = math.ceil(n / bs)
    total = proxy.epochs * steps_per_epoch
    warmup = round(proxy.warmup_epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed if order_seed is None else order_seed)
    build_s = time.perf_counter() - t0

    train_s = eval_s = 0.0
    accs: list[float] = []
    step, loss_v = 0, math.nan
    for epoch in range(proxy.epochs):
        t1 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        for k in range(steps_per_epoch):
            idx = perm[k * bs:(k + 1) * bs]
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, warmup, proxy.lr)
            loss = F.cross_entropy(model(train_x[idx]), train_y[idx], label_smoothing=proxy.label_smoothing)
            loss_v = loss.item()
            if not math.isfinite(loss_v):
                raise ProxyDiverged(f"training loss is {loss_v} at epoch {epoch + 1}, step {k + 1}/"
                                    f"{steps_per_epoch} (lr={proxy.lr:g}): the proxy diverged")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        t2 = time.perf_counter()
        train_s += t2 - t1
        if not (every_epoch or on_epoch is not None or epoch == proxy.epochs - 1):
            continue
        acc = evaluate(model, val_x, val_y)
        eval_s += time.perf_counter() - t2
        accs.append(acc)
        if on_epoch is not None:
            on_epoch(epoch + 1, acc)
    return ProxyResult(accuracy=accs[-1], epoch_accuracies=accs, build_seconds=build_s, train_seconds=train_s,
                       eval_seconds=eval_s, proxy_params=sum(p.numel() for p in model.parameters()),
                       proxy_config=pcfg, steps=step, final_loss=loss_v)
