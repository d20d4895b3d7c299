"""Every plotly figure twins-nas draws is written by `write_figure`: its HTML page and, when a
Chromium is found, its PNG.

The page loads plotly.js from ``plotly.min.js`` beside it (plotly's ``include_plotlyjs=
"directory"``): one copy per folder, shared by every page there, instead of 4.7 MB inlined in
each page. The page still works offline: nothing is fetched from the network (no CDN, no
MathJax), but it needs that file, so a folder is moved or copied whole. ``plotly.min.js`` is
written before the page (a page never points at a missing file) and only when it is missing or
differs from the installed plotly's (a new plotly version replaces it).

PNGs are drawn by kaleido, which drives a Chromium: without one (`find_chromium` is None) they
are skipped with a note saying so; a Chromium that fails skips them with a note giving its
error. Either way the HTML is already written, and the note is returned for the caller to
show: no error is dropped. A file that cannot be written (no space, read-only) raises
`OutputError`, as every write of twins-nas does.
"""
from __future__ import annotations

import contextlib
import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .atomic import OutputError, atomic_path, ensure_dir, write_text
from .browser import find_chromium

if TYPE_CHECKING:
    from typing import TypeAlias

    import plotly.graph_objects as go

    Fig: TypeAlias = go.Figure | dict

PLOTLY_JS = "plotly.min.js"  # the name plotly's include_plotlyjs="directory" points at
DEFAULT_WIDTH, DEFAULT_HEIGHT = 1200, 700  # a PNG's size when neither the call nor the layout sets it


class FigureFiles(NamedTuple):
    """What `write_figure` wrote (HTML, plotly.min.js when it was written, PNGs), and notes
    saying what was skipped and why."""
    files: list[Path]
    notes: list[str]


def write_figure(fig: Fig | Sequence[Fig], html_path: str | Path | None,
                 png: str | Path | Sequence[str | Path] | None = None, *,
                 more_pngs: Sequence[tuple[Fig, str | Path]] = (), width: int | None = None,
                 height: int | None = None, scale: float = 1, title: str = "figures") -> FigureFiles:
    """Write `fig` as an HTML page at `html_path` (None: no page) and as PNG(s) when a
    Chromium is found.

    `fig` is a `go.Figure` or a figure dict, or a list (tuple) of them drawn one below the other
    on one page titled `title` (the title is only used for such a page). The page loads
    plotly.js from ``plotly.min.js`` in its folder, written (atomically) when missing or
    different from the installed plotly's.

    `png` is a path (one figure) or one path per figure of `fig`; `more_pngs` adds (figure,
    path) pairs drawn only as PNG (a report's single panels, say). Every PNG is `width` x
    `height` layout pixels times `scale`; a size left None is the figure's layout's, else
    1200 x 700. All PNGs are drawn by one browser and renamed into place together, or none.

    Returns the files written and the notes of what was skipped: no Chromium, or a Chromium
    that failed (its error's first line); the HTML is written either way. Raises
    `OutputError` when a file cannot be written.
    """
    import plotly.io as pio  # heavy import: see README

    figs = list(fig) if isinstance(fig, (list, tuple)) else [fig]
    files: list[Path] = []
    if html_path is not None:
        html_path = Path(html_path)
        written = _ensure_plotlyjs(html_path.parent)
        if written is not None:
            files.append(written)
        if not isinstance(fig, (list, tuple)):
            page = pio.to_html(figs[0], include_plotlyjs="directory", full_html=True, validate=False)
        else:
            body = "\n".join(pio.to_html(f, include_plotlyjs="directory" if i == 0 else False, full_html=False,
                                         validate=False) for i, f in enumerate(figs))
            page = (f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
                    f"<body>{body}</body></html>\n")
        files.append(write_text(html_path, page))
    pngs = [png] if isinstance(png, (str, Path)) else list(png or ())
    if pngs and len(pngs) != len(figs):
        raise ValueError(f"{len(pngs)} PNG paths for {len(figs)} figures")
    pairs = list(zip(figs, pngs)) + list(more_pngs)
    notes = []
    if pairs:
        note = _write_pngs(pairs, width, height, scale)
        if note:
            notes.append(note)
        else:
            files += [Path(p) for _, p in pairs]
    return FigureFiles(files, notes)


def _ensure_plotlyjs(folder: Path) -> Path | None:
    """Write the installed plotly's plotly.js as `folder`/plotly.min.js unless that file
    already holds it; the path when written, else None."""
    from plotly.offline import get_plotlyjs  # heavy import: see README

    path = ensure_dir(folder) / PLOTLY_JS
    js = get_plotlyjs().encode("utf-8")
    try:
        if path.stat().st_size == len(js) and path.read_bytes() == js:
            return None
    except FileNotFoundError:  # missing (or a link to a missing file): written below
        pass
    except OSError as e:
        raise OutputError(e.errno, f"{path}: cannot read ({e.strerror or type(e).__name__})") from None
    with atomic_path(path) as tmp:
        tmp.write_bytes(js)
    return path


def _write_pngs(pairs: list[tuple[Fig, str | Path]], width: int | None, height: int | None,
                scale: float) -> str | None:
    """Draw every (figure, path) as a PNG with one browser, renamed into place all or none.
    None, or a note saying why none was written."""
    import plotly.io as pio  # heavy import: see README

    if find_chromium() is None:  # the same note from every figure: callers may merge them
        return "no Chromium found (install chromium or set BROWSER_PATH): PNGs skipped"
    try:
        with contextlib.ExitStack() as stack:  # all PNGs renamed into place, or none
            tmps = [stack.enter_context(atomic_path(p)) for _, p in pairs]
            pio.write_images([f for f, _ in pairs], [str(t) for t in tmps], format="png", scale=scale,
                             validate=False,
                             width=[width or _layout(f, "width") or DEFAULT_WIDTH for f, _ in pairs],
                             height=[height or _layout(f, "height") or DEFAULT_HEIGHT for f, _ in pairs])
    except OutputError:
        raise
    except Exception as e:  # noqa: BLE001 (a failing browser: reported in the note, the HTML is kept)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"PNG export failed ({msg}): PNGs skipped"
    return None


def _layout(fig: Fig, key: str) -> int | None:
    """`key` of the figure's layout (width, height), None when unset."""
    if isinstance(fig, dict):
        return (fig.get("layout") or {}).get(key)
    return fig.layout[key]
