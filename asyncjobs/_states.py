"""Statuses and the one execution state machine.

::

    scheduled ─▶ queued ─▶ running ─▶ completed
        │          │          ├────▶ failed
        │          │          ├────▶ retrying ─▶ queued
        └──────────┴──────────┴────▶ cancelled

``retrying ─▶ cancelled`` is allowed too: a retry that waits for its delay can be cancelled.
Stores enforce :data:`TRANSITIONS` in the statement that writes; nothing else may change a
status.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Final


class ExecutionStatus(StrEnum):
    """Where an execution is in its life."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRYING = "retrying"
    CANCELLED = "cancelled"


class JobStatus(StrEnum):
    """Where a job is in its life."""

    ACTIVE = "active"
    PAUSED = "paused"
    FINISHED = "finished"
    STOPPED = "stopped"
    DELETED = "deleted"


class LogLevel(IntEnum):
    """Log levels; compare them (``level >= LogLevel.WARN``) to filter."""

    TRACE = 5
    DEBUG = 10
    INFO = 20
    WARN = 30
    ERROR = 40
    FATAL = 50
    PANIC = 60

    @classmethod
    def parse(cls, value: str | int) -> LogLevel:
        """Return the level named by ``value`` ("warn", "WARNING", 30, ...).

        :raises ValueError: naming the value and the known levels
        """
        if isinstance(value, int) and not isinstance(value, bool):
            for level in cls:
                if level.value == value:
                    return level
        elif isinstance(value, str):
            name = value.strip().upper()
            name = {"WARNING": "WARN", "CRITICAL": "FATAL"}.get(name, name)
            if name in cls.__members__:
                return cls[name]
        known = ", ".join(level.name.lower() for level in cls)
        raise ValueError(f"unknown log level {value!r}; expected one of {known}")


_S = ExecutionStatus

TRANSITIONS: Final = {
    _S.SCHEDULED: frozenset({_S.QUEUED, _S.CANCELLED}),
    _S.QUEUED: frozenset({_S.RUNNING, _S.CANCELLED}),
    _S.RUNNING: frozenset({_S.COMPLETED, _S.FAILED, _S.RETRYING, _S.CANCELLED}),
    _S.RETRYING: frozenset({_S.QUEUED, _S.CANCELLED}),
    _S.COMPLETED: frozenset[ExecutionStatus](),
    _S.FAILED: frozenset[ExecutionStatus](),
    _S.CANCELLED: frozenset[ExecutionStatus](),
}
"""The only transition table: status -> the statuses it may move to."""

TERMINAL: Final = frozenset({_S.COMPLETED, _S.FAILED, _S.CANCELLED})
"""Statuses an execution never leaves."""

WAITING: Final = frozenset({_S.SCHEDULED, _S.QUEUED, _S.RETRYING})
"""Statuses of an execution that is live but not running: cancelled directly by the store."""

LIVE_JOB: Final = frozenset({JobStatus.ACTIVE, JobStatus.PAUSED})
"""Job statuses under which an idempotency key stays taken."""


def allowed_from(to: ExecutionStatus) -> frozenset[ExecutionStatus]:
    """Return the statuses from which an execution may move to ``to``."""
    return frozenset(src for src, targets in TRANSITIONS.items() if to in targets)


def check_transition(src: ExecutionStatus, to: ExecutionStatus) -> None:
    """Raise :class:`ValueError` unless ``src -> to`` is in :data:`TRANSITIONS`."""
    if to not in TRANSITIONS[src]:
        raise ValueError(f"an execution cannot go from {src.value!r} to {to.value!r}")


for _cls in (ExecutionStatus, JobStatus, LogLevel):
    _cls.__module__ = "asyncjobs"
