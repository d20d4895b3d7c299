"""Where the Chromium is that kaleido drives to write plotly figures as PNG."""
from __future__ import annotations

import os
import shutil

_EXECUTABLES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """The Chromium/Chrome kaleido would drive: `BROWSER_PATH` when set (None if it is not an
    executable), else the one kaleido's helper finds, else the first on PATH; None if none."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if os.path.isfile(env) and os.access(env, os.X_OK) else None
    try:
        from choreographer.browsers.chromium import Chromium  # kaleido's helper, imported on use
        path = Chromium.find_browser(skip_local=False)
        if path and os.path.isfile(path):
            return path
    except Exception:  # noqa: BLE001 (an internal API of kaleido's helper; fall back to PATH)
        pass
    for exe in _EXECUTABLES:
        found = shutil.which(exe)
        if found:
            return found
    return None
