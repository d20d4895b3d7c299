"""`write_figure`: the HTML page loads plotly.js from one plotly.min.js beside it (the installed
plotly's, written once per folder, replaced when it differs), nothing is fetched from the
network, and without a Chromium the PNGs are skipped with a note (the page is still written)."""
from __future__ import annotations

import re

import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs

import twins_nas.figures as figures
from twins_nas.atomic import OutputError
from twins_nas.figures import PLOTLY_JS, write_figure

SCRIPT_SRC = re.compile(r'<script[^>]*\bsrc="([^"]*)"')


def _fig(n: int = 0) -> go.Figure:
    return go.Figure(go.Scatter(x=[1, 2, 3], y=[n, n + 1, n + 4], name=f"curve {n}"),
                     layout=dict(title=f"figure {n}", width=640, height=400))


@pytest.fixture
def no_chromium(monkeypatch):
    monkeypatch.setattr(figures, "find_chromium", lambda: None)


def test_the_page_loads_plotly_js_from_the_file_beside_it(tmp_path, no_chromium):
    out = write_figure(_fig(), tmp_path / "fig.html")
    page = (tmp_path / "fig.html").read_text(encoding="utf-8")
    assert SCRIPT_SRC.findall(page) == [PLOTLY_JS]  # the one script file: relative, no CDN, no MathJax
    assert "plotly.js v" not in page and len(page) < 100_000  # the 4.7 MB bundle is not inlined
    assert "plotly-graph-div" in page and "curve 0" in page
    js = tmp_path / PLOTLY_JS
    assert js.read_text(encoding="utf-8") == get_plotlyjs()
    assert out.files == [js, tmp_path / "fig.html"] and out.notes == []


def test_figures_in_one_folder_share_one_copy(tmp_path, no_chromium):
    write_figure(_fig(0), tmp_path / "a.html")
    stamp = (tmp_path / PLOTLY_JS).stat().st_mtime_ns
    out = write_figure(_fig(1), tmp_path / "b.html")
    assert out.files == [tmp_path / "b.html"]  # plotly.min.js already there: not rewritten
    assert (tmp_path / PLOTLY_JS).stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "b.html", PLOTLY_JS]  # no temporary left
    for name in ("a.html", "b.html"):
        assert SCRIPT_SRC.findall((tmp_path / name).read_text(encoding="utf-8")) == [PLOTLY_JS]


def test_a_different_or_missing_copy_is_replaced(tmp_path, no_chromium):
    (tmp_path / PLOTLY_JS).write_text("/* plotly.js v0.0.0 */")
    out = write_figure(_fig(), tmp_path / "a.html")
    assert tmp_path / PLOTLY_JS in out.files
    assert (tmp_path / PLOTLY_JS).read_text(encoding="utf-8") == get_plotlyjs()
    (tmp_path / PLOTLY_JS).unlink()
    write_figure(_fig(), tmp_path / "sub" / "a.html")  # a new folder gets its own copy
    assert (tmp_path / "sub" / PLOTLY_JS).read_text(encoding="utf-8") == get_plotlyjs()


def test_a_link_to_an_identical_copy_is_kept(tmp_path, no_chromium):
    (tmp_path / PLOTLY_JS).write_text(get_plotlyjs(), encoding="utf-8")  # as in reports/: one copy, linked
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / PLOTLY_JS).symlink_to(f"../{PLOTLY_JS}")
    out = write_figure(_fig(), tmp_path / "report" / "a.html")
    assert out.files == [tmp_path / "report" / "a.html"] and (tmp_path / "report" / PLOTLY_JS).is_symlink()


def test_several_figures_on_one_page_load_plotly_js_once(tmp_path, no_chromium):
    write_figure([_fig(0), _fig(1), _fig(2)], tmp_path / "page.html", title="three <figures>")
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert SCRIPT_SRC.findall(page) == [PLOTLY_JS]
    assert page.count("plotly-graph-div") == 3 and "<title>three &lt;figures&gt;</title>" in page


def test_no_chromium_skips_the_png_with_a_note(tmp_path, no_chromium):
    out = write_figure(_fig(), tmp_path / "fig.html", tmp_path / "fig.png")
    assert (tmp_path / "fig.html").is_file() and not list(tmp_path.glob("*.png"))
    assert out.notes == ["no Chromium found (install chromium or set BROWSER_PATH): PNGs skipped"]
    assert tmp_path / "fig.png" not in out.files
    out = write_figure([_fig(0), _fig(1)], None, [tmp_path / "0.png", tmp_path / "1.png"],
                       more_pngs=[(_fig(2), tmp_path / "2.png")])
    assert out.files == [] and "PNGs skipped" in out.notes[0] and not list(tmp_path.glob("*.png"))


def test_a_failing_chromium_is_reported_not_swallowed(tmp_path, monkeypatch):
    import plotly.io as pio

    def broken(*args, **kwargs):
        raise RuntimeError("the browser closed unexpectedly\nmore detail")

    monkeypatch.setattr(figures, "find_chromium", lambda: "/usr/bin/chromium")
    monkeypatch.setattr(pio, "write_images", broken)
    out = write_figure(_fig(), tmp_path / "fig.html", tmp_path / "fig.png")
    assert out.notes == ["PNG export failed (the browser closed unexpectedly): PNGs skipped"]
    assert (tmp_path / "fig.html").is_file() and not list(tmp_path.glob("*.png")) and not list(tmp_path.glob(".*"))


def test_png_sizes_are_the_call_s_then_the_layout_s_then_the_default(tmp_path, monkeypatch):
    seen = {}

    def record(figs, files, **kwargs):
        seen.update(kwargs, n=len(figs))
        for f in files:
            open(f, "wb").close()

    import plotly.io as pio
    monkeypatch.setattr(figures, "find_chromium", lambda: "/usr/bin/chromium")
    monkeypatch.setattr(pio, "write_images", record)
    bare = go.Figure(go.Bar(x=[1], y=[2]))
    out = write_figure(_fig(), None, tmp_path / "a.png", more_pngs=[(bare, tmp_path / "b.png"),
                                                                    (bare.to_dict(), tmp_path / "c.png")])
    assert seen["width"] == [640, 1200, 1200] and seen["height"] == [400, 700, 700] and seen["scale"] == 1
    assert out.files == [tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"]
    write_figure(_fig(), None, tmp_path / "a.png", width=1400, height=620, scale=2)
    assert seen["width"] == [1400] and seen["height"] == [620] and seen["scale"] == 2


def test_one_png_path_per_figure(tmp_path, no_chromium):
    with pytest.raises(ValueError, match="2 PNG paths for 1 figures"):
        write_figure(_fig(), None, [tmp_path / "a.png", tmp_path / "b.png"])


def test_an_unwritable_folder_raises_before_any_page(tmp_path, no_chromium):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=f"{blocker}: cannot write"):
        write_figure(_fig(), blocker / "fig.html")


@pytest.mark.skipif(figures.find_chromium() is None, reason="no Chromium")
def test_with_chromium_the_page_and_its_pngs(tmp_path):
    out = write_figure(_fig(0), tmp_path / "fig.html", tmp_path / "fig.png", more_pngs=[(_fig(1), tmp_path / "p.png")])
    assert out.notes == [] and out.files == [tmp_path / PLOTLY_JS, tmp_path / "fig.html", tmp_path / "fig.png",
                                             tmp_path / "p.png"]
    for name in ("fig.png", "p.png"):
        png = (tmp_path / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(png[16:20], "big") == 640 and int.from_bytes(png[20:24], "big") == 400  # layout size
