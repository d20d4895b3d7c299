"""`twins-nas show`: the table a person reads (block sequence, map sizes, params from the
paper), JSON input, and bad input as exit code 2 with one line and no traceback."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from twins_nas import build_model, get_preset
from twins_nas.cli import app
from twins_nas.config import ArchConfig

pytestmark = pytest.mark.usefixtures("single_thread")
WIDE = {"COLUMNS": "200"}  # one table row per stage, no wrapped cells


def run(*args: str):
    return CliRunner().invoke(app, ["show", *args], env=WIDE)


def stage_rows(output: str) -> dict[int, list[str]]:
    """Table body rows by stage number: {1: ['1', '56x56', '64', ...], ...}."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0].isdigit():
            rows[int(cells[0])] = cells
    return rows


def test_show_svt_s_prints_block_sequence_and_paper_params():
    res = run("twins-svt-s")
    assert res.exit_code == 0, res.output
    rows = stage_rows(res.stdout)
    assert sorted(rows) == [1, 2, 3, 4]
    blocks = {i: r[5] for i, r in rows.items()}
    assert blocks == {1: "L G", 2: "L G", 3: "L G L G L G L G L G", 4: "L G L G"}  # depths 2, 2, 10, 4
    assert [r[1] for r in rows.values()] == ["56x56", "28x28", "14x14", "7x7"]
    assert [r[6] for r in rows.values()] == ["7x7"] * 4
    assert "total params: 24.06 M (24,060,776)" in res.stdout


def test_show_per_stage_params_add_up_to_the_built_model():
    """The per-stage column against the real network's parameters grouped by stage."""
    res = run("twins-svt-s")
    shown = [float(r[-1]) for r in stage_rows(res.stdout).values()]
    model = build_model(get_preset("twins-svt-s"))
    want = [0] * 4
    for name, p in model.named_parameters():
        parts = name.split(".")
        if parts[0] in ("patch_embeds", "blocks", "pos_block"):
            want[int(parts[1])] += p.numel()
    assert shown == [round(w / 1e6, 3) for w in want]


def test_show_pcpvt_s_at_1024():
    res = run("twins-pcpvt-s", "--resolution", "1024")
    assert res.exit_code == 0, res.output
    rows = stage_rows(res.stdout)
    assert rows[1][1] == "256x256" and rows[4][1] == "32x32"
    assert rows[1][5] == "G G G"
    assert "@ 1024x1024" in res.stdout
    assert "total params: 24.11 M" in res.stdout


def test_show_json_file_and_collection_index(tmp_path):
    cfg = get_preset("twins-svt-s").replace(name="my-net", num_classes=10)
    cfg.to_json(tmp_path / "best_config.json")
    res = run(str(tmp_path / "best_config.json"))
    assert res.exit_code == 0, res.output
    assert "my-net @ 224x224" in res.stdout
    n = sum(p.numel() for p in build_model(cfg).parameters())
    assert f"({n:,})" in res.stdout
    (tmp_path / "pareto.json").write_text(json.dumps({"configs": [get_preset("twins-pcpvt-s").to_dict(),
                                                                  cfg.to_dict()]}))
    res = run(str(tmp_path / "pareto.json"), "--index", "1")
    assert res.exit_code == 0, res.output
    assert "my-net @ 224x224" in res.stdout


@pytest.mark.parametrize("make_arg, needle", [
    (lambda p: "nope", "'nope' is neither a preset"),
    (lambda p: (p / "bad.json").write_text("{oops") and str(p / "bad.json"), "not valid JSON"),
    (lambda p: (p / "bad.json").write_text(json.dumps(dict(get_preset("twins-svt-s").to_dict(), num_classes=-1)))
     and str(p / "bad.json"), "num_classes=-1"),
    (lambda p: str(p / "missing.json"), "no such config file"),
], ids=["unknown-name", "malformed-json", "invalid-config", "missing-file"])
def test_show_bad_input_is_exit_2_one_line_no_traceback(tmp_path, make_arg, needle):
    res = run(make_arg(tmp_path))
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and needle in lines[0]
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_show_too_small_resolution_is_rejected():
    res = run("twins-svt-s", "--resolution", "16")
    assert res.exit_code == 2
    assert "Traceback" not in res.output


SVT_SPACE = str(Path(__file__).resolve().parents[2] / "search_spaces" / "svt.yaml")


def _windows(side: int, window: int) -> int:
    return len(range(0, side, window))  # brute force: window starts along a (padded) side


def test_show_proxy_prints_full_size_next_to_the_proxy_and_json_builds_it():
    res = run("twins-svt-s", "--proxy", SVT_SPACE)
    assert res.exit_code == 0, res.output
    rows = stage_rows(res.stdout)
    assert [r[2] for r in rows.values()] == ["56 -> 16", "28 -> 8", "14 -> 4", "7 -> 2"]   # maps
    assert [r[4] for r in rows.values()] == ["8 -> 8", "4 -> 4", "2 -> 2", "1 -> 1"]       # windows per side
    assert [r[8] for r in rows.values()] == ["64 -> 16", "128 -> 32", "256 -> 64", "512 -> 128"]
    res = run("twins-svt-s", "--proxy", SVT_SPACE, "--json")
    assert res.exit_code == 0, res.output
    proxy = ArchConfig(**json.loads(res.stdout))
    full = get_preset("twins-svt-s")
    assert proxy.stage_sizes(48) == [(16, 16), (8, 8), (4, 4), (2, 2)] and proxy.in_chans == 1  # 48 px, patch 3
    for s, p, (fm, _), (pm, _) in zip(full.stages, proxy.stages, full.stage_sizes(224), proxy.stage_sizes(48)):
        assert _windows(fm, s.window[0]) == _windows(pm, p.window[0])
        assert (p.depth, p.pattern, p.subsample) == (s.depth, s.pattern, s.subsample)
        assert (p.sr_pair == (1, 1)) == (s.sr_pair == (1, 1))   # sub-sampling blocks still sub-sample
    build_model(proxy)(torch.zeros(1, 1, 48, 48))
    # --set reaches the space's proxy section
    res = run("twins-svt-s", "--proxy", SVT_SPACE, "--set", "proxy.resolution=96", "--json")
    assert ArchConfig(**json.loads(res.stdout)).stage_sizes(96)[0] == (32, 32)


@pytest.mark.parametrize("args, says", [
    (["--set", "proxy.resolution=64"], "give --proxy SPACE.yaml too"),
    (["--proxy", SVT_SPACE, "--set", "proxy.geometri=x"], "proxy.geometri: unknown key"),
    (["--proxy", "nope.yaml"], "nope.yaml"),
])
def test_show_proxy_bad_input_is_one_line(args, says):
    res = run("twins-svt-s", *args)
    assert res.exit_code == 2 and says in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1, res.output


# ---- --head: the dense model's params and GMACs, per part ---------------------------------------

def _tiny(tmp_path: Path) -> tuple[ArchConfig, str]:
    cfg = ArchConfig(name="tiny", stages=[
        dict(patch_size=4, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2, window=(3, 3), sr_ratio=2, pattern="LG"),
        dict(patch_size=2, embed_dim=24, depth=1, num_heads=2, mlp_ratio=2, sr_ratio=2, subsample="dwconv"),
        dict(patch_size=2, embed_dim=32, depth=1, num_heads=2, mlp_ratio=2, sr_ratio=1)])
    cfg.to_json(tmp_path / "tiny.json")
    return cfg, str(tmp_path / "tiny.json")


def _counted(cfg: ArchConfig, head: str, size: tuple[int, int]):
    """The dense model built and counted: its parameters (all, the backbone's) and fvcore's MACs."""
    from twins_nas.models.segmentation import TwinsSegmentation
    from twins_nas.profile import count_flops
    model = build_model(cfg, head=head)
    assert isinstance(model, TwinsSegmentation) and model.head_cfg.type == head
    params = sum(p.numel() for p in model.parameters())
    backbone = sum(p.numel() for p in model.backbone.parameters())
    return params, backbone, count_flops(model, size)


_PARAMS = re.compile(r"params: ([\d.]+) M \(([\d,]+)\) = backbone ([\d.]+) M \+ neck ([\d.]+) M \+ head ([\d.]+) M")
_GMACS = re.compile(r"GMACs: ([\d.]+) = backbone ([\d.]+) \+ neck ([\d.]+) \+ head ([\d.]+)")


@pytest.mark.parametrize("head", ["upernet", "semantic-fpn"])
def test_show_head_prints_the_dense_models_params_and_gmacs_as_built_and_traced(tmp_path, head):
    cfg, path = _tiny(tmp_path)
    res = run(path, "--size", "128x192", "--head", head)
    assert res.exit_code == 0, res.output
    params, backbone, flops = _counted(cfg, head, (128, 192))
    assert f"dense model ({head} head, 150 classes) @ 128x192:" in res.stdout
    p = _PARAMS.search(res.stdout)
    g = _GMACS.search(res.stdout)
    assert p and g, res.stdout
    assert int(p[2].replace(",", "")) == params
    assert float(p[3]) == round(backbone / 1e6, 3)
    assert float(p[3]) + float(p[4]) + float(p[5]) == pytest.approx(params / 1e6, abs=2e-3)
    assert float(g[1]) == round(flops.total / 1e9, 3)
    assert [float(x) for x in g.groups()[1:]] == [round(sum(flops.parts[k].values()) / 1e9, 3)
                                                   for k in ("backbone", "neck", "head")]
    assert flops.total > 0.05e9  # three decimals of GMACs tell a wrong count apart
    # the backbone table above it is the classifier's, as without --head
    plain = run(path, "--size", "128x192")
    assert res.stdout.startswith(plain.stdout)


@pytest.mark.parametrize("head", ["upernet", "semantic-fpn"])
def test_describe_with_a_head_has_the_dense_cost_exactly(tmp_path, head):
    from twins_nas.summary import describe
    cfg, path = _tiny(tmp_path)
    dense = describe(path, size="96x160", head=head).summary.dense
    params, backbone, flops = _counted(cfg, head, (96, 160))
    assert dense is not None and (dense.head, dense.num_classes) == (head, 150)
    assert dense.total_params == params and dense.params["backbone"] == backbone
    assert set(dense.gmacs) == {"backbone", "neck", "head"}
    for part, g in dense.gmacs.items():
        assert round(g * 1e9) == sum(flops.parts[part].values())
    assert describe(path, size="96x160").summary.dense is None


@pytest.mark.parametrize("head", ["nope", "fpn", "UperNet"])
def test_show_unknown_head_is_exit_2_one_line(head):
    res = run("twins-svt-s", "--head", head)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --head") and "semantic-fpn, upernet" in lines[0], res.output
    assert "Traceback" not in res.output
