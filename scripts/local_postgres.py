"""A throw-away PostgreSQL server on 127.0.0.1, for the tests, the chaos benchmark and anyone
who wants to try a search across processes or machines without a database administrator.

    python3 scripts/local_postgres.py start /tmp/pg [--port 5433] [--password secret]
    python3 scripts/local_postgres.py stop /tmp/pg

`start` runs Debian's `initdb` into DIR/data (as the ``postgres`` user when run as root: the
server refuses to run as root, and DIR's parent folders must let that user through), starts
the server on 127.0.0.1 and the given (or a free) port with password authentication for TCP,
and prints the storage URL. From Python:
`LocalPostgres(dir).start()` ... `.stop()`, `.restart()`, `.create_database(name)`.
"""
from __future__ import annotations

import argparse
import glob
import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path


def find_bindir() -> Path | None:
    """The folder of initdb / pg_ctl: Debian keeps them in /usr/lib/postgresql/VERSION/bin."""
    for name in ("initdb", "pg_ctl"):
        found = shutil.which(name)
        if found and Path(found).with_name("pg_ctl").exists() and Path(found).with_name("initdb").exists():
            return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    """One PostgreSQL cluster in `root` (data, socket and log inside it)."""

    def __init__(self, root: Path, port: int | None = None, password: str | None = None,
                 user: str = "postgres") -> None:
        self.root = Path(root).resolve()
        self.port = port or free_port()
        self.password = password or secrets.token_hex(8)
        self.user = user
        self.bindir = find_bindir()
        if self.bindir is None:
            raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres", password: bool = True) -> str:
        auth = f"{self.user}:{self.password}" if password else self.user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:  # the server refuses to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and res.returncode != 0:
            last = (res.stderr.strip() or res.stdout.strip() or "no output").splitlines()[-1]
            raise RuntimeError(f"{args[0]} failed (exit {res.returncode}): {last}")
        return res

    def start(self) -> LocalPostgres:
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.data / "PG_VERSION").exists():
            pwfile = self.root / "pwfile"
            pwfile.write_text(self.password + "\n")
            if os.geteuid() == 0:
                shutil.chown(self.root, "postgres")
                shutil.chown(pwfile, "postgres")
            self._run("initdb", "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}",
                      "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync")
            pwfile.unlink()
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                  f"-c max_connections=200", "start")
        return self

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def restart(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                  f"-c max_connections=200", "restart")

    def create_database(self, name: str) -> str:
        """Create database `name` and return its URL."""
        import sqlalchemy  # comes with optuna

        engine = sqlalchemy.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)


def main(argv: list | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("start", "stop"))
    ap.add_argument("dir", type=Path)
    ap.add_argument("--port", type=int, default=None)
    ap.add_argument("--password", default=None)
    args = ap.parse_args(argv)
    pg = LocalPostgres(args.dir, port=args.port, password=args.password)
    if args.action == "stop":
        pg.stop()
        return 0
    pg.start()
    print(pg.url())
    return 0


if __name__ == "__main__":
    sys.exit(main())
