"""Frozen records that the stores return and the query API hands to users."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, NamedTuple, TypeAlias, TypeVar

from ._states import TERMINAL, ExecutionStatus, JobStatus, LogLevel

if TYPE_CHECKING:
    from datetime import datetime

    from ._types import JSON, ExecutionId, JobId

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorInfo:
    """An error as recorded: its type name, message and formatted traceback."""

    type: str
    message: str
    traceback: str = ""

    def to_json(self) -> dict[str, JSON]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}

    @classmethod
    def from_json(cls, data: dict[str, JSON]) -> ErrorInfo:
        return cls(
            type=str(data.get("type", "")),
            message=str(data.get("message", "")),
            traceback=str(data.get("traceback", "")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StepSpec:
    """One step of a job: a registered task and its arguments, with the options it runs with."""

    task: str
    args: tuple[JSON, ...] = ()
    kwargs: dict[str, JSON] = field(default_factory=dict)
    mode: str = "coroutine"
    timeout: float | None = None
    retries: int = 0
    backoff: dict[str, JSON] | None = None
    on_worker_lost: str = "retry"
    crash_limit: int = 3
    target: str | None = None
    command: tuple[str, ...] | None = None
    env: dict[str, str] | None = None
    cwd: str | None = None
    concurrency: int | None = None
    """At most this many executions of the task run at once, across all nodes (the claim
    enforces it); ``None``: no limit."""
    stand_in: bool = False
    """Enqueued where the task is known only by name: the node that runs it applies its own
    definition's options (mode, timeout, retries, backoff, ...) and binds the arguments."""

    def to_json(self) -> dict[str, JSON]:
        return {
            "target": self.target,
            "command": None if self.command is None else list(self.command),
            "env": self.env,  # type: ignore[dict-item]
            "cwd": self.cwd,
            "task": self.task,
            "args": list(self.args),
            "kwargs": self.kwargs,
            "mode": self.mode,
            "timeout": self.timeout,
            "retries": self.retries,
            "backoff": self.backoff,
            "on_worker_lost": self.on_worker_lost,
            "crash_limit": self.crash_limit,
            "concurrency": self.concurrency,
            "stand_in": self.stand_in,
        }

    @classmethod
    def from_json(cls, data: dict[str, JSON]) -> StepSpec:
        args = data.get("args") or []
        kwargs = data.get("kwargs") or {}
        backoff = data.get("backoff")
        timeout = data.get("timeout")
        retries = data.get("retries")
        crash_limit = data.get("crash_limit")
        concurrency = data.get("concurrency")
        command, env, target, cwd = (data.get(k) for k in ("command", "env", "target", "cwd"))
        assert isinstance(args, list)
        assert isinstance(kwargs, dict)
        return cls(
            task=str(data["task"]),
            args=tuple(args),
            kwargs=kwargs,
            mode=str(data.get("mode", "coroutine")),
            timeout=float(timeout) if isinstance(timeout, int | float) else None,
            retries=retries if isinstance(retries, int) else 0,
            backoff=backoff if isinstance(backoff, dict) else None,
            on_worker_lost=str(data.get("on_worker_lost", "retry")),
            crash_limit=crash_limit if isinstance(crash_limit, int) else 3,
            target=target if isinstance(target, str) else None,
            command=tuple(map(str, command)) if isinstance(command, list) else None,
            env={str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else None,
            cwd=cwd if isinstance(cwd, str) else None,
            concurrency=concurrency if isinstance(concurrency, int) else None,
            stand_in=data.get("stand_in") is True,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A snapshot of a job as stored."""

    id: JobId
    name: str
    category: str
    status: JobStatus
    schedule: dict[str, JSON]
    steps: tuple[StepSpec, ...]
    priority: int
    shared: dict[str, JSON]
    key: str | None
    created_at: datetime
    updated_at: datetime
    next_fire_at: datetime | None = None
    last_fire_at: datetime | None = None
    state: dict[str, JSON] = field(default_factory=dict)

    def _repr_html_(self) -> str:
        """Jupyter: name, status, schedule and category."""
        from ._display import job_html

        return job_html(self, ())


@dataclass(frozen=True, slots=True, kw_only=True)
class Execution:
    """A snapshot of one run of one step of a job."""

    id: ExecutionId
    job_id: JobId
    step: int
    task: str
    args: tuple[JSON, ...]
    kwargs: dict[str, JSON]
    attempt: int
    status: ExecutionStatus
    priority: int
    progress: float
    progress_message: str
    result: JSON
    error: ErrorInfo | None
    created_at: datetime
    scheduled_for: datetime
    started_at: datetime | None
    ended_at: datetime | None
    node: str | None
    pid: int | None

    @property
    def is_terminal(self) -> bool:
        """Whether the execution has ended (completed, failed or cancelled)."""
        return self.status in TERMINAL

    def _repr_html_(self) -> str:
        """Jupyter: status, a progress bar with its message, times, and the error if any."""
        from ._display import execution_html

        return execution_html(self)


class Transition(NamedTuple):
    """One status change of an execution, with its time: unpacks as ``(status, at)``."""

    status: ExecutionStatus
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class LogRecord:
    """One log line of an execution."""

    execution_id: ExecutionId
    job_id: JobId
    seq: int
    at: datetime
    level: LogLevel
    message: str
    data: dict[str, JSON]

    def _repr_html_(self) -> str:
        """Jupyter: a one-row log table."""
        from ._display import logs_table

        return logs_table([self])


@dataclass(frozen=True, slots=True, kw_only=True)
class Category:
    """A category and how many jobs (not deleted) it holds directly."""

    name: str
    jobs: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Page(Generic[T]):
    """One page of a listing, with the total number of matching items."""

    items: tuple[T, ...]
    page: int
    page_size: int
    total: int

    @property
    def pages(self) -> int:
        """How many pages there are of this size."""
        return max(1, -(-self.total // self.page_size))

    def _repr_html_(self) -> str:
        """Jupyter: a table of the items (logs, executions, jobs), captioned with the page."""
        from ._display import page_html

        return page_html(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class StateChanged:
    """An execution moved to ``status``."""

    seq: int
    at: datetime
    job_id: JobId
    execution_id: ExecutionId
    status: ExecutionStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressReported:
    """An execution reported its progress."""

    seq: int
    at: datetime
    job_id: JobId
    execution_id: ExecutionId
    progress: float
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LogWritten:
    """An execution wrote a log line."""

    seq: int
    at: datetime
    job_id: JobId
    execution_id: ExecutionId
    level: LogLevel
    message: str
    data: dict[str, JSON]


Event: TypeAlias = StateChanged | ProgressReported | LogWritten


for _cls in (
    ErrorInfo,
    StepSpec,
    Job,
    Execution,
    Transition,
    LogRecord,
    Category,
    Page,
    StateChanged,
    ProgressReported,
    LogWritten,
):
    _cls.__module__ = "asyncjobs"
