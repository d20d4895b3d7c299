"""Every file twins-nas writes is written atomically: to a temporary file in the same folder,
flushed to disk, then renamed over the target (`os.replace`, atomic on POSIX). A crash, a
kill or a full disk therefore leaves either the old file or the new one, never a truncated
file that looks complete; a temporary file that a kill -9 left behind is hidden (``.NAME.tmp*``)
and replaced by the next write.

A write that fails for want of space, permission or a writable folder raises `OutputError`:
one line naming the path and the problem (the CLI exits with code 3 on it).
"""
from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

PathLike = str | Path


class OutputError(OSError):
    """A file could not be written: one line naming the path and the problem."""


def output_error(path: PathLike, e: OSError) -> OutputError:
    problem = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
               errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
               errno.EPERM: "permission denied"}.get(e.errno or 0, e.strerror or type(e).__name__)
    return OutputError(e.errno, f"{path}: cannot write ({problem})")


def ensure_dir(path: PathLike) -> Path:
    """`mkdir -p`, with a one-line `OutputError` when it cannot be made."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(p, e) from None
    return p


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """`with atomic_path(p) as tmp:` write the whole file to `tmp` (same folder, same suffix,
    so writers that read the format from the suffix work); on success it is synced and renamed
    onto `p`, on any error removed. OSErrors become `OutputError`."""
    path = Path(path)
    ensure_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise output_error(path, e) from None
        raise


def write_text(path: PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
