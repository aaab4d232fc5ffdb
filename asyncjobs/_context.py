"""What a running task sees: ``ctx.progress``, ``ctx.log``, ``ctx.shared`` and its ids.

Every call here is plain and non-blocking, and safe from the task's own thread when a sync
task runs in a worker thread: it hands the value to the engine's writer and returns.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

from asyncjobs_runner._convert import to_json
from asyncjobs_runner.protocol import check_progress

from ._states import LogLevel

if TYPE_CHECKING:
    from ._types import JSON, ExecutionId, JobId


class Sink(Protocol):
    """Where a context sends what the task reports (the engine's writer)."""

    def progress(self, execution_id: ExecutionId, run: int, value: float, message: str) -> None: ...

    def log(
        self,
        execution_id: ExecutionId,
        job_id: JobId,
        level: LogLevel,
        message: str,
        data: dict[str, JSON],
    ) -> None: ...


current_context: ContextVar[Context | None] = ContextVar("asyncjobs_context", default=None)
"""The context of the execution running in this task or thread (for logging capture)."""


class ExecutionLogger:
    """``ctx.log``: one method per level; ``%``-style arguments; keywords become data."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def write(
        self, level: LogLevel | str | int, message: str, *args: object, **data: object
    ) -> None:
        """Write a log line at ``level`` (a :class:`LogLevel`, its name or its number)."""
        level = LogLevel.parse(level) if not isinstance(level, LogLevel) else level
        text = str(message)
        if args:
            try:
                text = text % args
            except (TypeError, ValueError):
                text = " ".join([text, *map(str, args)])
        self._ctx._write_log(level, text, _json_data(data))

    def trace(self, message: str, *args: object, **data: object) -> None:
        self.write(LogLevel.TRACE, message, *args, **data)

    def debug(self, message: str, *args: object, **data: object) -> None:
        self.write(LogLevel.DEBUG, message, *args, **data)

    def info(self, message: str, *args: object, **data: object) -> None:
        self.write(LogLevel.INFO, message, *args, **data)

    def warn(self, message: str, *args: object, **data: object) -> None:
        self.write(LogLevel.WARN, message, *args, **data)

    warning = warn

    def error(self, message: str, *args: object, **data: object) -> None:
        self.write(LogLevel.ERROR, message, *args, **data)

    def fatal(self, message: str, *args: object, **data: object) -> None:
        self.write(LogLevel.FATAL, message, *args, **data)

    def panic(self, message: str, *args: object, **data: object) -> None:
        self.write(LogLevel.PANIC, message, *args, **data)


def _json_data(data: dict[str, object]) -> dict[str, JSON]:
    out: dict[str, JSON] = {}
    for key, value in data.items():
        try:
            out[key] = to_json(value, path=key)
        except TypeError:
            out[key] = repr(value)
    return out


class SharedData(MutableMapping[str, "JSON"]):
    """``ctx.shared``: the job's shared JSON object; what the task writes is kept with its outcome.

    Values must be JSON (or convertible: datetime, UUID, Enum, dataclass...); deleting a key
    stores ``None`` for it.
    """

    __slots__ = ("_data", "written")

    def __init__(self, data: dict[str, JSON]) -> None:
        self._data = data
        self.written: dict[str, JSON] = {}

    def __getitem__(self, key: str) -> JSON:
        return self._data[key]

    def __setitem__(self, key: str, value: object) -> None:
        if not isinstance(key, str):
            raise TypeError(f"shared data keys must be strings, got {key!r}")
        encoded = to_json(value, path=f"shared[{key!r}]")
        self._data[key] = encoded
        self.written[key] = encoded

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self.written[key] = None

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"SharedData({self._data!r})"


class Context:
    """The execution context a task receives in a parameter annotated ``aj.Context``.

    :ivar job_id: the job's id
    :ivar execution_id: this execution's id
    :ivar attempt: 1 for the first attempt, 2 for the first retry, ...
    :ivar task: the task's registered name
    :ivar log: the execution's logger (``ctx.log.info("...")``)
    :ivar shared: the job's shared data
    """

    __slots__ = (
        "_run",
        "_sink",
        "attempt",
        "execution_id",
        "job_id",
        "last_progress",
        "log",
        "shared",
        "task",
    )

    def __init__(
        self,
        *,
        sink: Sink,
        job_id: JobId,
        execution_id: ExecutionId,
        run: int,
        attempt: int,
        task: str,
        shared: dict[str, JSON],
    ) -> None:
        self._sink = sink
        self._run = run
        self.job_id = job_id
        self.execution_id = execution_id
        self.attempt = attempt
        self.task = task
        self.shared = SharedData(shared)
        self.log = ExecutionLogger(self)
        self.last_progress: tuple[float, str] | None = None

    def progress(self, value: float, message: str = "") -> None:
        """Report progress from 0 to 100, with an optional message; never blocks.

        :raises ValueError: if ``value`` is not a number from 0 to 100 (nothing is recorded)
        """
        value, message = check_progress(value, message)
        self.last_progress = (value, message)
        self._sink.progress(self.execution_id, self._run, value, message)

    def _write_log(self, level: LogLevel, message: str, data: dict[str, JSON]) -> None:
        self._sink.log(self.execution_id, self.job_id, level, message, data)

    def __repr__(self) -> str:
        return f"<Context job={self.job_id} execution={self.execution_id} attempt={self.attempt}>"


class CaptureHandler(logging.Handler):
    """Routes stdlib logging records made inside an execution into that execution's logs.

    Records pass the loggers' own levels first (the root logger is at WARNING unless the
    application configures it); asyncjobs' own loggers are never captured.
    """

    def emit(self, record: logging.LogRecord) -> None:
        ctx = current_context.get()
        if ctx is None or record.name.startswith("asyncjobs"):
            return
        try:
            message = record.getMessage()
            data: dict[str, JSON] = {"logger": record.name}
            if record.exc_info:
                data["exception"] = _FORMATTER.formatException(record.exc_info)
            ctx._write_log(_level_of(record.levelno), message, data)
        except Exception:
            self.handleError(record)


_FORMATTER = logging.Formatter()


def _level_of(levelno: int) -> LogLevel:
    for level in (LogLevel.FATAL, LogLevel.ERROR, LogLevel.WARN, LogLevel.INFO, LogLevel.DEBUG):
        if levelno >= level:
            return level
    return LogLevel.TRACE


for _cls in (Context, ExecutionLogger, SharedData):
    _cls.__module__ = "asyncjobs"
