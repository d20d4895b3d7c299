"""`twins-nas dashboard`: optuna-dashboard's HTTP API lists the study, with the space's
metric names, and a headless Chromium renders the study's page; bad input is one line."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import optuna
import pytest
from PIL import Image
from typer.testing import CliRunner

from twins_nas.browser import find_chromium
from twins_nas.cli import app

pytest.importorskip("optuna_dashboard")
runner = CliRunner()


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """A finished two-objective study as a search leaves it (SQLite in its report folder)."""
    out = tmp_path_factory.mktemp("dash")
    study = optuna.create_study(study_name="dashdemo", storage=f"sqlite:///{out / 'study.db'}",
                                directions=["maximize", "maximize"])
    study.set_user_attr("objectives", [["accuracy", "maximize"], ["throughput", "maximize"]])
    for i in range(6):
        t = study.ask({"depth": optuna.distributions.IntDistribution(1, 4)})
        study.tell(t, [0.5 + 0.05 * i, 100.0 - 10 * i])
    return out


@pytest.fixture(scope="module")
def server(study_dir):
    p = subprocess.Popen([sys.executable, "-m", "twins_nas", "dashboard", "--study-dir", str(study_dir),
                          "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()  # printed once the server listens
    url = next((w for w in line.split() if w.startswith("http://")), None)
    assert url, line + p.stderr.read() if p.poll() is not None else line
    yield url
    p.terminate()
    p.wait(timeout=20)


def test_api_lists_the_study_with_metric_names(server):
    base = server.removesuffix("dashboard/")
    with urllib.request.urlopen(base + "api/studies", timeout=30) as r:
        studies = json.load(r)["study_summaries"]
    assert [s["study_name"] for s in studies] == ["dashdemo"]
    with urllib.request.urlopen(base + f"api/studies/{studies[0]['study_id']}?after=0", timeout=30) as r:
        detail = json.load(r)
    assert len(detail["trials"]) == 6
    assert detail["objective_names"] == ["accuracy", "throughput"]


@pytest.mark.skipif(find_chromium() is None, reason="no Chromium")
def test_chromium_renders_the_study_page(server, tmp_path):
    chromium = str(find_chromium())
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,900",
             "--virtual-time-budget=8000"]
    page = server + "studies/1"
    dom = subprocess.run([chromium, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120).stdout
    assert "dashdemo" in dom and "Pareto Front" in dom and "accuracy" in dom
    shot = tmp_path / "dashboard.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", page], capture_output=True, timeout=120)
    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # a drawn page, not a blank one


def test_bad_input_is_one_line(tmp_path):
    for args in (["dashboard"], ["dashboard", "--study-dir", str(tmp_path)],
                 ["dashboard", "--storage", "postgresql://u:secret@127.0.0.1:1/x"]):
        r = runner.invoke(app, args, env={"TWINS_NAS_STORAGE": ""})
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), r.output
        assert "secret" not in r.output
