"""The proxy network: faithful attention geometry (windows and keys per side kept at the proxy
maps), distinct choices giving distinct proxies, widths, patch sizes, the older clamp rule."""
from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twins_nas.config import ArchConfig, ConfigError
from twins_nas.search.proxy.network import StageChoices, proxy_arch, scale_sides
from twins_nas.search.proxy.settings import ProxySettings
from twins_nas.search.space.space import load_space

SPACES = sorted(Path(__file__).resolve().parents[2].glob("search_spaces/*.yaml"))
FAITHFUL = ProxySettings()                    # 32 px, stage-1 patch 2: maps 16/8/4/2 at 224
CLAMP = ProxySettings(geometry="clamp", patch_size=None)


def windows_per_side(map_side: int, window: int) -> int:
    """Brute force: how many windows of `window` tokens tile (with padding) `map_side` tokens."""
    n, covered = 0, 0
    while covered < map_side:
        covered += window
        n += 1
    return n


def keys_per_side(map_side: int, k: int) -> int:
    """Brute force: the sub-sampled map side, one key per (possibly partial) k-cell."""
    return len(range(0, map_side, k))


# The mapping table of docs/search.md (full size at 224 px vs the default proxy), per stage:
# (full map, full windows/side, full keys/side, proxy map, proxy windows/side, proxy keys/side)
TABLE = {
    "twins-svt-s": [(56, 8, 7, 16, 8, 8), (28, 4, 7, 8, 4, 4), (14, 2, 7, 4, 2, 2), (7, 1, 7, 2, 1, 2)],
    "twins-pcpvt-s": [(56, None, 7, 16, None, 8), (28, None, 7, 8, None, 4), (14, None, 7, 4, None, 2),
                      (7, None, 7, 2, None, 2)],
}


@pytest.mark.parametrize("name", sorted(TABLE))
def test_mapping_table_of_the_small_presets(name):
    cfg = ArchConfig.preset(name)
    p = proxy_arch(cfg, FAITHFUL, num_classes=10, in_chans=1, resolution=224)
    for i, (row, s, ps, full, prox) in enumerate(zip(TABLE[name], cfg.stages, p.stages,
                                                     cfg.stage_sizes(224), p.stage_sizes(32))):
        fm, fw, fk, pm, pw, pk = row
        assert full == (fm, fm) and prox == (pm, pm), i
        if fw is not None:
            assert windows_per_side(fm, s.window[0]) == fw and windows_per_side(pm, ps.window[0]) == pw, i
        assert keys_per_side(fm, s.sr_pair[0]) == fk and keys_per_side(pm, ps.sr_pair[0]) == pk, i
        # kept: depth, pattern, MLP ratio, sub-sampling function
        assert (ps.depth, ps.pattern, ps.mlp_ratio, ps.subsample) == (s.depth, s.pattern, s.mlp_ratio, s.subsample)
    assert [s.patch_size for s in p.stages] == [2, 2, 2, 2]
    assert p.num_classes == 10 and p.in_chans == 1


def _geometry_key(cfg: ArchConfig, resolution: int) -> tuple:
    """What the attention of each stage is, independently of widths: the block kinds, the
    window of L blocks (clamped to the map), k of G blocks and the sub-sampler when k > 1."""
    key = []
    for s, (h, w) in zip(cfg.stages, cfg.stage_sizes(resolution)):
        kinds = tuple(s.block_types)
        win = (min(s.window[0], h), min(s.window[1], w)) if "L" in kinds else None
        k = (min(s.sr_pair[0], h), min(s.sr_pair[1], w)) if "G" in kinds else None
        key.append((kinds, win, k, s.subsample if k not in (None, (1, 1)) else None))
    return tuple(key)


def _mutations(space, cfg: ArchConfig):
    """Every config of the space that differs from `cfg` in one window, k, pattern or
    sub-sampling function (the model-wide one changes every stage's)."""
    d = cfg.model_dump(mode="json")
    for i, st_space in enumerate(space.stages):
        for field, choices in (("window", st_space.window or []), ("sr_ratio", st_space.sr_ratio),
                               ("pattern", st_space.pattern), ("subsample", st_space.subsample or [])):
            for c in choices:
                new = [dict(s) for s in d["stages"]]
                new[i][field] = list(c) if isinstance(c, tuple) else c
                if field == "pattern" and "L" in c and new[i]["window"] is None:
                    new[i]["window"] = list(st_space.window[0])
                yield dict(d, stages=new)
    stage_wide = [st_space.subsample is None for st_space in space.stages]
    for sub in space.subsample:
        yield dict(d, stages=[dict(s, subsample=sub) if wide else s for s, wide in zip(d["stages"], stage_wide)])


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_differing_window_k_pattern_or_subsampling_give_differing_proxies(path, seed):
    space = load_space(path)
    choices = space.geometry_choices()
    cfg = space.random_config(random.Random(seed))
    base_full = _geometry_key(cfg, space.resolution)
    base_proxy = _geometry_key(proxy_arch(cfg, space.proxy, 10, 1, space.resolution, choices), space.proxy.resolution)
    checked = 0
    for d in _mutations(space, cfg):
        other = ArchConfig(**d)
        if not space.contains(other) or _geometry_key(other, space.resolution) == base_full:
            continue  # not in the space, or the same network at full size
        p = proxy_arch(other, space.proxy, 10, 1, space.resolution, choices)
        assert _geometry_key(p, space.proxy.resolution) != base_proxy, (d, cfg)
        checked += 1
    assert checked > 0


def _bounds(v: int, full: int, proxy: int, kind: str) -> tuple[int, int]:
    """What keeps the block's kind, spelled out: local windows stay local, global ones global;
    k = 1 stays 1, k > 1 stays > 1 (when the proxy map has room for that at all)."""
    if proxy == 1:
        return 1, 1
    if kind == "window":
        return (proxy, proxy) if v >= full else (1, proxy - 1)
    return (1, 1) if v == 1 else (2, proxy)


@settings(max_examples=300, deadline=None)
@given(full=st.integers(1, 80), proxy=st.integers(1, 12), kind=st.sampled_from(["window", "ratio"]),
       values=st.lists(st.integers(1, 100), min_size=1, max_size=6))
def test_scaled_sides_keep_order_and_kind(full, proxy, kind, values):
    eff = sorted({min(v, full) for v in values})
    bounds = [_bounds(v, full, proxy, kind) for v in eff]
    feasible = any(all(lo <= c <= hi for c, (lo, hi) in zip(combo, bounds))
                   for combo in itertools.combinations(range(1, proxy + 1), len(eff)))
    if not feasible:
        with pytest.raises(ValueError, match="do not fit"):
            scale_sides(values, full, proxy, kind)
        return
    got = scale_sides(values, full, proxy, kind)
    by_eff = {min(v, full): got[v] for v in values}
    mapped = [by_eff[e] for e in eff]
    assert all(a < b for a, b in zip(mapped, mapped[1:]))        # distinct stay distinct, in order
    assert all(lo <= m <= hi for m, (lo, hi) in zip(mapped, bounds))
    assert all(got[v] == mapped[eff.index(min(v, full))] for v in values)  # larger than the map = the map
    if len(eff) == 1:                                             # alone: the scaled value, bounded
        lo, hi = bounds[0]
        assert mapped[0] == min(hi, max(lo, math.floor(eff[0] * proxy / full + 0.5)))


def test_too_many_choices_for_the_proxy_map_is_a_one_line_error():
    cfg = ArchConfig.preset("twins-svt-s")
    crowded = [StageChoices(), StageChoices(), StageChoices(),
               StageChoices(window_rows=(2, 3, 4, 5, 6, 7), window_cols=(7,))]
    with pytest.raises(ConfigError, match=r"stages\[3\]\.window \(rows\).*proxy\.resolution"):
        proxy_arch(cfg, FAITHFUL, 10, 1, 224, crowded)


def test_proxy_widths_head_floor_and_patch_sizes():
    cfg = ArchConfig.preset("twins-pcpvt-s")  # head_dim 64
    p = proxy_arch(cfg, FAITHFUL.model_copy(update={"width_mult": 0.125}), 10, 1, 224)
    assert all(s.head_dim >= 8 for s in p.stages)
    assert p.embed_dims == [8, 16, 40, 64]
    # a resolution too small for the patch sizes: later patch sizes shrink, no map is empty
    p = proxy_arch(cfg, CLAMP.model_copy(update={"resolution": 8}), 10, 1)
    assert [s.patch_size for s in p.stages] == [4, 2, 1, 1]
    assert p.stage_sizes(8)[-1] == (1, 1)


def test_clamp_geometry_rounds_down_to_divisors_of_the_maps():
    cfg = ArchConfig.preset("twins-svt-s")
    p = proxy_arch(cfg, CLAMP, num_classes=10, in_chans=1)
    assert p.embed_dims == [16, 32, 64, 128] and [s.num_heads for s in p.stages] == [2, 4, 8, 16]
    assert p.stage_sizes(32) == [(8, 8), (4, 4), (2, 2), (1, 1)]
    assert [s.window for s in p.stages] == [(4, 4), (4, 4), (2, 2), (1, 1)]
    assert [s.sr_ratio for s in p.stages] == [8, 4, 2, 1]


# The table of docs/search.md (The proxy): the presets under the committed spaces (whose k choices the proxy keeps
# apart, e.g. svt.yaml's stage 1 offers k = 4 or 8: proxy k = 2 or 3): per stage, (proxy
# windows/side, full keys/side, proxy keys/side), windows/side of the full size as in TABLE.
UNDER_SPACE = {
    ("twins-svt-s", "svt"): [(8, 7, 6), (4, 7, 3), (2, 7, 2), (1, 7, 2)],
    ("twins-pcpvt-s", "pcpvt"): [(None, 7, 6), (None, 7, 3), (None, 7, 2), (None, 7, 2)],
}


@pytest.mark.parametrize("name, space_name", sorted(UNDER_SPACE))
def test_mapping_table_under_the_committed_spaces(name, space_name):
    space = load_space(Path(__file__).resolve().parents[2] / "search_spaces" / f"{space_name}.yaml")
    cfg = ArchConfig.preset(name)
    assert space.contains(cfg)
    p = proxy_arch(cfg, space.proxy, 10, 1, space.resolution, space.geometry_choices())
    for (pw, fk, pk), s, ps, (fm, _), (pm, _) in zip(UNDER_SPACE[(name, space_name)], cfg.stages, p.stages,
                                                     cfg.stage_sizes(224), p.stage_sizes(space.proxy.resolution)):
        assert keys_per_side(fm, s.sr_pair[0]) == fk and keys_per_side(pm, ps.sr_pair[0]) == pk
        if pw is not None:
            assert windows_per_side(pm, ps.window[0]) == pw == windows_per_side(fm, s.window[0])
