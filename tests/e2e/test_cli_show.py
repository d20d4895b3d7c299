"""`twins-nas show`: the table a person reads (block sequence, map sizes, params from the
paper), JSON input, and bad input as exit code 2 with one line and no traceback."""
from __future__ import annotations

import json
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
    assert proxy.stage_sizes(32) == [(16, 16), (8, 8), (4, 4), (2, 2)] and proxy.in_chans == 1
    for s, p, (fm, _), (pm, _) in zip(full.stages, proxy.stages, full.stage_sizes(224), proxy.stage_sizes(32)):
        assert _windows(fm, s.window[0]) == _windows(pm, p.window[0])
        assert (p.depth, p.pattern, p.subsample) == (s.depth, s.pattern, s.subsample)
        assert (p.sr_pair == (1, 1)) == (s.sr_pair == (1, 1))   # sub-sampling blocks still sub-sample
    build_model(proxy)(torch.zeros(1, 1, 32, 32))
    # --set reaches the space's proxy section
    res = run("twins-svt-s", "--proxy", SVT_SPACE, "--set", "proxy.resolution=64", "--json")
    assert ArchConfig(**json.loads(res.stdout)).stage_sizes(64)[0] == (32, 32)


@pytest.mark.parametrize("args, says", [
    (["--set", "proxy.resolution=64"], "give --proxy SPACE.yaml too"),
    (["--proxy", SVT_SPACE, "--set", "proxy.geometri=x"], "proxy.geometri: unknown key"),
    (["--proxy", "nope.yaml"], "nope.yaml"),
])
def test_show_proxy_bad_input_is_one_line(args, says):
    res = run("twins-svt-s", *args)
    assert res.exit_code == 2 and says in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1, res.output
