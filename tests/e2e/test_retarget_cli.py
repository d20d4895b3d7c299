"""`twins-nas retarget`: the written config loads, builds and runs at the size; what it
prints (per-stage choice, weight case, GMACs before and after); bad input is one line."""
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from twins_nas import build_model, get_preset, load_config
from twins_nas.cli import app
from twins_nas.models.cost_model import analytic_flops, analytic_params
from twins_nas.models.retarget import adapt_state_dict

pytestmark = pytest.mark.usefixtures("single_thread")
WIDE = {"COLUMNS": "220"}


def run(*args: str):
    return CliRunner().invoke(app, ["retarget", *args], env=WIDE)


def test_retarget_svt_s_to_1024_writes_a_config_that_loads_builds_and_runs(tmp_path):
    out = tmp_path / "svt.json"
    res = run("twins-svt-s", "--size", "1024x1024", "--no-latency", "--out", str(out), "--max-params-growth", "inf")
    assert res.exit_code == 0, res.output
    new = load_config(str(out))
    old = get_preset("twins-svt-s")
    # the published k keeps 32 x 32 keys in every GSA at 1024 px; the optimum ~ 7 x 7
    assert [s.sr_pair for s in old.stages] == [(8, 8), (4, 4), (2, 2), (1, 1)]
    assert all(s.sr_pair[0] > o.sr_pair[0] for s, o in zip(new.stages, old.stages))
    meta = json.loads(out.read_text())["meta"]
    assert meta["weights"] == ["resampled", "resampled", "resampled", "new"]
    assert meta["size"] == [1024, 1024]
    before, after = analytic_flops(old, 1024), analytic_flops(new, 1024)
    assert f"{before.gmacs:.2f} -> {after.gmacs:.2f}" in res.stdout
    assert after.attention < 0.2 * before.attention
    assert "adapt_state_dict" in res.stdout
    assert f"params: {analytic_params(old) / 1e6:.2f} -> {analytic_params(new) / 1e6:.2f} M" in res.stdout
    model = build_model(new)
    model.load_state_dict(adapt_state_dict(build_model(old).state_dict(), old, new), strict=True)
    with torch.no_grad():  # runs at a non-square size too (the JSON is an ordinary config)
        assert model(torch.randn(1, 3, 96, 160)).shape == (1, 1000)


def test_keep_weights_changes_only_what_loads_as_is(tmp_path):
    out = tmp_path / "p.json"
    res = run("twins-pcpvt-s", "--size", "512x2048", "--keep-weights", "--no-latency", "-o", str(out))
    assert res.exit_code == 0, res.output
    assert "loads as it is" in res.stdout
    new = load_config(str(out))
    build_model(new).load_state_dict(build_model("twins-pcpvt-s").state_dict(), strict=True)


def test_latency_is_timed_per_stage(tmp_path):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(dict(stages=[
        dict(patch_size=4, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.0, window=[3, 3], sr_ratio=2, pattern="LG"),
        dict(patch_size=2, embed_dim=16, depth=1, num_heads=2, mlp_ratio=2.0, sr_ratio=1, pattern="G")],
        num_classes=0, name="tiny")))
    res = run(str(cfg), "--size", "64x96", "--budget", "1", "--min-keys", "9", "-o", str(tmp_path / "t.json"))
    assert res.exit_code == 0, res.output
    assert "backbone latency" in res.stdout and "median of" in res.stdout


@pytest.mark.parametrize("args, needle", [
    (["--size", "51x"], "--size"),
    (["--size", "16x16"], "at least 32"),
    (["--size", "512", "--min-keys", "0"], "--min-keys"),
    (["--size", "512", "--max-aspect", "0.5"], "--max-aspect"),
    (["--size", "512", "--budget", "0"], "--budget"),
    (["--size", "512", "--max-params-growth", "0"], "--max-params-growth"),
    (["--size", "512", "--max-params-growth", "-1"], "--max-params-growth"),
    (["--size", "512", "--max-params-growth", "nan"], "--max-params-growth"),
    (["--size", "1024", "--max-params-growth", "0.5"], "smallest growth achievable"),
    (["--size", "512", "--head", "nope"], "--head"),
    (["--size", "512", "--head", "fpn"], "semantic-fpn, upernet"),
    (["--size", "512", "--no-latency", "--runtime", "tensorrt"], "eager, compile, onnxruntime"),
])
def test_bad_input_is_one_line_exit_2(args, needle, tmp_path):
    res = run("twins-svt-s", *args, "-o", str(tmp_path / "x.json"))
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "x.json").exists()


def _numel(cfg) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in build_model(cfg).parameters())


def test_default_budget_keeps_the_params_and_says_why_per_stage(tmp_path):
    out = tmp_path / "svt.json"
    res = run("twins-svt-s", "--size", "1024x1024", "--no-latency", "--out", str(out))
    assert res.exit_code == 0, res.output
    old, new = get_preset("twins-svt-s"), load_config(str(out))
    assert _numel(new) <= 1.1 * _numel(old)
    assert analytic_flops(new, 1024).attention < 0.2 * analytic_flops(old, 1024).attention
    meta = json.loads(out.read_text())["meta"]
    assert meta["max_params_growth"] == 1.1
    assert meta["params"] == [_numel(old), _numel(new)]
    for i, st in enumerate(meta["stages"]):  # the JSON says, per stage, what changed and why
        assert st["subsample"] == [old.stages[i].subsample, new.stages[i].subsample]
        assert st["reason"]
        assert f"stage {i + 1}: {st['reason']}" in " ".join(res.stdout.split())
    switched = [i for i, (a, b) in enumerate(zip(old.stages, new.stages)) if a.subsample != b.subsample]
    assert switched  # conv at the optimal k would triple the parameters
    for i in switched:
        assert meta["weights"][i] in ("replaced", "new") and "would add" in meta["stages"][i]["reason"]
    assert "--max-params-growth" in res.stdout
    model = build_model(new)
    model.load_state_dict(adapt_state_dict(build_model(old).state_dict(), old, new), strict=True)


# ---- --head: the dense model before and after ------------------------------------------------

def _tiny(tmp_path) -> str:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(dict(name="tiny", stages=[
        dict(patch_size=4, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.0, window=[3, 3], sr_ratio=2, pattern="LG"),
        dict(patch_size=2, embed_dim=24, depth=2, num_heads=2, mlp_ratio=2.0, window=[3, 3], sr_ratio=2,
             pattern="LG"),
        dict(patch_size=2, embed_dim=32, depth=1, num_heads=2, mlp_ratio=2.0, sr_ratio=1, pattern="G")])))
    return str(path)


@pytest.mark.parametrize("head", ["upernet", "semantic-fpn"])
def test_head_adds_the_dense_models_gmacs_and_params_as_built_and_traced(tmp_path, head):
    from twins_nas.models.segmentation import TwinsSegmentation
    from twins_nas.profile import count_flops
    src, out = _tiny(tmp_path), tmp_path / "t.json"
    res = run(src, "--size", "128x192", "--min-keys", "9", "--no-latency", "--head", head, "-o", str(out))
    assert res.exit_code == 0, res.output
    old, new = load_config(src), load_config(str(out))
    assert old.stages != new.stages  # the retargeted backbone differs: before and after are two counts
    macs, params = [], []
    for cfg in (old, new):
        model = build_model(cfg, head=head)
        assert isinstance(model, TwinsSegmentation)
        params.append(sum(p.numel() for p in model.parameters()))
        macs.append(count_flops(model, (128, 192)).total)
    assert macs[0] != macs[1]
    meta = json.loads(out.read_text())["meta"]
    assert meta["dense"] == dict(head=head, num_classes=150, macs=macs, params=params)
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("dense model"))
    assert line.startswith(f"dense model ({head} head, 150 classes): GMACs {macs[0] / 1e9:.2f} -> "
                           f"{macs[1] / 1e9:.2f} ")
    assert f"params {params[0] / 1e6:.2f} -> {params[1] / 1e6:.2f} M" in line
    # the parameter budget is the classifier model's, with or without the head
    assert meta["params"] == [_numel(old), _numel(new)]
    plain = run(src, "--size", "128x192", "--min-keys", "9", "--no-latency", "-o", str(tmp_path / "p.json"))
    assert plain.exit_code == 0 and "dense model" not in plain.stdout
    assert "dense" not in json.loads((tmp_path / "p.json").read_text())["meta"]
    assert plain.stdout.replace("p.json", "t.json") == res.stdout.replace(line + "\n", "")
