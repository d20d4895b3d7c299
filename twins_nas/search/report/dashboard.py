"""A study's storage served by optuna-dashboard (the optional extra
``twins-nas[dashboard]``), Optuna's own web UI: trials, Pareto front, parameter importances,
history, live while a search runs.

`open_dashboard(storage | study_dir, host, port)` (what `twins-nas dashboard` runs) finds the
storage; `serve_dashboard(spec, host, port)` opens it (any spec `storage.resolve_storage`
gives: RDB URL, journal or SQLite file), names each study's objectives after the space's
metrics where an older study has no names yet (so the plots say "accuracy" and "throughput",
not "Objective 0"), and serves the
dashboard's WSGI app with the standard library's server until interrupted.
"""
from __future__ import annotations

import socketserver
import warnings
from collections.abc import Callable
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna

from ...config import ConfigError
from ..run.storage import ENV_STORAGE, describe_storage, existing_storage_file, open_storage, resolve_storage


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # no line per request
        pass


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


def dashboard_app(spec: str):
    """The WSGI app of optuna-dashboard over the study storage `spec`."""
    try:
        import optuna_dashboard  # heavy import: see README (optional extra)
    except ImportError:
        raise ConfigError('the dashboard needs optuna-dashboard: pip install "twins-nas[dashboard]"') from None
    storage = open_storage(spec)
    names = optuna.get_all_study_names(storage)
    if not names:
        raise ConfigError(f"storage={describe_storage(spec)}: holds no study", field="storage")
    for name in names:  # a study written before its metrics were named
        study = optuna.load_study(study_name=name, storage=storage)
        metrics = [m for m, _ in (study.user_attrs.get("objectives") or [])]
        if metrics and len(metrics) == len(study.directions) and study.metric_names is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(metrics)
    return optuna_dashboard.wsgi(storage)


def dashboard_storage(storage: str | None = None, study_dir: str | Path | None = None) -> str:
    """The storage spec to open: the study.journal or study.db in `study_dir` (a search's report
    folder), else `storage` (URL or file); a one-line ConfigError when neither names one."""
    if study_dir is not None:
        found = existing_storage_file(Path(study_dir))
        if found is None:
            raise ConfigError(f"study_dir {study_dir}: holds neither study.journal nor study.db", field="study_dir")
        return resolve_storage(str(found), Path(study_dir))
    if storage:
        return resolve_storage(storage, Path("."))
    raise ConfigError(lambda name: f"give {name('storage')} URL_OR_FILE, {name('study_dir')} DIR or set {ENV_STORAGE}",
                      field="storage")


def open_dashboard(storage: str | None = None, study_dir: str | Path | None = None, host: str = "127.0.0.1",
                   port: int = 8080, ready: Callable[[str, str], None] | None = None) -> None:
    """Serve the dashboard of a study storage (`storage`, or the one in the report folder
    `study_dir`, see `dashboard_storage`) on host:port (0: a free port) until KeyboardInterrupt;
    `ready(url, storage)` is called once it listens, with the storage as messages show it."""
    spec = dashboard_storage(storage, study_dir)
    serve_dashboard(spec, host=host, port=port,
                    ready=None if ready is None else lambda url: ready(url, describe_storage(spec)))


def serve_dashboard(spec: str, host: str = "127.0.0.1", port: int = 8080,
                    ready: Callable[[str], None] | None = None) -> None:
    """Serve the dashboard of `spec` on host:port (0: a free port) until KeyboardInterrupt;
    `ready(url)` is called once it listens."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"port={port}: must be 0 to 65535", field="port")
    app = dashboard_app(spec)
    try:
        server = make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    except OSError as e:
        why = e.strerror or e
        raise ConfigError(lambda name: f"{name('host')} {host} {name('port')} {port}: cannot listen ({why})",
                          field="host") from None
    url = f"http://{host}:{server.server_port}/dashboard/"
    if ready is not None:
        ready(url)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
