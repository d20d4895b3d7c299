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
    assert "plotly" in html and len(html) > 1_000_000  # plotly.js inline: works offline
    assert 'src="http' not in html  # nothing fetched from the network (no MathJax / CDN)
    if find_chromium():
        assert (out / "complexity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob("complexity_*.png"))  # --no-panels


def test_no_browser_skips_pngs_with_a_note(tmp_path, monkeypatch):
    import twins_nas.profile.plots as plots
    monkeypatch.setattr(plots, "find_chromium", lambda: None)
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
