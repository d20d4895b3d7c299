"""How a trial ended (`TrialStatus`, the ``status`` user attribute of every trial) and how a
run of trials stopped (`StopReason`). Both are `str` enums: stored and compared as their
plain values ("ok", "done", ...), which is what older studies hold."""
from __future__ import annotations

from enum import Enum


class _StrEnum(str, Enum):
    """A str enum that prints and formats as its value (as `enum.StrEnum` of Python 3.11)."""

    __str__ = str.__str__
    def __format__(self, format_spec: str) -> str:
        return str.__format__(self, format_spec)


class TrialStatus(_StrEnum):
    """The ``status`` of a finished trial."""

    OK = "ok"                  # scored: its objective values count
    INFEASIBLE = "infeasible"  # a closed-form constraint rejected it before any training
    PRUNED = "pruned"          # stopped early (proxy training behind its peers)
    FAILED = "failed"          # an error, out of memory, or a dead worker (see ``fail_reason``)
    SURPLUS = "surplus"        # asked for after the study had its N trials; not run


class StopReason(_StrEnum):
    """Why a run of trials (one process, a worker or all of them) stopped."""

    DONE = "done"                # the study has its N finished trials
    TIMEOUT = "timeout"          # settings.timeout passed: running trials finished, no new ones started
    FAILING = "failing"          # too many trials failed in a row
    CRASHED = "crashed"          # a worker process died or raised
    INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM: the running trial is failed, the report written
    STORAGE = "storage"          # the database server went away for longer than the reconnect window
