"""The Twins paper's Tables 1 and 2 against twins-nas: the published figure, twins-nas's count,
the count under the named convention that explains the row, the difference in % and whether it
lands within 2 %.

    python benchmarks/paper_tables.py

Closed form only (no model is built): the whole script runs in about a second. Table 1 is
ImageNet at 224 (convention `twins-nas`), Table 2 ADE20K at 512x512: Semantic FPN (`mmcv`) and
UperNet (`fvcore-official`); UperNet rows need the `upernet` head and print
"n/a (head not available)" when a build lacks it. See `twins_nas.profile.conventions` and docs/cost-model.md.
"""
from __future__ import annotations

from twins_nas.models.head_config import HEADS
from twins_nas.presets import PRESETS, get_preset
from twins_nas.profile.conventions import PaperCount, paper_count

LIMIT_PCT = 2.0
NA = "n/a (head not available)"

# Twins paper (arXiv 2104.13840, NeurIPS 2021). Table 1: params M, GFLOPs at 224.
TABLE1 = {"twins-pcpvt-s": (24.11, 3.83), "twins-pcpvt-b": (43.83, 6.68), "twins-pcpvt-l": (60.99, 9.84),
          "twins-svt-s": (24.06, 2.94), "twins-svt-b": (56.07, 8.59), "twins-svt-l": (99.27, 15.15)}
# Table 2 (ADE20K, 512x512): params M, GFLOPs.
FPN = {"twins-pcpvt-s": (28.4, 40), "twins-pcpvt-b": (48.1, 55), "twins-pcpvt-l": (65.3, 71),
       "twins-svt-s": (28.3, 37), "twins-svt-b": (60.4, 67), "twins-svt-l": (103.7, 102)}
UPERNET = {"twins-pcpvt-s": (54.6, 234), "twins-pcpvt-b": (74.3, 250), "twins-pcpvt-l": (91.5, 269),
           "twins-svt-s": (54.4, 228), "twins-svt-b": (88.5, 261), "twins-svt-l": (133, 297)}

# table title, paper figures, input size, head, the convention that explains it
TABLES = (("Table 1: ImageNet-1K, 224x224", TABLE1, 224, None, "twins-nas"),
          ("Table 2: ADE20K Semantic FPN, 512x512", FPN, 512, "semantic-fpn", "mmcv"),
          ("Table 2: ADE20K UperNet, 512x512", UPERNET, 512, "upernet", "fvcore-official"))


def diff_pct(ours: float, paper: float) -> float:
    return 100 * (ours / paper - 1)


def row(metric: str, paper: float, default: float, conv: float, fmt: str) -> str:
    d0, d = diff_pct(default, paper), diff_pct(conv, paper)
    verdict = "yes" if abs(d) <= LIMIT_PCT else "**no**"
    return (f"| {metric} | {paper:{fmt}} | {default:{fmt}} ({d0:+.1f} %) | {conv:{fmt}} | {d:+.1f} % "
            f"| {verdict} |")


def print_table(title: str, paper: dict, size: int, head: str | None, convention: str) -> int:
    """Print one table; returns the number of values outside 2 % under the convention."""
    print(f"\n### {title} (convention `{convention}`)\n")
    print("| model | quantity | paper | twins-nas (diff) | convention | diff | within 2 % |")
    print("|---|---|---:|---:|---:|---:|---|")
    outside = 0
    for name in PRESETS:
        p_params, p_gflops = paper[name]
        if head is not None and head not in HEADS:
            print(f"| {name} | params M | {p_params:g} | {NA} | {NA} | - | - |")
            print(f"| {name} | GFLOPs | {p_gflops:g} | {NA} | {NA} | - | - |")
            continue
        cfg = get_preset(name)
        default = paper_count(cfg, size, head, "twins-nas")
        conv: PaperCount = paper_count(cfg, size, head, convention)
        lines = [row("params M", p_params, default.params_m, conv.params_m, ".2f"),
                 row("GFLOPs", p_gflops, default.gmacs, conv.gmacs, ".2f")]
        for line in lines:
            print(f"| {name} {line}")
        outside += sum(abs(diff_pct(ours, ref)) > LIMIT_PCT
                       for ours, ref in ((conv.params_m, p_params), (conv.gmacs, p_gflops)))
    return outside


def print_pieces(size: int, head: str, convention: str) -> None:
    """The corrections of `convention`, in GMACs and M params, per preset."""
    print(f"\n#### What `{convention}` adds to twins-nas's count ({head}, {size}x{size})\n")
    counts = {name: paper_count(get_preset(name), size, head, convention) for name in PRESETS}
    pieces = list(dict.fromkeys(k for c in counts.values() for k in c.macs_pieces if k != "twins-nas"))
    params = list(dict.fromkeys(k for c in counts.values() for k in c.params_pieces if k != "twins-nas"))
    print("| piece | " + " | ".join(PRESETS) + " |")
    print("|---|" + "---:|" * len(PRESETS))
    for k in pieces:
        print(f"| {k} (GMACs) | " + " | ".join(f"{c.macs_pieces.get(k, 0) / 1e9:+.3f}" for c in counts.values()) + " |")
    for k in params:
        print(f"| {k} (M params) | " + " | ".join(f"{c.params_pieces.get(k, 0) / 1e6:+.3f}"
                                                   for c in counts.values()) + " |")


def print_alternatives() -> None:
    """Semantic FPN GFLOPs under every candidate, as % from the paper: only mmcv with the
    official model's padded q/k/v lands every row within 2 %."""
    print("\n#### Semantic FPN GFLOPs under each candidate convention (% from the paper)\n")
    cols = ("twins-nas (fvcore, attention)", "fvcore-official", "mmcv, q/k/v unpadded", "mmcv", "mmcv x 2")
    print("| model | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for name in PRESETS:
        cfg, paper = get_preset(name), FPN[name][1]
        official = paper_count(cfg, 512, "semantic-fpn", "fvcore-official")
        mmcv = paper_count(cfg, 512, "semantic-fpn", "mmcv")
        unpadded = mmcv.macs - mmcv.macs_pieces["LSA q/k/v on the padded map"]
        values = (mmcv.macs_pieces["twins-nas"], official.macs, unpadded, mmcv.macs, 2 * mmcv.macs)
        print(f"| {name} | " + " | ".join(f"{diff_pct(v / 1e9, paper):+.1f} %" for v in values) + " |")


def main() -> None:
    outside = 0
    for title, paper, size, head, convention in TABLES:
        outside += print_table(title, paper, size, head, convention)
    print_pieces(512, "semantic-fpn", "mmcv")
    print_alternatives()
    if "upernet" in HEADS:
        print_pieces(512, "upernet", "fvcore-official")
    print(f"\nvalues outside {LIMIT_PCT:g} % under their convention: {outside}")


if __name__ == "__main__":
    main()
