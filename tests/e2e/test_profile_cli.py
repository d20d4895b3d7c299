"""`twins-nas profile`: the files it writes, their rows and columns, and one-line input errors."""
from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from twins_nas.browser import find_chromium
from twins_nas.cli import app
from twins_nas.config import ArchConfig
from twins_nas.models.cost_model import CATEGORIES
from twins_nas.presets import get_preset
from twins_nas.profile import analytic_flops
from twins_nas.profile.plots import write_report

runner = CliRunner()

COLUMNS = {"model", "resolution", "batch", "params", "params_m", "gmacs", "attn_share", "lsa_gmacs", "gsa_gmacs",
           "latency_ms", "latency_iqr_ms", "throughput", "peak_mem_mb", "device", "threads"} | {
    f"gmacs_{c}" for c in CATEGORIES}


def custom_cfg() -> ArchConfig:
    stages = [dict(patch_size=4, embed_dim=32, depth=2, num_heads=1, mlp_ratio=4, window=(7, 7), sr_ratio=4,
                   pattern="LG"),
              dict(patch_size=2, embed_dim=64, depth=1, num_heads=2, mlp_ratio=4, sr_ratio=2, subsample="avgpool"),
              dict(patch_size=2, embed_dim=128, depth=1, num_heads=4, mlp_ratio=4, sr_ratio=1)]
    return ArchConfig(name="my-net", stages=stages)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    import torch
    threads = torch.get_num_threads()  # the command sets it for this (test) process
    tmp = tmp_path_factory.mktemp("profile")
    custom_cfg().to_json(tmp / "some.json")
    out = tmp / "out"
    r = runner.invoke(app, ["profile", "--resolutions", "64,96", "--preset", "twins-svt-s", "--config",
                            str(tmp / "some.json"), "--out", str(out), "--batch", "1", "--budget", "0",
                            "--no-panels", "--threads", "1"])  # 1 thread: robust on a shared CI machine
    torch.set_num_threads(threads)
    assert r.exit_code == 0, r.output + (r.stderr or "")
    return out, r


def test_profile_writes_rows_and_columns(report):
    out, r = report
    df = pd.read_csv(out / "profile.csv")
    assert COLUMNS <= set(df.columns)
    assert list(zip(df["model"], df["resolution"])) == [
        ("twins-svt-s", 64), ("twins-svt-s", 96), ("my-net", 64), ("my-net", 96)]
    assert (df["batch"] == 1).all()
    assert df["latency_ms"].gt(0).all() and df["peak_mem_mb"].gt(0).all()
    assert df["throughput"].values == pytest.approx(1000 / df["latency_ms"].values)
    assert "twins-svt-s" in r.output and "my-net" in r.output  # the terminal table


def test_gmacs_column_is_the_analytic_count(report):
    out, _ = report
    df = pd.read_csv(out / "profile.csv")
    cfgs = {"twins-svt-s": get_preset("twins-svt-s"), "my-net": custom_cfg()}
    for _, row in df.iterrows():
        rep = analytic_flops(cfgs[row["model"]], int(row["resolution"]), batch=1)
        assert row["gmacs"] == pytest.approx(rep.total / 1e9, rel=1e-12)
        assert row["attn_share"] == pytest.approx(
            (rep.by_category["lsa_matmul"] + rep.by_category["gsa_matmul"]) / rep.total)


def test_html_and_pngs(report):
    out, _ = report
    html = (out / "complexity.html").read_text()
    assert "plotly-graph-div" in html and len(html) < 1_000_000  # plotly.js not inlined: loaded from beside it
    assert '<script charset="utf-8" src="plotly.min.js"></script>' in html and html.count(" src=") == 1
    assert (out / "plotly.min.js").stat().st_size > 1_000_000  # one copy, shared with optimality.html: works offline
    assert 'src="http' not in html  # nothing fetched from the network (no MathJax / CDN)
    if find_chromium():
        assert (out / "complexity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob("complexity_*.png"))  # --no-panels


def test_no_browser_skips_pngs_with_a_note(tmp_path, monkeypatch):
    import twins_nas.figures as figures
    monkeypatch.setattr(figures, "find_chromium", lambda: None)
    df = pd.DataFrame([dict(model="m", resolution=64, batch=1, gmacs=1.0, attn_share=0.1, lsa_gmacs=0.05,
                            gsa_gmacs=0.05, attn_gmacs=0.1, **{f"gmacs_{c}": 1 / len(CATEGORIES) for c in CATEGORIES})])
    res = write_report(df, None, tmp_path)
    assert (tmp_path / "profile.csv").exists() and (tmp_path / "complexity.html").exists()
    assert not list(tmp_path.glob("*.png")) and "Chromium" in res["notes"][0]


@pytest.mark.parametrize("args, msg", [
    (["--preset", "twins-svt-xl"], "unknown preset"),
    (["--resolutions", "64,abc"], "'abc' is not a whole number"),
    (["--resolutions", "16"], "too small"),
    (["--resolutions", ","], "no sizes"),
    (["--config", "missing.json"], "no such config file"),
    (["--device", "tpu"], "device='tpu'"),
    (["--dtype", "int8"], "--dtype"),
    (["--batch", "0"], "--batch"),
])
def test_bad_input_is_one_line_exit_2(args, msg, tmp_path):
    r = runner.invoke(app, ["profile", "--no-latency", "--out", str(tmp_path), *args])
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and msg in lines[0]
    assert not (tmp_path / "profile.csv").exists()


# ---- non-square sizes, a segmentation head, window / k optimality -----------------------------

def tiny_cfg() -> ArchConfig:
    stages = [dict(patch_size=4, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2, window=(3, 3), sr_ratio=2,
                   pattern="LG"),
              dict(patch_size=2, embed_dim=24, depth=1, num_heads=2, mlp_ratio=2, sr_ratio=2, subsample="dwconv"),
              dict(patch_size=2, embed_dim=32, depth=1, num_heads=2, mlp_ratio=2, sr_ratio=1)]
    return ArchConfig(name="tiny", stages=stages)


@pytest.fixture(scope="module")
def dense_report(tmp_path_factory):
    import torch
    threads = torch.get_num_threads()
    tmp = tmp_path_factory.mktemp("dense")
    tiny_cfg().to_json(tmp / "tiny.json")
    out = tmp / "out"
    r = runner.invoke(app, ["profile", "--size", "96x160,64x64", "--size", "75x99", "--config", str(tmp / "tiny.json"),
                            "--head", "semantic-fpn", "--num-classes", "7", "--fvcore", "--budget", "0",
                            "--no-png", "--threads", "1", "--min-keys", "9", "--out", str(out)],
                      env={"COLUMNS": "250"})
    torch.set_num_threads(threads)
    assert r.exit_code == 0, r.output + (r.stderr or "")
    return out, r


def test_dense_profile_splits_backbone_neck_head_exactly(dense_report):
    from twins_nas.models import head_config
    from twins_nas.models.head_cost import analytic_dense_flops, analytic_dense_params
    out, r = dense_report
    df = pd.read_csv(out / "profile.csv")
    assert list(df["size"]) == ["64x64", "75x99", "96x160"]  # by pixel count
    assert list(zip(df["height"], df["width"])) == [(64, 64), (75, 99), (96, 160)]
    head = head_config("semantic-fpn", 7)
    params = analytic_dense_params(tiny_cfg(), head)
    for _, row in df.iterrows():
        rep = analytic_dense_flops(tiny_cfg(), head, (row["height"], row["width"]))
        assert row["gmacs"] == pytest.approx(rep.total / 1e9, rel=1e-12)
        assert row["gmacs_fvcore"] == pytest.approx(row["gmacs"], rel=1e-12)  # traced whole model, independent
        assert row["backbone_gmacs"] + row["neck_gmacs"] + row["head_gmacs"] == pytest.approx(row["gmacs"])
        assert row["params"] == params["total"]
        assert row["latency_ms"] > 0 and row["peak_mem_mb"] > 0  # the dense model ran at H x W
    assert "backbone" in r.stdout and "neck" in r.stdout and "75x99" in r.stdout


def test_dense_profile_writes_the_optimality_table(dense_report):
    import json

    from twins_nas.models.window_optimum import stage_optima
    out, _ = dense_report
    table = pd.read_csv(out / "optimality.csv")
    assert len(table) == 3 * 3  # sizes x stages
    doc = json.loads((out / "optimality.json").read_text(), parse_constant=pytest.fail)  # strict JSON: no NaN
    assert doc["rule"] == {"min_keys": 9, "max_aspect": 2.0} and len(doc["stages"]) == 9
    for _, row in table.iterrows():
        o = stage_optima(tiny_cfg(), (row["height"], row["width"]), min_keys=9)[row["stage"] - 1]
        assert row["extra_pct_model"] == pytest.approx(o.extra_pct_model)
        assert row["best_k"] == f"{o.best_k[0]}x{o.best_k[1]}"
    html = (out / "optimality.html").read_text()
    # one page, plotly.js once; the title's law is JSON-escaped by some plotly JSON engines, so ASCII markers
    assert html.count("<script") >= 1 and "faint = too few keys" in html and "stage 3: GSA vs k" in html
    assert html.count(' src="plotly.min.js"') == 1 and (out / "plotly.min.js").is_file()
    df = pd.read_csv(out / "profile.csv")
    for _, row in df.iterrows():  # retargeting saves exactly the extra cost of every stage
        extra = table[table["size"] == row["size"]]["extra_gmacs"].sum()
        assert row["retarget_gmacs_cut"] == pytest.approx(extra, rel=1e-9, abs=1e-15)
        assert row["retarget_gmacs_cut"] >= 0  # every configured choice keeps the 9 keys: the optimum is cheaper


@pytest.mark.parametrize("args, msg", [
    (["--size", "51x"], "--size"),
    (["--size", "512x16"], "at least 32"),
    (["--size", "64", "--resolutions", "64"], "give one of them"),
    (["--num-classes", "3"], "--head"),
    (["--head", "fpn"], "semantic-fpn"),
    (["--min-keys", "0"], "--min-keys"),
])
def test_bad_dense_input_is_one_line_exit_2(args, msg, tmp_path):
    r = runner.invoke(app, ["profile", "--no-latency", "--preset", "twins-svt-s", "--out", str(tmp_path), *args])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and msg in lines[0], lines
    assert not (tmp_path / "profile.csv").exists()
