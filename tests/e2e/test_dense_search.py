"""A search whose cost objective is the dense model at its deployment size: `resolution: HxW`
and `measure: {head, size}` in the space. The trial's GMACs and params are the segmentation
model's (closed form, independent of the classifier's), and its throughput is timed on it."""
from __future__ import annotations

import optuna
import pytest
from strategies import TINY_SPACE
from typer.testing import CliRunner

from twins_nas.cli import app
from twins_nas.config import ArchConfig
from twins_nas.models import head_config
from twins_nas.models.cost_model import analytic_flops
from twins_nas.models.head_cost import analytic_dense_flops, analytic_dense_params

pytestmark = pytest.mark.usefixtures("single_thread")
runner = CliRunner()


def test_search_measures_the_dense_model_at_its_size(tmp_path):
    space = tmp_path / "dense.yaml"
    space.write_text(TINY_SPACE.replace("name: tiny", "name: dense").replace("resolution: 64", "resolution: 64x96")
                     .replace("measure: {batch_size: 1}",
                              "measure: {batch_size: 1, head: semantic-fpn, num_classes: 5, size: 96x160}")
                     .replace("constraints: {params_m: {max: 5}}\n", "")
                     .replace("objectives: {accuracy: maximize, throughput: maximize}",
                              "objectives: {accuracy: maximize, gmacs: minimize, throughput: maximize}"))
    out = tmp_path / "out"
    r = runner.invoke(app, ["search", "--space", str(space), "--trials", "2", "--out", str(out), "--no-png",
                            "--timing-budget", "0.02", "--threads", "1", "--device", "cpu",
                            "--set", "proxy.epochs=1"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output + (r.stderr or "")
    dry = runner.invoke(app, ["search", "--space", str(space), "--dry-run"], env={"COLUMNS": "200"})
    assert dry.exit_code == 0 and "measured at 96x160 px with a semantic-fpn head (5 classes)" in dry.stdout
    study = optuna.load_study(study_name="dense", storage=f"sqlite:///{out / 'study.db'}")
    head = head_config("semantic-fpn", 5)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 2
    for t in done:
        cfg = ArchConfig.from_dict(t.user_attrs["config"])
        m = t.user_attrs["metrics"]
        dense = analytic_dense_flops(cfg, head, (96, 160))
        assert m["gmacs"] == pytest.approx(dense.gmacs, rel=1e-12)
        assert m["gmacs"] > analytic_flops(cfg, (96, 160)).gmacs  # the head's cost is in
        assert m["params"] == analytic_dense_params(cfg, head)["total"]
        assert m["throughput"] > 0
    svt = study.user_attrs["presets"]["twins-svt-s"]  # the published models are measured alike
    svt_cfg = ArchConfig.preset("twins-svt-s").replace(num_classes=10, in_chans=3)
    assert svt["gmacs"] == pytest.approx(analytic_dense_flops(svt_cfg, head, (96, 160)).gmacs, rel=1e-12)
    assert svt["throughput"] > 0
    measure = study.user_attrs["measure"]
    assert measure["size"] == [96, 160] and measure["head"] == "semantic-fpn" and measure["num_classes"] == 5
