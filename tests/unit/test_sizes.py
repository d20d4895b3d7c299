"""Input sizes H x W (not only square) through the library: parsing, the profiler's latency and
memory, `twins-nas show`, the search space (stored, dumped, reloaded) and the proxy geometry."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
import yaml
from strategies import TINY_SPACE
from typer.testing import CliRunner

from twins_nas.cli import app
from twins_nas.config import MIN_RESOLUTION, ArchConfig, ConfigError, compact_size, format_size, parse_size
from twins_nas.models import UperNetConfig, build_model
from twins_nas.models.cost_model import analytic_flops
from twins_nas.profile.flops import count_flops
from twins_nas.profile.latency import LatencyReport, measure_latency
from twins_nas.profile.memory import cpu_forward_peak_mb, measure_peak_memory_many
from twins_nas.search.evaluate.objective import MeasureBudget, cheap_metrics, check_fits, time_model
from twins_nas.search.proxy.network import geometry_rows, proxy_of
from twins_nas.search.space.measure import HEAD_CLASSES, MeasureSettings
from twins_nas.search.space.space import load_space, space_from_dict
from twins_nas.summary import summarize

pytestmark = pytest.mark.usefixtures("single_thread")
WIDE = {"COLUMNS": "200"}
FORM = "expected H x W in pixels, e.g. 512x1024, or one number for a square"


def tiny_cfg(in_chans: int = 3, num_classes: int = 10) -> ArchConfig:
    return ArchConfig(name="tiny", in_chans=in_chans, num_classes=num_classes, stages=[
        dict(patch_size=4, embed_dim=16, depth=1, num_heads=1, mlp_ratio=2, window=(3, 5), sr_ratio=2, pattern="LG"),
        dict(patch_size=2, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2, window=(2, 2), sr_ratio=(1, 2),
             pattern="LG"),
    ])


# ---- parse_size / format_size ----------------------------------------------------------------
@pytest.mark.parametrize("value, want", [
    (512, (512, 512)), ("512", (512, 512)), ("512x1024", (512, 1024)), ("512X1024", (512, 1024)),
    (" 512 x 1024 ", (512, 1024)), ([512, 1024], (512, 1024)), ((33, 47), (33, 47)),
    (MIN_RESOLUTION, (MIN_RESOLUTION, MIN_RESOLUTION)),
])
def test_parse_size_accepts(value, want):
    assert parse_size(value) == want


@pytest.mark.parametrize("value, shown, rule", [
    ("51x", "size='51x'", FORM), ("x512", "size='x512'", FORM), ("512x1024x3", "size='512x1024x3'", FORM),
    ("abc", "size='abc'", FORM), ("", "size=''", FORM), (True, "size=true", FORM), (512.0, "size=512.0", FORM),
    ([512, 1024, 3], "size=[512, 1024, 3]", FORM), ([512.0, 64], "size=[512.0, 64]", FORM),
    ([True, 64], "size=[true, 64]", FORM), (None, "size=null", FORM),
    (0, "size=0", "at least 32 px"), (-64, "size=-64", "at least 32 px"), ("0x512", "size='0x512'", "at least 32 px"),
    (16, "size=16", "at least 32 px"), ((512, 31), "size=512x31", "at least 32 px"),
])
def test_parse_size_rejects_with_one_line(value, shown, rule):
    with pytest.raises(ConfigError) as e:
        parse_size(value)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(shown + ": ") and rule in msg, msg


def test_parse_size_names_the_field_and_formats():
    with pytest.raises(ConfigError, match=r"^--size='1024by512': expected H x W"):
        parse_size("1024by512", field="--size")
    assert format_size((512, 1024)) == "512x1024" and format_size((224, 224)) == "224x224"
    assert format_size(96) == "96x96"
    assert compact_size((96, 96)) == 96 and compact_size((96, 160)) == (96, 160) and compact_size(64) == 64


# ---- latency and memory ----------------------------------------------------------------------
class SegLike(nn.Module):
    """A wrapper with a Twins `backbone` and no `.cfg`, whose forward returns a (B, K, H, W) map."""

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.backbone = build_model(cfg, seed=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])


def _input_shapes(model: nn.Module) -> list:
    shapes: list = []
    model.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape)))
    return shapes


def test_latency_at_a_non_square_size():
    model = build_model(tiny_cfg(), seed=0)
    shapes = _input_shapes(model)
    rep = measure_latency(model, (48, 80), batch=2, device="cpu", warmup=1, min_repeats=2, max_repeats=3)
    assert set(shapes) == {(2, 3, 48, 80)}
    assert rep.size == (48, 80) and rep.resolution == (48, 80) and rep.size_str == "48x80"
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["size"] == [48, 80] and d["resolution"] == [48, 80] and d["batch"] == 2
    square = measure_latency(model, (64, 64), device="cpu", warmup=0, min_repeats=1, max_repeats=1)
    assert square.resolution == 64 and square.size == (64, 64) and square.to_dict()["resolution"] == 64
    # an old caller's report: an int resolution, the size filled in
    old = LatencyReport(median_ms=1.0, iqr_ms=0.0, throughput=1e3, repeats=1, device="cpu", threads=1, dtype="fp32",
                        batch=1, resolution=224)
    assert old.size == (224, 224) and old.to_dict()["resolution"] == 224


@pytest.mark.parametrize("bad", [0, (48, 0), (48.0, 80), "48x80", (48, 80, 3)])
def test_latency_rejects_a_bad_size_in_one_line(bad):
    with pytest.raises(ValueError, match=r"^resolution=.*expected a positive int n \(n x n\) or a pair"):
        measure_latency(tiny_cfg(), bad, device="cpu")


def test_a_wrapper_with_a_backbone_and_a_map_output_is_measured():
    model = SegLike(tiny_cfg(in_chans=1, num_classes=5))
    shapes = _input_shapes(model)
    rep = measure_latency(model, (40, 72), device="cpu", warmup=0, min_repeats=1, max_repeats=2)
    assert rep.size == (40, 72) and set(shapes) == {(1, 1, 40, 72)}  # channels from backbone.cfg
    assert model(torch.zeros(1, 1, 40, 72)).shape == (1, 5, 40, 72)
    mb = cpu_forward_peak_mb(model.eval(), (40, 72), batch=1)
    assert math.isnan(mb) or mb >= 0
    assert shapes[-1] == (1, 1, 40, 72)


def test_cpu_forward_peak_at_a_non_square_size():
    model = build_model(tiny_cfg(), seed=0).eval()
    shapes = _input_shapes(model)
    mb = cpu_forward_peak_mb(model, (96, 160), batch=2)
    assert shapes == [(2, 3, 96, 160)]
    assert math.isnan(mb) or mb >= 0


def test_peak_memory_many_keys_squares_by_int_and_others_by_pair():
    mem = measure_peak_memory_many(tiny_cfg(), [64, (96, 160), (64, 64)], device="cpu")
    assert set(mem) == {64, (96, 160)}
    assert all(isinstance(v, float) for v in mem.values())


# ---- show --------------------------------------------------------------------------------------
def run_show(*args: str):
    return CliRunner().invoke(app, ["show", *args], env=WIDE)


def stage_maps(output: str) -> list[str]:
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in output.splitlines()]
    return [r[1] for r in rows if r and r[0].isdigit()]


def test_show_at_a_non_square_size():
    res = run_show("twins-svt-s", "--size", "512x1024")
    assert res.exit_code == 0, res.output
    assert stage_maps(res.stdout) == ["128x256", "64x128", "32x64", "16x32"]
    assert "twins-svt-s @ 512x1024" in res.stdout
    gmacs = analytic_flops(ArchConfig.preset("twins-svt-s"), (512, 1024)).total / 1e9
    assert f"GMACs @ 512x1024: {gmacs:.3f}" in res.stdout
    assert "twins-svt-s @ 512x512" in run_show("twins-svt-s", "--size", "512").stdout


@pytest.mark.parametrize("args, needle", [
    (["--size", "512x"], "--size='512x': expected H x W"),
    (["--size", "16x512"], "--size='16x512': each side must be at least 32 px"),
    (["--size", "512x1024", "--resolution", "512"], "give one of them"),
])
def test_show_bad_size_is_one_line_exit_2(args, needle):
    res = run_show("twins-svt-s", *args)
    assert res.exit_code == 2 and "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], res.stderr


def test_summary_gmacs_is_fvcores_count_at_an_odd_non_square_size():
    cfg = tiny_cfg()
    info = summarize(cfg, (45, 77))
    assert info.size == (45, 77) and [r.map for r in info.stages] == [(11, 19), (5, 9)]
    assert info.gmacs * 1e9 == pytest.approx(count_flops(cfg, (45, 77)).total, abs=0.5)


# ---- the search space ----------------------------------------------------------------------------
def tiny_data(**changes) -> dict:
    data = yaml.safe_load(TINY_SPACE)
    data.update(changes)
    return data


def test_space_with_a_non_square_resolution_round_trips(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(TINY_SPACE.replace("resolution: 64\n", "resolution: 96x160\n"))
    space = load_space(path)
    assert space.input_size == (96, 160) and space.measure_size == (96, 160) and space.resolution == (96, 160)
    dump = space.model_dump(mode="json")
    assert dump["resolution"] == [96, 160]
    again = space_from_dict(json.loads(json.dumps(dump)), source=str(path))
    assert again == space and again.hash == space.hash and again.input_size == (96, 160)
    assert space_from_dict(tiny_data(resolution=[96, 160])).hash == space.hash
    # a square one is stored as the int it always was, however written
    for square in (96, "96", "96x96", [96, 96]):
        sq = space_from_dict(tiny_data(resolution=square))
        assert sq.resolution == 96 and sq.model_dump(mode="json")["resolution"] == 96
        assert sq.hash == space_from_dict(tiny_data(resolution=96)).hash


def test_unset_measure_options_leave_the_dump_as_before():
    space = space_from_dict(tiny_data())
    assert space.model_dump(mode="json")["measure"] == {"batch_size": 1, "dtype": "fp32", "device": "auto"}
    assert space.measure_size == (64, 64)


def test_measure_size_and_head_round_trip_and_drive_the_measurement():
    space = space_from_dict(tiny_data(resolution="64x96", measure=dict(batch_size=1, size="96x128",
                                                                          head="semantic-fpn")))
    assert space.measure.size == (96, 128) and space.measure_size == (96, 128) and space.input_size == (64, 96)
    assert (space.measure.head, space.measure.num_classes) == ("semantic-fpn", HEAD_CLASSES)
    dump = json.loads(json.dumps(space.model_dump(mode="json")))
    assert dump["measure"]["size"] == [96, 128] and dump["measure"]["num_classes"] == HEAD_CLASSES
    assert space_from_dict(dump) == space
    assert MeasureSettings(head="semantic-fpn", num_classes=19).num_classes == 19
    assert MeasureSettings(head="upernet").head_config == UperNetConfig(num_classes=150)
    cfg = space.random_config(__import__("random").Random(0))
    assert cheap_metrics(cfg, space.measure_size)["gmacs"] == analytic_flops(cfg, (96, 128)).gmacs
    check_fits(cfg, space.measure_size, 1, "cpu")
    rep = time_model(cfg, space, "cpu", MeasureBudget(warmup=0, min_repeats=1, max_repeats=1))
    assert rep.size == (96, 128)


@pytest.mark.parametrize("changes, needle", [
    (dict(resolution="96x"), 'resolution="96x": ' + FORM),
    (dict(resolution=[96, 160, 3]), "resolution=[96, 160, 3]: " + FORM),
    (dict(resolution="16x160"), 'resolution="16x160": each side must be at least 32 px'),
    (dict(measure=dict(size="abc")), 'measure.size="abc": ' + FORM),
    (dict(measure=dict(size=[64, 8])), "measure.size=[64, 8]: each side must be at least 32 px"),
    (dict(measure=dict(head="pspnet")), "measure.head='pspnet': valid heads are semantic-fpn, upernet"),
    (dict(measure=dict(num_classes=19)), "num_classes=19: classes of a measured head; give head too"),
    (dict(measure=dict(head="semantic-fpn", num_classes=0)), "measure.num_classes=0"),
    (dict(measure=dict(head="semantic-fpn", num_classes=True)), "measure.num_classes=true"),
])
def test_bad_sizes_and_heads_are_one_line(changes, needle):
    with pytest.raises(ConfigError) as e:
        space_from_dict(tiny_data(**changes), source="s.yaml")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("s.yaml: ") and needle in msg, msg


def test_too_small_for_the_patches_per_axis_is_one_line():
    deep = tiny_data(resolution="32x256")
    deep["stages"][1]["patch_size"] = 16  # 4 * 16 = 64 > 32 rows
    with pytest.raises(ConfigError, match=r"^<memory>: resolution=32x256: too small for the largest patch sizes"):
        space_from_dict(deep)


def test_override_sets_a_non_square_size():
    space = space_from_dict(tiny_data(), overrides=["resolution=64x128", "measure.size=[128, 256]"])
    assert space.input_size == (64, 128) and space.measure_size == (128, 256)


def test_search_dry_run_with_a_non_square_resolution(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPACE)
    res = CliRunner().invoke(app, ["search", "--space", str(path), "--out", str(tmp_path / "out"), "--dry-run",
                                   "--set", "resolution=96x160"], env=WIDE)
    assert res.exit_code == 0, res.output
    assert "sampled config 3" in res.stdout and not (tmp_path / "out").exists()


# ---- the proxy geometry, per axis ------------------------------------------------------------------
def wide_space():
    data = tiny_data(resolution="128x256")
    data["stages"] = [
        dict(patch_size=4, depth=2, embed_dim=32, head_dim=16, mlp_ratio=2, window=8, sr_ratio=8, pattern="LG"),
        dict(patch_size=2, depth=1, embed_dim=32, head_dim=16, mlp_ratio=2, window=4, sr_ratio=1, pattern="LG"),
    ]
    data["proxy"] = dict(resolution=32, patch_size=2, train_samples=200, val_samples=100, batch_size=100)
    return space_from_dict(data)


def test_proxy_keeps_windows_per_side_along_each_axis():
    space = wide_space()
    cfg = space.random_config(__import__("random").Random(0))
    proxy = proxy_of(cfg, space)
    full, small = geometry_rows(cfg, space.input_size), geometry_rows(proxy, space.proxy.resolution)
    assert [f["map"] for f in full] == [(32, 64), (16, 32)] and [p["map"] for p in small] == [(16, 16), (8, 8)]
    assert [p["window"] for p in small] == [(4, 2), (2, 1)]  # rows scaled by 1/2 and 1/2, columns by 1/4
    assert [f["windows_per_side"] for f in full] == [p["windows_per_side"] for p in small] == [(4, 8), (4, 8)]
    assert small[0]["k"] == (4, 2) and full[0]["keys_per_side"] == small[0]["keys_per_side"] == (4, 8)
    # the same network on a square input: a square proxy window
    square = space_from_dict({**space.model_dump(mode="json"), "resolution": 128})
    assert [p["window"] for p in geometry_rows(proxy_of(cfg, square), 32)] == [(4, 4), (2, 2)]


def test_show_proxy_of_a_non_square_space(tmp_path):
    path = tmp_path / "wide.yaml"
    path.write_text(yaml.safe_dump(wide_space().model_dump(mode="json")))
    cfg = wide_space().random_config(__import__("random").Random(0))
    cfg.to_json(tmp_path / "cfg.json")
    res = run_show(str(tmp_path / "cfg.json"), "--proxy", str(path))
    assert res.exit_code == 0, res.output
    assert "@ 128x256 -> proxy @ 32x32" in " ".join(res.stdout.split())
    assert "32x64 -> 16" in res.stdout  # stage-1 map: full size -> proxy (square maps print as one number)
