"""`twins-nas dashboard` (see twins_nas.search.report.dashboard)."""
from __future__ import annotations

from pathlib import Path

import typer

from ..config import ConfigError
from ..search.report.dashboard import serve_dashboard
from ..search.run.storage import ENV_STORAGE, describe_storage, existing_storage_file, resolve_storage
from .app import app
from .common import console, err_console, user_errors


@app.command()
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
    if study_dir is not None:
        found = existing_storage_file(study_dir)
        if found is None:
            raise ConfigError(f"--study-dir {study_dir}: holds neither study.journal nor study.db")
        spec = resolve_storage(str(found), study_dir)
    elif storage:
        spec = resolve_storage(storage, Path("."))
    else:
        raise ConfigError(f"give --storage URL_OR_FILE, --study-dir DIR or set {ENV_STORAGE}")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port={port}: must be 0 to 65535")

    def ready(url: str) -> None:
        console.print(f"dashboard of {describe_storage(spec)} at [bold]{url}[/] (Ctrl-C stops it)", highlight=False,
                      soft_wrap=True)

    try:
        serve_dashboard(spec, host=host, port=port, ready=ready)
    except KeyboardInterrupt:
        err_console.print("stopped")
