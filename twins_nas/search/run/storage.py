"""Where a study lives: the storage spec, its description in messages, opening it, and the
lock that keeps the trial count exact.

A storage *spec* is an Optuna RDB URL (sqlite:///..., postgresql://..., mysql://...) or
``journal:PATH`` for a journal file (`JournalFileBackend`). By default a search keeps its
study in OUT: a SQLite file ``OUT/study.db`` for one worker, a journal file
``OUT/study.journal`` with several workers (SQLite is for one process). A storage file an
earlier run left in OUT is continued whatever the number of workers (`existing_storage_file`:
one rule, for `search` and `export` alike). `storage` takes any Optuna RDB URL, a
``.log`` / ``.journal`` path (journal storage) or a ``.db`` path (SQLite); without it, the
environment variable ``TWINS_NAS_STORAGE`` (read by the CLI) gives it.

Database servers (PostgreSQL, MySQL: any RDB URL but SQLite) are for searches across machines.
Their storage is opened with heartbeats (`heartbeat_interval`; a RUNNING trial without a
heartbeat for `grace_period` = 3 intervals is stale, see `trials.fail_stale_trials`), with
`pool_pre_ping` (a connection the server dropped is replaced, e.g. after a restart), and the
tables are created under a PostgreSQL advisory lock, so processes that start at the same moment
on a fresh database do not race. Passwords: give none in the URL and libpq reads `PGPASSWORD`
or `~/.pgpass`; one in the URL is masked (`***`) wherever the spec is shown or written.

The lock (`study_lock`) serialises "may I start a trial?" between the processes of a study: a
PostgreSQL advisory lock held for one transaction (`pg_advisory_xact_lock`: the database is the
arbiter, whatever the hosts; a process that dies releases it with its connection), otherwise an
`fcntl.flock` on a file in the temp folder (the processes of one host).
"""
from __future__ import annotations

import contextlib
import hashlib
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.storages.journal import JournalFileBackend, JournalStorage

from ...atomic import ensure_dir
from ...config import ConfigError

try:
    import fcntl
except ImportError:  # not POSIX: the check after a trial is created keeps N exact alone
    fcntl = None  # type: ignore[assignment]

STORAGE_FILES = ("study.journal", "study.db")  # in OUT, in the order they are looked for
ENV_STORAGE = "TWINS_NAS_STORAGE"
DEFAULT_HEARTBEAT_S = 10
GRACE_HEARTBEATS = 3  # a trial is stale after this many heartbeat intervals without one


def existing_storage_file(out_dir: Path) -> Path | None:
    """The storage file an earlier run left in `out_dir` (the one to continue or export), or None."""
    for name in STORAGE_FILES:
        if (Path(out_dir) / name).is_file():
            return Path(out_dir) / name
    return None


def resolve_storage(storage: str | None, out_dir: Path, workers: int = 1) -> str:
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
    raise ConfigError(f"storage={storage!r}: give an Optuna storage URL (sqlite:///study.db, "
                      f"postgresql://...), a journal file (*.log / *.journal) or a SQLite file (*.db)", field="storage")


def describe_storage(spec: str) -> str:
    """The spec for messages and reports: no password, a file below the working folder relative."""
    for prefix in ("sqlite:///", "journal:"):
        if spec.startswith(prefix):
            path = Path(spec[len(prefix):])
            with contextlib.suppress(ValueError):
                path = path.relative_to(Path.cwd())
            return f"{prefix}{path}"
    return mask_password(spec)


def mask_password(text: str) -> str:
    """`text` with the password of any URL in it (user:PASSWORD@, ?password=...) replaced by ***."""
    text = re.sub(r"(://[^:/@\s]*):[^@\s]*@", r"\1:***@", text)
    return re.sub(r"(?i)([?&]password=)[^&\s]*", r"\1***", text)


def is_server(spec: str) -> bool:
    """True for a database server's URL (PostgreSQL, MySQL, ...), False for files (SQLite, journal)."""
    return "://" in spec and not spec.startswith("sqlite:")


def is_postgresql(spec: str) -> bool:
    return re.match(r"^postgres(ql)?(\+\w+)?://", spec) is not None


def storage_error(spec: str, e: BaseException) -> ConfigError:
    """A one-line ConfigError for a storage that cannot be opened or reached, naming the problem
    as the driver says it (no SQL, no traceback, no password)."""
    if isinstance(e, (ImportError, ModuleNotFoundError)):
        hint = ' (pip install "twins-nas[postgres]")' if is_postgresql(spec) else ""
        return ConfigError(f"storage={describe_storage(spec)}: a database driver is missing{hint} ({e})",
                           field="storage")
    verb = "cannot connect" if is_server(spec) else "cannot open"
    return ConfigError(f"storage={describe_storage(spec)}: {verb} ({server_problem(e)})", field="storage")


def server_problem(e: BaseException) -> str:
    """What a driver error says, in one line: for libpq's 'connection to server at "h", port p
    failed: FATAL:  password authentication failed for user "u"' the part after the last
    'failed:'."""
    orig = getattr(e, "orig", None) or e.__cause__ or e
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    first = lines[0] if lines else type(orig).__name__
    if "failed: " in first:
        first = first.rsplit("failed: ", 1)[1]
    first = re.sub(r"^(FATAL|ERROR):\s*", "", first)
    return mask_password(first)


def storage_down(e: BaseException | None) -> bool:
    """True when `e` (or what caused it) is a lost or refused database connection: the
    server is down or restarting, not a bad request."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return True
        if isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated:
            return True
        e = e.__cause__ or e.__context__
    return False


def storage_file(spec: str) -> Path | None:
    """The file of a journal or SQLite spec; None for a database server."""
    for prefix in ("journal:", "sqlite:///"):
        if spec.startswith(prefix):
            return Path(spec[len(prefix):])
    return None


StaleCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


def open_storage(spec: str, heartbeat: int | None = None,
                 on_stale: StaleCallback | None = None) -> optuna.storages.BaseStorage:
    """The Optuna storage of a spec (its folder created); a one-line ConfigError when it
    cannot be opened (missing driver, bad URL, unreachable server, wrong password, no such
    database). A database server's storage records a heartbeat every `heartbeat` seconds
    (None: none) and calls `on_stale(study, trial)` for each trial that went stale."""
    if spec.startswith("journal:"):
        path = Path(spec[len("journal:"):])
        ensure_dir(path.parent)
        return JournalStorage(JournalFileBackend(str(path)))
    if spec.startswith("sqlite:///"):
        ensure_dir(Path(spec[len("sqlite:///"):]).parent)
    try:
        if spec.startswith("sqlite:///"):
            return optuna.storages.RDBStorage(spec, engine_kwargs={"connect_args": {"timeout": 60}})
        beats: dict[str, Any]  # RDBStorage's heartbeat keywords
        beats = {} if not heartbeat else dict(heartbeat_interval=int(heartbeat),
                                              grace_period=GRACE_HEARTBEATS * int(heartbeat),
                                              heartbeat_stale_trial_callback=on_stale)
        with _schema_lock(spec), warnings.catch_warnings():  # Optuna creates its tables: one process at a time
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
            return optuna.storages.RDBStorage(spec, engine_kwargs={"pool_pre_ping": True}, **beats)
    except Exception as e:  # noqa: BLE001 (sqlalchemy / driver errors: bad URL, unreachable server)
        raise storage_error(spec, e) from None


def _engine(spec: str) -> Any:
    return sqlalchemy.create_engine(spec, pool_pre_ping=True, pool_size=1, max_overflow=0)


@contextlib.contextmanager
def _schema_lock(spec: str) -> Iterator[None]:
    """A PostgreSQL advisory lock around the creation of Optuna's tables (nothing elsewhere)."""
    if not is_postgresql(spec):
        yield
        return
    lock = AdvisoryLock(spec, "optuna schema")
    try:
        with lock:
            yield
    finally:
        lock.close()


def _lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for `name`."""
    return int.from_bytes(hashlib.sha1(f"twins-nas\0{name}".encode()).digest()[:8], "big", signed=True)


def lock_path(spec: str, study_name: str) -> Path:
    """The lock file of a study (in the temp folder, named after the storage and the study)."""
    key = hashlib.sha1(f"{spec}\0{study_name}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"twins-nas-{key}.lock"


class FileLock:
    """`with lock:` holds an exclusive `fcntl.flock` on a file (the processes of one host)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._cm: contextlib.AbstractContextManager | None = None

    def __enter__(self) -> None:
        self._cm = exclusive(self.path)
        self._cm.__enter__()

    def __exit__(self, *exc: Any) -> None:
        cm, self._cm = self._cm, None
        assert cm is not None  # set by __enter__
        cm.__exit__(*exc)

    def __reduce__(self) -> tuple:  # sent to worker processes as its path
        return (FileLock, (str(self.path),))


class AdvisoryLock:
    """`with lock:` holds a PostgreSQL advisory lock for one transaction on a connection of its
    own: every process on every host that uses the same database and study waits for it, and
    the server releases it when the transaction ends or the connection dies."""

    def __init__(self, spec: str, name: str) -> None:
        self.spec, self.name = spec, name
        self.key = _lock_key(name)
        self._engine: Any = None
        self._tx: Any = None

    def __enter__(self) -> None:
        if self._engine is None:
            self._engine = _engine(self.spec)
        self._tx = self._engine.begin()
        conn = self._tx.__enter__()
        try:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:k)"), {"k": self.key})
        except BaseException:
            tx, self._tx = self._tx, None
            with contextlib.suppress(Exception):
                tx.__exit__(None, None, None)
            raise

    def __exit__(self, *exc: Any) -> None:
        tx, self._tx = self._tx, None
        with contextlib.suppress(Exception):  # a lost connection released the lock already
            tx.__exit__(*exc)

    def close(self) -> None:
        """Close its connection (a later `with` opens a new one)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __reduce__(self) -> tuple:  # sent to worker processes without its engine
        return (AdvisoryLock, (self.spec, self.name))


def study_lock(spec: str, study_name: str) -> FileLock | AdvisoryLock:
    """The lock that serialises the start of trials of a study (see the module docstring)."""
    if is_postgresql(spec):
        return AdvisoryLock(spec, f"study\0{study_name}")
    return FileLock(lock_path(spec, study_name))


def as_lock(lock: str | Path | contextlib.AbstractContextManager) -> contextlib.AbstractContextManager:
    """A lock object (`study_lock`'s) as it is, a lock file's path as its `FileLock`."""
    return FileLock(lock) if isinstance(lock, (str, Path)) else lock


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
