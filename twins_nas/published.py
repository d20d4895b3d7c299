"""The six published Twins models as plain data (dicts in `ArchConfig` form), and timm's
registered name of each. Pure data: `config` reads it for `ArchConfig.preset`, `presets`
builds the configs and the timm keyword arguments from it."""
from __future__ import annotations


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
