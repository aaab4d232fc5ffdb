"""asyncjobs: an asyncio-native job runtime with progress, logs and subprocess isolation.

::

    import asyncjobs as aj

    rt = aj.Runtime()                     # ./asyncjobs.db, or $ASYNCJOBS_STORE

    @rt.task
    async def fetch(ctx: aj.Context, url: str) -> int:
        ctx.progress(50, "downloading")
        return 200

    async with rt:
        job = await rt.once(fetch, "https://example.org")
        print(await job.result())

Importing asyncjobs imports no asyncio, anyio or database driver: those load when a runtime
starts.
"""

from __future__ import annotations

from ._backoff import Backoff as Backoff
from ._clock import Clock as Clock, ManualClock as ManualClock, SystemClock as SystemClock
from ._context import Context as Context
from ._errors import (
    AsyncJobsError as AsyncJobsError,
    ExecutionCancelled as ExecutionCancelled,
    ExecutionFailed as ExecutionFailed,
    ExecutionNotFound as ExecutionNotFound,
    ExecutionTimeout as ExecutionTimeout,
    InvalidArguments as InvalidArguments,
    InvalidSchedule as InvalidSchedule,
    InvalidStoreURL as InvalidStoreURL,
    JobNotFound as JobNotFound,
    ProtocolError as ProtocolError,
    SchemaVersionError as SchemaVersionError,
    StoreError as StoreError,
    UnknownTask as UnknownTask,
)
from ._handles import Job as Job
from ._models import (
    Category as Category,
    ErrorInfo as ErrorInfo,
    Event as Event,
    Execution as Execution,
    LogRecord as LogRecord,
    LogWritten as LogWritten,
    Page as Page,
    ProgressReported as ProgressReported,
    StateChanged as StateChanged,
    Transition as Transition,
)
from ._runtime import Runtime as Runtime, Statistics as Statistics
from ._schedules import Cron as Cron, Daemon as Daemon, Every as Every, Once as Once
from ._states import (
    ExecutionStatus as ExecutionStatus,
    JobStatus as JobStatus,
    LogLevel as LogLevel,
)
from ._tasks import Command as Command, ProcessLimits as ProcessLimits

__version__ = "0.1.0"

__all__ = (
    "AsyncJobsError",
    "Backoff",
    "Category",
    "Clock",
    "Command",
    "Context",
    "Cron",
    "Daemon",
    "ErrorInfo",
    "Event",
    "Every",
    "Execution",
    "ExecutionCancelled",
    "ExecutionFailed",
    "ExecutionNotFound",
    "ExecutionStatus",
    "ExecutionTimeout",
    "InvalidArguments",
    "InvalidSchedule",
    "InvalidStoreURL",
    "Job",
    "JobNotFound",
    "JobStatus",
    "LogLevel",
    "LogRecord",
    "LogWritten",
    "ManualClock",
    "Once",
    "Page",
    "ProcessLimits",
    "ProgressReported",
    "ProtocolError",
    "Runtime",
    "SchemaVersionError",
    "StateChanged",
    "Statistics",
    "StoreError",
    "SystemClock",
    "Transition",
    "UnknownTask",
    "__version__",
)
