"""The six published Twins models as `ArchConfig`s (exact to timm's `twins_*` models), the
global-attention reference and the keyword arguments that build a config in timm."""
from __future__ import annotations

from .config import ArchConfig, ConfigError
from .published import PRESETS, TIMM_NAMES

__all__ = ["PRESETS", "TIMM_NAMES", "get_preset", "global_reference", "presets_for", "to_timm_kwargs"]


def get_preset(name: str) -> ArchConfig:
    """A published model by name (`twins-svt-s`; `twins_svt_s` and upper case work too)."""
    return ArchConfig.preset(name)


def presets_for(num_classes: int, in_chans: int = 3) -> dict[str, ArchConfig]:
    """The six published models, by name, with another classifier size and input channels
    (as a search space measures them beside its trials)."""
    return {name: get_preset(name).replace(num_classes=num_classes, in_chans=in_chans) for name in PRESETS}


def global_reference() -> ArchConfig:
    """Full global attention reference: PCPVT-S with k = 1 in every stage (no sub-sampling)."""
    d = PRESETS["twins-pcpvt-s"]
    stages = [dict(s, sr_ratio=1) for s in d["stages"]]
    return ArchConfig.from_dict(dict(name="global-attn-s", stages=stages))


def to_timm_kwargs(cfg: ArchConfig) -> dict:
    """Keyword arguments for `timm.models.twins.Twins(**kwargs)` that build the same network
    (same state-dict keys and shapes). Raises ConfigError naming what timm cannot express."""
    def no(msg):
        raise ConfigError(f"timm's Twins cannot express this config: {msg}")

    st = cfg.stages
    if st[0].patch_size < 1 or any(s.patch_size != 2 for s in st[1:]):
        no("stages after the first must have patch_size=2 "
           f"(got {[s.patch_size for s in st]})")
    if not cfg.qkv_bias:
        no("qkv_bias=False (timm always uses a qkv bias)")
    if not cfg.peg:
        no("peg=False (timm always has a PEG per stage)")
    patterns = {s.pattern for s in st}
    if patterns <= {"G"}:
        wss = None
    elif patterns <= {"LG"}:
        wss = []
        for i, s in enumerate(st):
            assert s.window is not None  # validated: a stage with L blocks has a window
            m, n = s.window
            if m != n:
                no(f"stages[{i}].window={s.window} is not square")
            if m == 1:
                no(f"stages[{i}].window=(1, 1) (timm reads ws=1 as global attention)")
            wss.append(m)
    else:
        no(f"patterns {sorted(patterns)}: timm has only all-'G' (PCPVT) or all-'LG' (SVT)")
    for i, s in enumerate(st):
        if not isinstance(s.sr_ratio, int) and s.sr_ratio[0] != s.sr_ratio[1]:
            no(f"stages[{i}].sr_ratio={s.sr_ratio} is not a single k")
        if s.subsample != "conv" and s.sr_pair != (1, 1) and "G" in s.pattern:
            no(f"stages[{i}].subsample={s.subsample!r} (timm has only 'conv')")
    # timm's PatchEmbed asserts that its nominal img_size divides by every patch size (it is not
    # used in forward): the smallest multiple of the total reduction that is >= 224.
    red = st[0].patch_size * 2 ** (len(st) - 1)
    kw = dict(
        img_size=red * -(-224 // red), patch_size=st[0].patch_size, in_chans=cfg.in_chans, num_classes=cfg.num_classes,
        embed_dims=[s.embed_dim for s in st], num_heads=[s.num_heads for s in st],
        mlp_ratios=[s.mlp_ratio for s in st], depths=[s.depth for s in st],
        sr_ratios=[s.sr_pair[0] for s in st], wss=wss, drop_path_rate=cfg.drop_path_rate)
    return kw
