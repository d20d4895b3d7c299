"""Hypothesis strategies for random *valid* architecture configs, shared by the test files.

`arch_configs()` draws plain ArchConfig dicts (what a JSON file or the search hands over):
1-4 stages, every sub-sampling function, L/G patterns, non-square windows (often larger
than the map), k as an int or a (k1, k2) pair (often larger than the map), tiny widths.
The product of the patch sizes never exceeds `max_reduction`, so any input of at least
`max_reduction` pixels per side gives every stage a non-empty map.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

from hypothesis import strategies as st

SUBSAMPLES = ("conv", "dwconv", "avgpool")
PATTERNS = ("L", "G", "LG", "GL", "LLG", "LGG")


def patterns() -> st.SearchStrategy[str]:
    """The named patterns plus any L/G string of length 1-4."""
    return st.one_of(st.sampled_from(PATTERNS), st.from_regex(r"[LG]{1,4}", fullmatch=True))


@st.composite
def stage_dicts(draw, index: int = 0, reduction_so_far: int = 1, max_reduction: int = 32,
                max_window: int = 20, max_sr: int = 12) -> dict:
    heads = draw(st.integers(1, 3))
    head_dim = draw(st.integers(4, 16))
    pattern = draw(patterns())
    if index == 0:
        patch = draw(st.integers(3, min(8, max_reduction)))
    else:
        patch = draw(st.sampled_from([p for p in (1, 2, 2, 3) if reduction_so_far * p <= max_reduction]))
    window = (draw(st.integers(1, max_window)), draw(st.integers(1, max_window)))
    if "L" not in pattern and draw(st.booleans()):
        window = None  # optional when the stage has no local block
    sr = draw(st.one_of(st.integers(1, max_sr), st.tuples(st.integers(1, max_sr), st.integers(1, max_sr))))
    return dict(patch_size=patch, embed_dim=heads * head_dim, depth=draw(st.integers(1, 3)), num_heads=heads,
                mlp_ratio=draw(st.sampled_from([0.5, 1.0, 1.5, 2.0, 2.7, 4.0])),
                window=None if window is None else list(window),
                sr_ratio=sr if isinstance(sr, int) else list(sr),
                subsample=draw(st.sampled_from(SUBSAMPLES)), pattern=pattern)


@st.composite
def arch_configs(draw, min_stages: int = 1, max_stages: int = 4, max_reduction: int = 32,
                 drop_path: bool = False, **stage_kw) -> dict:
    """A random valid ArchConfig as a dict (build it with `ArchConfig.from_dict`)."""
    n = draw(st.integers(min_stages, max_stages))
    stages, red = [], 1
    for i in range(n):
        s = draw(stage_dicts(i, red, max_reduction, **stage_kw))
        red *= s["patch_size"]
        stages.append(s)
    return dict(stages=stages, in_chans=draw(st.sampled_from([1, 3, 4])),
                num_classes=draw(st.sampled_from([0, 1, 10])), qkv_bias=draw(st.booleans()),
                peg=draw(st.booleans()),
                drop_path_rate=draw(st.floats(0.05, 0.5)) if drop_path else 0.0)


def reduction(cfg_dict: dict) -> int:
    """Total down-sampling of the config (product of the patch sizes)."""
    return math.prod(s["patch_size"] for s in cfg_dict["stages"])


@st.composite
def timm_expressible(draw, max_stages: int = 3) -> tuple[dict, int]:
    """A config timm's Twins can express (stem patch p, then patch 2; all-G or all-LG; square
    windows >= 2; a single k; conv sub-sampling; qkv bias; PEG) and an input size whose every
    stage map both the window and k divide, so that timm's unmasked, unpadded attention
    computes the same thing as ours. Returns (config dict, resolution)."""
    n = draw(st.integers(1, max_stages))
    svt = draw(st.booleans())
    stem = draw(st.sampled_from([2, 4]))
    stages, res = [], 1
    for i in range(n):
        heads = draw(st.integers(1, 2))
        ws = draw(st.sampled_from([2, 3, 4])) if svt else None
        k = draw(st.sampled_from([1, 2, 4]))
        stages.append(dict(patch_size=stem if i == 0 else 2, embed_dim=heads * draw(st.sampled_from([4, 8])),
                           depth=draw(st.integers(1, 3)), num_heads=heads,
                           mlp_ratio=draw(st.sampled_from([1.0, 2.0, 4.0])),
                           window=[ws, ws] if svt else None, sr_ratio=k, subsample="conv",
                           pattern="LG" if svt else "G"))
        res = math.lcm(res, stem * 2 ** i * math.lcm(ws or 1, k))
    while res < 32:
        res *= 2
    cfg = dict(stages=stages, in_chans=draw(st.sampled_from([1, 3])), num_classes=draw(st.sampled_from([0, 5])),
               drop_path_rate=draw(st.sampled_from([0.0, 0.1])))
    return cfg, res


# ---- helpers shared by the test files ---------------------------------------------------

def randomize_(module, generator, scale: float = 0.05) -> None:
    """Add seeded noise to every parameter in place, so that biases and LayerNorm affine
    terms (initialised to 0 / 1) are not trivially zero: a mixed-up bias or norm then shows
    in the output instead of hiding behind the init."""
    import torch
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * scale)


def shapes(module) -> dict:
    """State-dict key -> shape."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def random_weights_(module, generator) -> None:
    """Fill every parameter with seeded random values in place (cheaper than an init, e.g. for
    a model made on the meta device): weights ~ N(0, 1/fan_in), LayerNorm weights 1 + noise,
    every bias noise. Activations keep their scale, and no term is trivially 0 or 1."""
    import torch
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, p[0].numel() ** -0.5, generator=generator)
            elif name.endswith("weight"):
                p.normal_(1.0, 0.1, generator=generator)
            else:
                p.normal_(0.0, 0.1, generator=generator)


# A tiny search space for end-to-end CLI tests: seconds per trial on a CPU.
TINY_SPACE = """\
name: tiny
resolution: 64
num_classes: 10
stages:
  - {patch_size: 4, depth: [1, 2], embed_dim: [16, 32], head_dim: 16, mlp_ratio: [2, 4], window: [2, 4],
     sr_ratio: [1, 2], pattern: [LG, G]}
  - {patch_size: 2, depth: [1, 2], embed_dim: [32, 48], head_dim: 16, mlp_ratio: 2, window: 2, sr_ratio: 1,
     pattern: [LG, G]}
objectives: {accuracy: maximize, throughput: maximize}
constraints: {params_m: {max: 5}}
measure: {batch_size: 1}
proxy: {resolution: 16, width_mult: 0.5, train_samples: 200, val_samples: 100, epochs: 2, batch_size: 100}
"""


def tiny_space(name: str = "tiny", objectives: str = "{accuracy: maximize, throughput: maximize}",
               constraints: bool = True, measure_batch: int = 1, train_samples: int = 200,
               val_samples: int = 100) -> str:
    """`TINY_SPACE` under another name, with other objectives, no constraint, another timing
    batch or more proxy images."""
    text = (TINY_SPACE.replace("name: tiny", f"name: {name}")
            .replace("objectives: {accuracy: maximize, throughput: maximize}", f"objectives: {objectives}")
            .replace("measure: {batch_size: 1}", f"measure: {{batch_size: {measure_batch}}}")
            .replace("train_samples: 200, val_samples: 100",
                     f"train_samples: {train_samples}, val_samples: {val_samples}"))
    return text if constraints else text.replace("constraints: {params_m: {max: 5}}\n", "")


class Unsupported(logging.Handler):
    """Collects fvcore's "Unsupported operator ..." warnings (attach to fvcore's logger)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        if "nsupported" in record.getMessage():
            self.messages.append(record.getMessage())


def tiny_space_file(tmp_path) -> Path:
    """`TINY_SPACE` written to ``tmp_path / "tiny.yaml"``."""
    p = Path(tmp_path) / "tiny.yaml"
    p.write_text(TINY_SPACE)
    return p


def load_study_file(out, file: str = "study.db", name: str = "tiny"):
    """The study `name` stored in ``out / file`` (a journal file when it ends in .journal, else SQLite)."""
    import optuna  # heavy import: see README
    path = Path(out) / file
    storage = (optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
               if file.endswith(".journal") else f"sqlite:///{path}")
    return optuna.load_study(study_name=name, storage=storage)
