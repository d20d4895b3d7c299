"""Training the supernet of a space with the sandwich rule, continuing where a run stopped.

Every step takes one batch of the proxy's training images and runs, on it, the largest
subnet, the smallest and `random_subnets` uniformly drawn configs of the space, each
forward followed by its backward (gradients add up), then one AdamW step: every subnet
trains the weights it shares (BigNAS / AutoFormer's sandwich rule). With `distill`, the
subnets after the largest learn its predictions (soft targets, no gradient into the largest)
instead of the labels.

The proxy's recipe otherwise: AdamW without decay on norms, biases and position convs,
linear warm-up over `proxy.warmup_epochs` epochs then cosine decay over the planned steps
(`steps`, else `settings.epochs` epochs), label smoothing, the proxy's batch size, learning
rate and images (`load_proxy_data(space.proxy, seed)`), in an order drawn per epoch from a
generator seeded with `seed`; the weights start from `torch.manual_seed(seed)`. The caller's
random states are left as they were; the thread count is the caller's.

A checkpoint (`checkpoint.py`) is written every `checkpoint_every` steps and when the run
stops (planned steps done, `minutes` spent, `stop_after` steps run); running again on the same
folder continues from it, and gives the weights an uninterrupted run gives (same seed and
thread count).
"""
from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..atomic import ensure_dir
from ..config import ArchConfig
from ..errors import ConfigError
from ..search.proxy.data import load_proxy_data
from ..search.proxy.network import proxy_of
from ..search.proxy.train import ProxyDiverged, lr_at, param_groups
from ..search.space.space import SearchSpace
from .checkpoint import CHECKPOINT, CURVE, Checkpoint, load_checkpoint, save_checkpoint, space_digest, write_curve
from .choices import largest_config, smallest_config
from .model import Supernet
from .score import accuracy
from .settings import SupernetSettings
from .shape import supernet_shape

Progress = Callable[[dict, int], None]  # (the step's curve row, planned steps) after every step


@dataclass
class SupernetRun:
    """What a call of `train_supernet` did and where the supernet is."""

    out_dir: Path
    checkpoint: Path
    curve: Path
    step: int               # steps done in all runs
    total_steps: int        # planned steps
    started_at: int         # the step this run continued from (0: a fresh supernet)
    seconds: float          # this run's training seconds
    params: int             # parameters of the supernet
    last: dict | None       # the last curve row
    last_eval: dict | None  # the last row with validation accuracies

    @property
    def complete(self) -> bool:
        return self.step >= self.total_steps


def _soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-sum p_teacher * log p_student, averaged over the batch."""
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def check_run_args(minutes: float | None = None, steps: int | None = None, stop_after: int | None = None) -> None:
    """A one-line `ConfigError` for a run length that cannot be."""
    if minutes is not None and not minutes > 0:
        raise ConfigError(f"minutes={minutes}: must be > 0", field="minutes")
    if steps is not None and steps < 1:
        raise ConfigError(f"steps={steps}: must be at least 1", field="steps")
    if stop_after is not None and stop_after < 1:
        raise ConfigError(f"stop_after={stop_after}: must be at least 1", field="stop_after")


def existing_checkpoint(space: SearchSpace, out_dir: str | Path, seed: int = 0, steps: int | None = None,
                        settings: SupernetSettings | None = None) -> Checkpoint | None:
    """The checkpoint a `train_supernet` call with these arguments continues (None: it starts a
    fresh supernet). A checkpoint of another space, seed, planned length or sandwich, or an
    unreadable one, raises a one-line `ConfigError` naming its file."""
    path = Path(out_dir) / CHECKPOINT
    if not path.exists():
        return None
    ckpt = load_checkpoint(path, space)
    if ckpt.seed != seed:
        raise ConfigError(lambda name: f"{name('seed')}={seed}: the supernet in {path} was started with seed "
                                       f"{ckpt.seed}; continue it with that seed or use another {name('out_dir')}")
    if steps is not None and steps != ckpt.total_steps:
        raise ConfigError(lambda name: f"{name('steps')}={steps}: the supernet in {path} is planned for "
                                       f"{ckpt.total_steps} steps (its schedule); continue it with that or use "
                                       f"another {name('out_dir')}")
    now = (settings or SupernetSettings()).model_dump(mode="json")
    changed = [k for k, old in ckpt.settings.items() if now.get(k) != old and k not in ("checkpoint_every",
                                                                                          "eval_every")]
    if changed:
        key = changed[0]
        given, trained = json.dumps(now.get(key)), json.dumps(ckpt.settings[key])
        raise ConfigError(lambda name: f"supernet.{key}={given}: the supernet in {path} is trained with {trained}; "
                                       f"keep that or use another {name('out_dir')}")
    return ckpt


def train_supernet(space: SearchSpace, out_dir: str | Path, minutes: float | None = None, steps: int | None = None,
                   seed: int = 0, settings: SupernetSettings | None = None, progress: Progress | None = None,
                   stop_after: int | None = None) -> SupernetRun:
    """Train (or continue) the supernet of `space` in `out_dir` (see the module docstring).

    `steps`: planned steps in all (default `settings.epochs` epochs; fixed by the first run);
    `minutes`: stop this run after about that long; `stop_after`: stop this run after that
    many steps. `progress(row, total)` is called after every step with its curve row."""
    settings = settings or SupernetSettings()
    check_run_args(minutes, steps, stop_after)
    out = Path(out_dir)
    ckpt_path, curve_path = out / CHECKPOINT, out / CURVE
    ckpt = existing_checkpoint(space, out, seed, steps, settings)
    proxy = space.proxy
    data = load_proxy_data(proxy, seed=seed)
    n, bs = len(data.train_x), proxy.batch_size
    steps_per_epoch = math.ceil(n / bs)
    warmup = round(proxy.warmup_epochs * steps_per_epoch)
    largest, smallest = proxy_of(largest_config(space), space), proxy_of(smallest_config(space), space)
    ensure_dir(out)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Supernet(supernet_shape(space))
        opt = torch.optim.AdamW(param_groups(model, proxy.weight_decay), lr=proxy.lr)
        draws, order = random.Random(seed), torch.Generator().manual_seed(seed)
        perm: torch.Tensor | None = None
        curve: list[dict] = []
        if ckpt is None:
            step, total = 0, steps if steps is not None else settings.epochs * steps_per_epoch
        else:
            model.load_state_dict(ckpt.model)
            opt.load_state_dict(ckpt.optimizer)
            torch.set_rng_state(ckpt.rng["torch"])
            draws.setstate(ckpt.rng["python"])
            order.set_state(ckpt.rng["data"])
            step, total, perm, curve = ckpt.step, ckpt.total_steps, ckpt.perm, list(ckpt.curve)
        started_at, seconds = step, 0.0
        trained = curve[-1]["seconds"] if curve else 0.0

        def checkpoint() -> None:
            save_checkpoint(ckpt_path, Checkpoint(
                space_digest=space_digest(space), space_name=space.name, proxy=proxy.model_dump(mode="json"),
                settings=settings.model_dump(mode="json"), seed=seed, step=step, total_steps=total,
                model=model.state_dict(), optimizer=opt.state_dict(),
                rng={"torch": torch.get_rng_state(), "python": draws.getstate(), "data": order.get_state()},
                perm=perm, curve=curve, threads=torch.get_num_threads()))
            write_curve(curve_path, curve)

        model.train()
        t_start = time.perf_counter()
        while step < total:
            t0 = time.perf_counter()
            pos = step % steps_per_epoch
            if pos == 0 or perm is None:
                perm = torch.randperm(n, generator=order)
            idx = perm[pos * bs:(pos + 1) * bs]
            xb, yb = data.train_x[idx], data.train_y[idx]
            lr = lr_at(step, total, warmup, proxy.lr)
            for g in opt.param_groups:
                g["lr"] = lr
            subnets: list[ArchConfig] = [largest, smallest] + [
                proxy_of(space.random_config(draws), space) for _ in range(settings.random_subnets)]
            opt.zero_grad(set_to_none=True)
            losses, teacher = [], None
            for k, sub in enumerate(subnets):
                logits = model(xb, sub)
                if teacher is not None:
                    loss = _soft_cross_entropy(logits, teacher)
                else:
                    loss = F.cross_entropy(logits, yb, label_smoothing=proxy.label_smoothing)
                if settings.distill and k == 0:
                    teacher = logits.detach().softmax(dim=-1)
                loss.backward()
                losses.append(loss.item())
                if not math.isfinite(losses[-1]):
                    raise ProxyDiverged(f"supernet training loss is {losses[-1]} at step {step + 1} (lr={lr:g}): "
                                        "the supernet diverged")
            opt.step()
            step += 1
            seconds += time.perf_counter() - t0
            row: dict = {"step": step, "lr": lr, "loss": sum(losses) / len(losses), "loss_largest": losses[0],
                         "loss_smallest": losses[1], "acc_largest": None, "acc_smallest": None,
                         "seconds": round(trained + seconds, 3)}
            if step % settings.eval_every == 0 or step == total:
                row["acc_largest"] = accuracy(model, largest, data.val_x, data.val_y)
                row["acc_smallest"] = accuracy(model, smallest, data.val_x, data.val_y)
            curve.append(row)
            if progress is not None:
                progress(row, total)
            stop = (step >= total or (stop_after is not None and step - started_at >= stop_after)
                    or (minutes is not None and time.perf_counter() - t_start >= 60 * minutes))
            if stop or step % settings.checkpoint_every == 0:
                checkpoint()
            if stop:
                break
        if not ckpt_path.exists():  # a run with nothing left to do still leaves its files
            checkpoint()
    evals = [r for r in curve if r.get("acc_largest") is not None]
    return SupernetRun(out_dir=out, checkpoint=ckpt_path, curve=curve_path, step=step, total_steps=total,
                       started_at=started_at, seconds=seconds, params=sum(p.numel() for p in model.parameters()),
                       last=curve[-1] if curve else None, last_eval=evals[-1] if evals else None)

