"""The one error hierarchy of asyncjobs.

::

    AsyncJobsError
     ├─ InvalidArguments (TypeError)      arguments that do not bind, convert, or are not JSON
     ├─ InvalidSchedule (ValueError)      a schedule that can never fire as written
     ├─ InvalidStoreURL (ValueError)      a store URL with an unknown scheme or a bad path
     ├─ UnknownTask (LookupError)         a task name that no runtime registered
     ├─ JobNotFound (LookupError)
     ├─ ExecutionNotFound (LookupError)
     ├─ ExecutionFailed                   the execution ended in ``failed``; carries the remote error
     │   └─ ExecutionTimeout (TimeoutError)
     ├─ ExecutionCancelled
     ├─ StoreError                        the store cannot be used as it is
     │   └─ SchemaVersionError            its schema is newer than this code, or not ours
     └─ ProtocolError                     a child broke protocol v1

Every message says what was wrong, with which value, and what was expected; the values
ride along as attributes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._models import ErrorInfo, Execution


class AsyncJobsError(Exception):
    """Base class of every error raised by asyncjobs."""


class InvalidArguments(AsyncJobsError, TypeError):
    """Arguments that cannot bind to a task's signature, or that are not JSON."""

    def __init__(self, task: str, parameter: str | None, problem: str) -> None:
        where = f"task {task!r}" + (f", parameter {parameter!r}" if parameter else "")
        super().__init__(f"{where}: {problem}")
        self.task = task
        self.parameter = parameter
        self.problem = problem


class InvalidSchedule(AsyncJobsError, ValueError):
    """A schedule that is malformed or can never fire."""


class InvalidStoreURL(AsyncJobsError, ValueError):
    """A store URL that names no known store."""


class UnknownTask(AsyncJobsError, LookupError):
    """A task name that is not registered on the runtime."""

    def __init__(self, name: str, known: tuple[str, ...] = ()) -> None:
        hint = f"; registered tasks: {', '.join(sorted(known))}" if known else ""
        super().__init__(f"no task named {name!r} is registered{hint}")
        self.name = name


class JobNotFound(AsyncJobsError, LookupError):
    """No job has the given id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class ExecutionNotFound(AsyncJobsError, LookupError):
    """No execution has the given id."""

    def __init__(self, execution_id: str) -> None:
        super().__init__(f"no execution with id {execution_id!r}")
        self.execution_id = execution_id


class ExecutionFailed(AsyncJobsError):
    """An execution ended in ``failed``.

    :ivar error: the recorded error: its type name, message and traceback, as the task raised it
    :ivar execution: the failed execution
    """

    def __init__(self, execution: Execution) -> None:
        error = execution.error
        what = f"{error.type}: {error.message}" if error else "no error recorded"
        super().__init__(f"execution {execution.id} failed: {what}")
        self.execution = execution
        self.error: ErrorInfo | None = error


class ExecutionTimeout(ExecutionFailed, TimeoutError):
    """An execution failed because it ran past its timeout."""


class ExecutionCancelled(AsyncJobsError):
    """An execution was cancelled before it could produce a result."""

    def __init__(self, execution: Execution) -> None:
        super().__init__(f"execution {execution.id} was cancelled")
        self.execution = execution


class StoreError(AsyncJobsError):
    """The store cannot be opened or used as it is."""


class SchemaVersionError(StoreError):
    """The store's schema is newer than this code, or the file is not an asyncjobs store."""


class ProtocolError(AsyncJobsError):
    """A process child broke protocol v1."""


for _cls in (
    AsyncJobsError,
    InvalidArguments,
    InvalidSchedule,
    InvalidStoreURL,
    UnknownTask,
    JobNotFound,
    ExecutionNotFound,
    ExecutionFailed,
    ExecutionTimeout,
    ExecutionCancelled,
    StoreError,
    SchemaVersionError,
    ProtocolError,
):
    _cls.__module__ = "asyncjobs"
