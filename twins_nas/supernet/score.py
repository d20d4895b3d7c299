"""Scoring configs with the supernet's inherited weights: the accuracy of a config's subnet on
the proxy's validation split, without training it (`SupernetScorer`)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..config import ArchConfig
from ..errors import ConfigError
from ..models.twins import Twins
from ..search.proxy.data import ProxyData, load_proxy_data
from ..search.proxy.train import ProxyDiverged
from ..search.space.space import SearchSpace
from .checkpoint import CHECKPOINT, load_checkpoint
from .choices import subnet_of
from .extract import extract_subnet
from .model import Supernet
from .shape import supernet_shape

SCORE_BATCH = 250  # images per forward: on a CPU, 250 of 32 px run faster than 1000 at once (cache-sized)


@torch.inference_mode()
def accuracy(supernet: Supernet, sub: ArchConfig, x: torch.Tensor, y: torch.Tensor, batch: int = SCORE_BATCH) -> float:
    """Top-1 accuracy of subnet `sub` (a proxy config) on (x, y), in eval mode (the mode is
    restored); non-finite logits raise `ProxyDiverged`."""
    was_training = supernet.training
    supernet.eval()
    correct = 0
    try:
        for i in range(0, len(x), batch):
            logits = supernet(x[i:i + batch], sub)
            if not torch.isfinite(logits).all():
                raise ProxyDiverged("validation logits are NaN/inf: the supernet's weights diverged")
            correct += (logits.argmax(1) == y[i:i + batch]).sum().item()
    finally:
        supernet.train(was_training)
    return correct / max(1, len(x))


def balanced_subset(y: torch.Tensor, samples: int, num_classes: int) -> torch.Tensor:
    """Indices of the first images of every class in `y` (per-class counts differ by at most
    one, the first classes get the remainder), in their order: a fixed class-balanced subset."""
    counts = [samples // num_classes + (c < samples % num_classes) for c in range(num_classes)]
    picked = [torch.nonzero(y == c).flatten()[:counts[c]] for c in range(num_classes)]
    return torch.cat(picked).sort().values


class SupernetScorer:
    """Validation accuracy of any config of a space with the weights its subnet inherits from a
    trained supernet: `SupernetScorer.load(out_dir, space).score(cfg)`. Deterministic (eval
    mode, no randomness; the same thread count gives the same figure); one call per search
    trial."""

    def __init__(self, supernet: Supernet, space: SearchSpace, data: ProxyData, steps: int = 0,
                 total_steps: int = 0, samples: int | None = None):
        self.supernet = supernet.eval()
        self.space = space
        self.data = data
        self.val_x, self.val_y = data.val_x, data.val_y
        if samples is not None:
            if not 1 <= samples <= len(data.val_y):
                raise ConfigError(f"samples={samples}: must be between 1 and the {len(data.val_y)} validation images",
                                  field="samples")
            keep = balanced_subset(data.val_y, samples, data.num_classes)
            self.val_x, self.val_y = data.val_x[keep], data.val_y[keep]
        self.checkpoint: Path | None = None  # the file it was loaded from (`load`)
        self.steps = steps                # optimizer steps the supernet was trained for
        self.total_steps = total_steps    # steps its training plans

    @classmethod
    def load(cls, out_dir: str | Path, space: SearchSpace, samples: int | None = None) -> SupernetScorer:
        """The supernet trained in `out_dir` for `space` (a one-line `ConfigError` when there is
        none, it is unreadable or of another space), with the proxy's validation images (all,
        or a fixed class-balanced subset of `samples` of them: fewer images, faster scores)."""
        ckpt = load_checkpoint(Path(out_dir) / CHECKPOINT, space)
        with torch.random.fork_rng(devices=[]):  # the init is overwritten by the checkpoint
            supernet = Supernet(supernet_shape(space))
        supernet.load_state_dict(ckpt.model)
        scorer = cls(supernet, space, load_proxy_data(space.proxy, seed=ckpt.seed), ckpt.step, ckpt.total_steps,
                     samples)
        scorer.checkpoint = Path(out_dir) / CHECKPOINT
        return scorer

    def identity(self) -> dict:
        """What tells this supernet's scores apart from another's: its checkpoint's sha256 (a
        continued training scores differently), steps, and the validation images scored."""
        sha = hashlib.sha256(self.checkpoint.read_bytes()).hexdigest() if self.checkpoint is not None else None
        return {"checkpoint_sha256": sha, "steps": self.steps, "total_steps": self.total_steps,
                "val_samples": len(self.val_y)}

    @property
    def complete(self) -> bool:
        """Whether the supernet's training ran all its planned steps."""
        return self.steps >= self.total_steps

    def score(self, cfg: ArchConfig) -> float:
        """Validation top-1 in [0, 1] of the full-size `cfg`'s subnet (a config outside the space
        raises a one-line `ConfigError`)."""
        return accuracy(self.supernet, subnet_of(self.space, cfg), self.val_x, self.val_y)

    def subnet(self, cfg: ArchConfig) -> Twins:
        """The full-size `cfg`'s subnet as a standalone proxy `Twins` (e.g. to fine-tune it)."""
        return extract_subnet(self.supernet, cfg, self.space)
