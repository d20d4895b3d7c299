"""`twins-nas export-onnx` (the graph loads in onnxruntime and computes what PyTorch computes)
and `--runtime` of `twins-nas profile`; bad input is one line with exit code 2."""
from __future__ import annotations

import sys

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from twins_nas.cli import app
from twins_nas.config import ArchConfig
from twins_nas.models import build_model

ort = pytest.importorskip("onnxruntime")
runner = CliRunner()


def tiny_cfg() -> ArchConfig:
    return ArchConfig(name="tiny", num_classes=7, stages=[
        dict(patch_size=4, embed_dim=16, depth=1, num_heads=1, mlp_ratio=2, window=(5, 3), sr_ratio=3, pattern="LG",
             subsample="dwconv"),
        dict(patch_size=2, embed_dim=32, depth=1, num_heads=2, mlp_ratio=2, window=(4, 4), sr_ratio=2, pattern="LG",
             subsample="avgpool"),
    ])


def one_error_line(r) -> str:
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exit_code == 2 and len(lines) == 1, r.output
    return lines[0]


def test_export_onnx_round_trip_with_a_dense_head(tmp_path):
    tiny_cfg().to_json(tmp_path / "tiny.json")
    out = tmp_path / "seg.onnx"
    r = runner.invoke(app, ["export-onnx", str(tmp_path / "tiny.json"), "--size", "97x131", "--head", "semantic-fpn",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "opset 17" in r.output and "input input: (batch, 3, 97, 131)" in r.output
    assert "output logits: (batch, 150, 97, 131)" in r.output and "max abs error" in r.output
    # independent truth: the same model built here, against the file run by our own InferenceSession at batch 3
    model = build_model(tiny_cfg(), seed=0, head="semantic-fpn").eval()
    x = torch.randn(3, 3, 97, 131)
    with torch.inference_mode():
        ref = model(x)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(sess.run(None, {"input": x.numpy()})[0])
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, rtol=1e-3, atol=1e-4 * float(ref.abs().max()))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_export_onnx_of_a_preset_with_a_fixed_batch(tmp_path):
    out = tmp_path / "svt.onnx"
    r = runner.invoke(app, ["export-onnx", "twins-svt-s", "--size", "64", "--batch", "2", "--no-dynamic-batch",
                            "--opset", "18", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "opset 18" in r.output and "none (every axis fixed)" in r.output
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == [2, 3, 64, 64] and sess.get_outputs()[0].shape == [2, 1000]


@pytest.mark.parametrize("args, starts", [
    (["--size", "20"], "--size"),
    (["--size", "64", "--opset", "9"], "--opset"),
])
def test_export_onnx_bad_input_is_one_line(tmp_path, args, starts):
    line = one_error_line(runner.invoke(app, ["export-onnx", "twins-svt-s", *args, "--out", str(tmp_path / "m.onnx")]))
    assert line.startswith(f"error: {starts}")
    assert not (tmp_path / "m.onnx").exists()


def test_profile_records_the_runtime(tmp_path):
    tiny_cfg().to_json(tmp_path / "tiny.json")
    r = runner.invoke(app, ["profile", "--size", "97x131", "--config", str(tmp_path / "tiny.json"), "--runtime",
                            "onnxruntime", "--device", "cpu", "--budget", "0", "--no-memory", "--no-png",
                            "--threads", "1", "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(tmp_path / "out" / "profile.csv")
    assert list(df["runtime"]) == ["onnxruntime"] and df["latency_ms"].iloc[0] > 0


def test_profile_with_an_unknown_runtime_is_one_line(tmp_path):
    line = one_error_line(runner.invoke(app, ["profile", "--size", "64", "--preset", "twins-svt-s", "--runtime",
                                              "tensorrt", "--out", str(tmp_path / "out")]))
    assert line.startswith("error: --runtime='tensorrt'") and "eager, compile, onnxruntime" in line
    assert not (tmp_path / "out").exists()


def test_profile_without_onnxruntime_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    line = one_error_line(runner.invoke(app, ["profile", "--size", "64", "--preset", "twins-svt-s", "--runtime",
                                              "onnxruntime", "--device", "cpu", "--out", str(tmp_path / "out")]))
    assert "onnxruntime is not installed" in line and "twins-nas[onnx]" in line
