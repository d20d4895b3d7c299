"""`twins-nas dashboard`: `twins_nas.search.report.dashboard.open_dashboard`."""
from __future__ import annotations

from pathlib import Path

import typer

from ..search.report.dashboard import open_dashboard
from ..search.run.storage import ENV_STORAGE
from .app import app
from .common import console, err_console, user_errors


@app.command(short_help="Serve a study in optuna-dashboard, Optuna's web UI.")
@user_errors
def dashboard(
    storage: str | None = typer.Option(
        None, "--storage", envvar=ENV_STORAGE, show_envvar=True, show_default=False,
        help="The study storage: an Optuna URL (postgresql://user@host/db, sqlite:///x.db) or a journal / "
             "SQLite file."),
    study_dir: Path | None = typer.Option(None, "--study-dir",
                                          help="A search's report folder (its study.journal or study.db)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8080, "--port", help="Port to listen on (0: a free one)."),
) -> None:
    """Open a study in optuna-dashboard (Optuna's web UI: front, history, importances; live
    while a search runs) and serve it until Ctrl-C."""
    def ready(url: str, where: str) -> None:
        console.print(f"dashboard of {where} at [bold]{url}[/] (Ctrl-C stops it)", highlight=False, soft_wrap=True)

    try:
        open_dashboard(storage, study_dir, host=host, port=port, ready=ready)
    except KeyboardInterrupt:
        err_console.print("stopped")
