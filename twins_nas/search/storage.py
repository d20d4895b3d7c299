"""Where a study lives: the storage spec, its description in messages, opening it, and the
file lock that keeps the trial count exact.

A storage *spec* is an Optuna RDB URL (sqlite:///..., postgresql://..., mysql://...) or
``journal:PATH`` for a journal file (`JournalFileBackend`). By default a search keeps its
study in OUT: a SQLite file ``OUT/study.db`` for one worker, a journal file
``OUT/study.journal`` with several workers (SQLite is for one process). A storage file an
earlier run left in OUT is continued whatever the number of workers (`existing_storage_file`:
one rule, for `search` and `export` alike). `--storage` takes any Optuna RDB URL, a
``.log`` / ``.journal`` path (journal storage) or a ``.db`` path (SQLite).
"""
from __future__ import annotations

import contextlib
import hashlib
import re
import tempfile
from pathlib import Path
from typing import Iterator, Optional

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage

from ..config import ConfigError

try:
    import fcntl
except ImportError:  # not POSIX: the check after a trial is created keeps N exact alone
    fcntl = None

STORAGE_FILES = ("study.journal", "study.db")  # in OUT, in the order they are looked for


def existing_storage_file(out_dir: Path) -> Optional[Path]:
    """The storage file an earlier run left in `out_dir` (the one to continue or export), or None."""
    for name in STORAGE_FILES:
        if (Path(out_dir) / name).is_file():
            return Path(out_dir) / name
    return None


def resolve_storage(storage: Optional[str], out_dir: Path, workers: int = 1) -> str:
    """Canonical storage spec: an RDB URL, or 'journal:PATH' for a journal file."""
    out_dir = Path(out_dir)
    if storage is None or storage == "":
        existing = existing_storage_file(out_dir)  # continue where an earlier run left off
        if existing is not None:
            return resolve_storage(str(existing), out_dir, workers)
        if workers > 1:
            return f"journal:{(out_dir / 'study.journal').resolve()}"
        return f"sqlite:///{(out_dir / 'study.db').resolve()}"
    if storage.startswith("journal:"):
        return f"journal:{Path(storage[len('journal:'):]).expanduser().resolve()}"
    if "://" in storage:
        return storage
    p = Path(storage).expanduser()
    if p.suffix in (".log", ".journal", ".jsonl"):
        return f"journal:{p.resolve()}"
    if p.suffix in (".db", ".sqlite", ".sqlite3"):
        return f"sqlite:///{p.resolve()}"
    raise ConfigError(f"--storage={storage!r}: give an Optuna storage URL (sqlite:///study.db, "
                      f"postgresql://...), a journal file (*.log / *.journal) or a SQLite file (*.db)")


def describe_storage(spec: str) -> str:
    """The spec for messages and reports: no password, a file below the working folder relative."""
    for prefix in ("sqlite:///", "journal:"):
        if spec.startswith(prefix):
            path = Path(spec[len(prefix):])
            with contextlib.suppress(ValueError):
                path = path.relative_to(Path.cwd())
            return f"{prefix}{path}"
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", spec)


def storage_file(spec: str) -> Optional[Path]:
    """The file of a journal or SQLite spec; None for a database server."""
    for prefix in ("journal:", "sqlite:///"):
        if spec.startswith(prefix):
            return Path(spec[len(prefix):])
    return None


def open_storage(spec: str) -> optuna.storages.BaseStorage:
    """The Optuna storage of a spec (its folder created); a one-line ConfigError when it
    cannot be opened (missing driver, bad URL, unreachable server)."""
    if spec.startswith("journal:"):
        path = Path(spec[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    try:
        if spec.startswith("sqlite:///"):
            Path(spec[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.RDBStorage(spec, engine_kwargs={"connect_args": {"timeout": 60}})
        return optuna.storages.RDBStorage(spec)
    except (ImportError, ModuleNotFoundError) as e:
        raise ConfigError(f"--storage={describe_storage(spec)}: a driver is missing ({e})") from None
    except Exception as e:  # noqa: BLE001 (sqlalchemy errors: bad URL, unreachable server)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--storage={describe_storage(spec)}: cannot open ({first})") from None


def lock_path(spec: str, study_name: str) -> Path:
    """The lock file of a study (in the temp folder, named after the storage and the study)."""
    key = hashlib.sha1(f"{spec}\0{study_name}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"twins-nas-{key}.lock"


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive `fcntl.flock` on `path` (created if missing) for the block. Where
    there is no fcntl (not POSIX) this does nothing: see `trials.run_worker`."""
    if fcntl is None:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
