"""The store contract: what every store (memory, SQLite, PostgreSQL, yours) must do.

The docstrings of :class:`Store` are the specification; ``tests/stores/test_conformance.py``
proves it against every store. Times are Unix seconds (``float``) at this layer; the query
API turns them into aware datetimes.

A store owns all persistent state: jobs, executions, their state history, progress, logs,
categories and the nodes that run executions. Every method is atomic: it happens whole or not
at all. Status changes follow :data:`asyncjobs._states.TRANSITIONS`, checked in the same
statement that writes, and every write that ends or updates a running execution is *fenced*
on the execution's ``run`` counter (incremented by each claim), so that a late finisher can
never overwrite a newer outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Self

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

    from .._models import (
        Category,
        ErrorInfo,
        Event,
        Execution,
        Job,
        LogRecord,
        Page,
        StepSpec,
        Transition,
    )
    from .._states import ExecutionStatus, JobStatus, LogLevel
    from .._types import JSON, ExecutionId, JobId

MAX_PAGE_SIZE = 1000

WORK = "asyncjobs:work"
"""Wake-up key (:meth:`Store.watch`): executions were queued or may have become claimable."""
SCHEDULE = "asyncjobs:schedule"
"""Wake-up key (:meth:`Store.watch`): a job's schedule, next fire time or status changed."""
EVERYTHING = "*"
"""Wake-up key (:meth:`Store.watch`): anything may have changed (notifications were lost)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NewJob:
    """A job to insert, with the executions its first firing creates."""

    id: JobId
    name: str
    category: str
    schedule: dict[str, JSON]
    steps: tuple[StepSpec, ...]
    priority: int
    shared: dict[str, JSON]
    key: str | None
    created_at: float
    next_fire_at: float | None = None
    state: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewExecution:
    """An execution to insert: ``queued`` if due at creation, else ``scheduled``."""

    id: ExecutionId
    job_id: JobId
    step: int
    spec: StepSpec
    priority: int
    scheduled_for: float
    created_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """A claimed execution, now ``running`` on the claiming node, with what it needs to run."""

    execution: Execution
    run: int
    spec: StepSpec
    shared: dict[str, JSON]
    schedule: dict[str, JSON] = field(default_factory=dict)
    job_state: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Finish:
    """The end of one run of an execution, written fenced on ``(execution_id, run)``.

    ``status`` is ``completed``, ``failed``, ``cancelled`` or ``retrying``. For ``retrying``,
    ``retry_at`` is when it becomes ``queued`` again, and ``new_attempt`` says whether the next
    run is a new attempt (a failure) or the same one again (released at shutdown).
    ``shared`` holds the keys of the job's shared data that the run wrote; they are merged
    into the job in the same transaction.
    """

    execution_id: ExecutionId
    run: int
    status: ExecutionStatus
    at: float
    result: JSON = None
    error: ErrorInfo | None = None
    progress: float | None = None
    progress_message: str | None = None
    retry_at: float | None = None
    new_attempt: bool = True
    shared: dict[str, JSON] | None = None
    job: JobUpdate | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobUpdate:
    """What a finish changes in its job (a daemon's restart): applied only with the finish,
    and only while the job is active or paused."""

    next_fire_at: float | None = None
    state: dict[str, JSON] | None = None
    finished: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """One firing of a job's schedule: its tick time and the executions it creates."""

    at: float
    executions: Sequence[NewExecution]


@dataclass(frozen=True, slots=True, kw_only=True)
class FireResult:
    """What :meth:`Store.fire` did: ``fired`` (with the ticks that fired), ``skipped`` (the
    ticks were recorded without executions: overlap), ``busy`` (nothing changed: the previous
    run is still live and overlap is ``queue``) or ``stale`` (another caller fired first)."""

    status: str
    fired: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressUpdate:
    """The latest progress of a running execution (fenced on ``run``)."""

    execution_id: ExecutionId
    run: int
    progress: float
    message: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class NewLog:
    """A log line to append."""

    execution_id: ExecutionId
    job_id: JobId
    at: float
    level: LogLevel
    message: str
    data: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteBatch:
    """Writes grouped into one transaction: logs first, then progress, then finishes."""

    logs: Sequence[NewLog] = ()
    progress: Sequence[ProgressUpdate] = ()
    finishes: Sequence[Finish] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeInfo:
    """A runtime that claims executions: a random id per run, where it runs, its heartbeat."""

    id: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float


def _check_text_filters(query: object, *names: str) -> None:
    """A text filter is a string or None: anything else would reach SQL and fail there.

    :raises ValueError: naming the filter and the value
    """
    for name in names:
        value = getattr(query, name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"the {name} filter must be a string, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class JobQuery:
    """Filters of :meth:`Store.list_jobs`; ``category`` includes its sub-categories."""

    status: JobStatus | None = None
    category: str | None = None
    name: str | None = None
    page: int = 1
    page_size: int = 50

    def __post_init__(self) -> None:
        _check_text_filters(self, "category", "name")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionQuery:
    """Filters of :meth:`Store.list_executions`."""

    job_id: JobId | None = None
    status: ExecutionStatus | None = None
    task: str | None = None
    page: int = 1
    page_size: int = 50

    def __post_init__(self) -> None:
        _check_text_filters(self, "job_id", "task")


@dataclass(frozen=True, slots=True, kw_only=True)
class LogQuery:
    """Filters of :meth:`Store.list_logs`; ``level`` is the minimum level."""

    execution_id: ExecutionId | None = None
    job_id: JobId | None = None
    level: LogLevel | None = None
    page: int = 1
    page_size: int = 100


class Store(Protocol):
    """Persistent state of a runtime (see the module docstring for the rules)."""

    url: str
    """The URL the store was opened from (without secrets)."""

    durable: bool
    """Whether what is written survives the process (``False`` for the memory store)."""

    async def __aenter__(self) -> Self:
        """Connect, create or migrate the schema.

        :raises SchemaVersionError: if the schema is newer than this code, or the database is
            not an asyncjobs store; the database is left untouched
        :raises StoreError: if the store cannot be opened (not a database, no access)
        """
        ...

    async def __aexit__(self, *exc_info: object) -> None:
        """Close; every write acknowledged before stays."""
        ...

    async def watch(self, callback: Callable[[frozenset[str]], None]) -> None:
        """Call ``callback(keys)``, on this event loop, when another process changes the store.

        ``keys`` says what changed: the ids of the jobs and executions whose events were
        written, :data:`WORK` (executions may be claimable), :data:`SCHEDULE` (a job's
        schedule or status changed), or :data:`EVERYTHING`. Changes made through this store
        object are not reported: its caller knows them. Delivery is best effort (the engine
        still polls every ``poll_interval``); watching ends when the store is closed. A store
        that cannot know (memory: no other process; SQLite: no notifications) does nothing.

        :raises StoreError: if the store cannot start watching
        """
        ...

    # -- jobs ----------------------------------------------------------------------------

    async def add_job(self, job: NewJob, executions: Sequence[NewExecution]) -> tuple[Job, bool]:
        """Insert the job, its executions (with a first state event each) and its categories.

        If ``job.key`` is set and a live (active or paused) job has that key, insert nothing
        and return that job with ``False``; else return the new job with ``True``. The
        category and each of its parents (``a/b/c`` -> ``a``, ``a/b``) are created if missing.
        """
        ...

    async def add_job_and_claim(
        self,
        job: NewJob,
        executions: Sequence[NewExecution],
        node: NodeInfo,
        limit: int,
        at: float,
        *,
        tasks: Collection[str] | None = None,
    ) -> tuple[Job, bool, list[Claim]]:
        """:meth:`add_job`, then :meth:`claim` with the same arguments, in one transaction.

        The runtime that pushes a job which it can run itself saves the claim's round trip.
        The claim follows every rule of :meth:`claim` (claim order, concurrency limits,
        ``tasks``): it takes the new executions only if they are next in line. If the key
        found a live job, nothing is inserted and nothing is claimed.
        """
        ...

    async def add_executions(
        self, job_id: JobId, executions: Sequence[NewExecution], at: float
    ) -> list[Execution]:
        """Insert executions (with a first state event each) into an existing live job.

        Atomic with the check: the job is ``active`` or ``paused`` (a paused job's new
        executions wait for it to resume). Returns the new executions, in the given order.

        :raises JobNotFound: if there is no such job
        :raises ValueError: naming the job and its status if it is finished, stopped or
            deleted; nothing is inserted
        """
        ...

    async def get_job(self, job_id: JobId) -> Job:
        """Return the job.

        :raises JobNotFound: if there is no such job
        """
        ...

    async def list_jobs(self, query: JobQuery) -> Page[Job]:
        """Return one page of the matching jobs, newest first."""
        ...

    async def count_jobs(self, query: JobQuery) -> int:
        """Return how many jobs match (``page`` and ``page_size`` are ignored)."""
        ...

    async def set_job_status(
        self, job_id: JobId, status: JobStatus, at: float
    ) -> tuple[Job, list[ExecutionId]]:
        """Move the job to ``status`` and return it with the ids of its running executions.

        ``paused``: only from ``active``; its waiting executions are not claimed until resumed.
        ``active`` (resume): only from ``paused``. ``stopped``: from any status but
        ``deleted``; its waiting executions are cancelled in the same transaction and its
        running ones are marked for cancellation (see :meth:`cancel_requests`).
        ``deleted``: from any status, with the effects of ``stopped``; the job stays listed
        with status ``deleted``. Setting the status a job already has changes nothing.

        :raises JobNotFound: if there is no such job
        :raises ValueError: naming both statuses if the change is not allowed
        """
        ...

    async def due_jobs(self, at: float, limit: int) -> list[Job]:
        """Return up to ``limit`` active jobs whose ``next_fire_at <= at``, earliest first."""
        ...

    async def next_fire(self) -> float | None:
        """Return the earliest ``next_fire_at`` of the active jobs, or ``None``."""
        ...

    async def fire(
        self,
        job_id: JobId,
        *,
        expected: float,
        ticks: Sequence[Tick],
        next_fire_at: float | None,
        overlap: str,
        at: float,
    ) -> FireResult:
        """Fire ``ticks`` of a job, atomically, at most once per (job, tick) across all callers.

        Nothing happens (``stale``) unless the job is active and its ``next_fire_at`` is still
        ``expected`` (to the microsecond): a caller that lost a race fires nothing. With ``overlap`` ``"skip"`` or
        ``"queue"`` and a live execution of the job, the ticks are recorded without executions
        (``skipped``) or nothing changes (``busy``). Otherwise each tick later than the job's
        ``last_fire_at`` and not fired before inserts its executions. Then ``next_fire_at``
        becomes the given value and ``last_fire_at`` the latest tick: it only moves forward.
        """
        ...

    async def purge(self, ended_before: float, logs_before: float) -> tuple[int, int]:
        """Delete what retention no longer keeps; return ``(executions, log lines)`` deleted.

        Executions that ended before ``ended_before`` go with all their events; log lines
        written before ``logs_before`` go too; so do jobs that ended (finished, stopped,
        deleted) before ``ended_before`` and have no execution left.
        """
        ...

    # -- executions ----------------------------------------------------------------------

    async def get_execution(self, execution_id: ExecutionId) -> Execution:
        """Return the execution.

        :raises ExecutionNotFound: if there is no such execution
        """
        ...

    async def list_executions(self, query: ExecutionQuery) -> Page[Execution]:
        """Return one page of the matching executions, newest first."""
        ...

    async def count_executions(self, query: ExecutionQuery) -> int:
        """Return how many executions match."""
        ...

    async def history(self, execution_id: ExecutionId) -> list[Transition]:
        """Return every status the execution took, oldest first, its first status included.

        :raises ExecutionNotFound: if there is no such execution
        """
        ...

    async def claim(
        self, node: NodeInfo, limit: int, at: float, *, tasks: Collection[str] | None = None
    ) -> list[Claim]:
        """Claim up to ``limit`` due executions for ``node``, in claim order.

        First every ``scheduled`` or ``retrying`` execution whose ``scheduled_for <= at``
        becomes ``queued``. Then up to ``limit`` ``queued`` executions of active jobs are
        claimed in order of ``priority`` (lower first), then ``scheduled_for``, then id: each
        becomes ``running`` with ``run`` incremented, ``started_at = at`` and the node's id
        and pid. No execution is claimed twice, whatever the number of claimers.

        An execution whose step has a ``concurrency`` limit is claimed only while fewer than
        that many executions of its task are running, counted across all nodes (and the
        claims being made); it is passed over, not blocking the ones behind it.

        With ``tasks``, only executions of those tasks, and command steps (which need no
        registered task), are claimed: the others stay queued for a node that knows them.
        """
        ...

    async def next_due(self) -> float | None:
        """Return the earliest ``scheduled_for`` of the waiting executions, or ``None``."""
        ...

    async def write(self, batch: WriteBatch) -> list[bool]:
        """Apply the batch in one transaction and return, per finish, whether it applied.

        Logs are appended (never fenced: they are observations). A progress update applies
        only while the execution is ``running`` with the same ``run``; it updates the
        execution and appends a progress event. Of several updates of one run in a batch,
        only the last is applied (``ProgressUpdate`` is the latest progress). A finish applies under the same fence, moves
        the execution to its status (recording the time, result or error, final progress,
        and ``ended_at`` unless it is ``retrying``), merges ``shared`` into the job, applies
        ``job`` (see :class:`JobUpdate`), and, when a one-off job has no live execution left,
        moves an active or paused job to ``finished``. A finish that does not apply changes
        nothing.
        """
        ...

    async def write_and_claim(
        self,
        batch: WriteBatch,
        node: NodeInfo,
        limit: int,
        at: float,
        *,
        tasks: Collection[str] | None = None,
    ) -> tuple[list[bool], list[Claim]]:
        """:meth:`write`, then :meth:`claim` with the same arguments, in one transaction.

        A node whose finished executions free slots hands them to the next executions in
        the transaction that ends the finished ones, saving the claim's own transaction.
        The claim follows every rule of :meth:`claim` and sees the batch's effects (a retry
        due at ``at`` may be claimed); with ``limit`` 0 nothing is claimed.
        """
        ...

    async def cancel_execution(
        self, execution_id: ExecutionId, at: float
    ) -> tuple[Execution, bool]:
        """Cancel the execution; return it and whether it is running (and so only marked).

        A waiting execution becomes ``cancelled`` at once. A running one is marked: the node
        running it sees it in :meth:`cancel_requests` and finishes it as ``cancelled``. An
        ended execution is returned unchanged.

        :raises ExecutionNotFound: if there is no such execution
        """
        ...

    async def cancel_requests(self, node_id: str) -> list[tuple[ExecutionId, int]]:
        """Return ``(execution id, run)`` of the running executions of the node marked to cancel."""
        ...

    # -- nodes ---------------------------------------------------------------------------

    async def register_node(self, node: NodeInfo) -> None:
        """Add the node (or refresh it, if its id is known)."""
        ...

    async def heartbeat(self, node_id: str, at: float) -> bool:
        """Record that the node is alive at ``at``; return ``False`` if its row is gone."""
        ...

    async def list_nodes(self) -> list[NodeInfo]:
        """Return every registered node."""
        ...

    async def record_child(
        self, execution_id: ExecutionId, run: int, pid: int, started: str | None
    ) -> None:
        """Remember the child process of a running execution (fenced on ``run``), so that
        whoever recovers the node can stop a child that outlived it."""
        ...

    async def node_children(self, node_id: str) -> list[tuple[int, str | None]]:
        """Return ``(pid, started)`` of the recorded children of the node's running
        executions."""
        ...

    async def recover_node(self, node_id: str, at: float) -> list[Execution]:
        """Take back the running executions of a dead node, then remove the node.

        Each running execution of the node is finished per its step's policy: ``cancelled``
        if it was marked to cancel; else, with ``on_worker_lost = "retry"`` and fewer crashes
        than ``crash_limit``, ``retrying`` (due at ``at``, as a new attempt); else ``failed``
        with an error of type ``WorkerLost`` that names the node. A warning log line says what
        was done. Return the executions as they are after recovery.
        """
        ...

    # -- logs, events, categories ---------------------------------------------------------

    async def list_logs(self, query: LogQuery) -> Page[LogRecord]:
        """Return one page of the matching log lines, oldest first."""
        ...

    async def events_after(
        self,
        seq: int,
        *,
        job_id: JobId | None = None,
        execution_id: ExecutionId | None = None,
        limit: int = 500,
    ) -> list[Event]:
        """Return up to ``limit`` events with a sequence number above ``seq``, in order."""
        ...

    async def last_seq(self) -> int:
        """Return the sequence number of the newest event (0 if there is none)."""
        ...

    async def list_categories(self) -> list[Category]:
        """Return every category, by name, with its count of jobs that are not deleted."""
        ...
