"""The six published Twins models as `ArchConfig`s (exact to timm's `twins_*` models)."""
from __future__ import annotations

from .config import ArchConfig, ConfigError


def _twins(name, dims, heads, mlp, depths, window=None, sr=(8, 4, 2, 1)) -> dict:
    stages = []
    for i in range(4):
        stages.append(dict(
            patch_size=4 if i == 0 else 2, embed_dim=dims[i], depth=depths[i], num_heads=heads[i],
            mlp_ratio=mlp[i], window=None if window is None else (window, window), sr_ratio=sr[i],
            subsample="conv", pattern="G" if window is None else "LG"))
    return dict(name=name, stages=stages)


_PCPVT = dict(dims=(64, 128, 320, 512), heads=(1, 2, 5, 8), mlp=(8, 8, 4, 4))
PRESETS: dict[str, dict] = {
    "twins-pcpvt-s": _twins("twins-pcpvt-s", depths=(3, 4, 6, 3), **_PCPVT),
    "twins-pcpvt-b": _twins("twins-pcpvt-b", depths=(3, 4, 18, 3), **_PCPVT),
    "twins-pcpvt-l": _twins("twins-pcpvt-l", depths=(3, 8, 27, 3), **_PCPVT),
    "twins-svt-s": _twins("twins-svt-s", (64, 128, 256, 512), (2, 4, 8, 16), (4, 4, 4, 4), (2, 2, 10, 4), window=7),
    "twins-svt-b": _twins("twins-svt-b", (96, 192, 384, 768), (3, 6, 12, 24), (4, 4, 4, 4), (2, 2, 18, 2), window=7),
    "twins-svt-l": _twins("twins-svt-l", (128, 256, 512, 1024), (4, 8, 16, 32), (4, 4, 4, 4), (2, 2, 18, 2), window=7),
}

# timm's registered model name for each preset (weights are interchangeable)
TIMM_NAMES = {
    "twins-pcpvt-s": "twins_pcpvt_small", "twins-pcpvt-b": "twins_pcpvt_base",
    "twins-pcpvt-l": "twins_pcpvt_large", "twins-svt-s": "twins_svt_small",
    "twins-svt-b": "twins_svt_base", "twins-svt-l": "twins_svt_large",
}


def get_preset(name: str) -> ArchConfig:
    key = name.lower().replace("_", "-")
    if key not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return ArchConfig.from_dict(PRESETS[key])


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
