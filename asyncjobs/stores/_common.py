"""Rules that every store applies the same way, written once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from .._models import (
    ErrorInfo,
    Event,
    Execution,
    Job,
    LogWritten,
    ProgressReported,
    StateChanged,
    StepSpec,
)
from .._states import ExecutionStatus, JobStatus, LogLevel, check_transition
from .._types import MAX_PAGE, to_datetime
from .base import MAX_PAGE_SIZE, Claim, Finish, NewJob

if TYPE_CHECKING:
    from collections.abc import Mapping

_JOB_MOVES: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PAUSED: frozenset({JobStatus.ACTIVE}),
    JobStatus.ACTIVE: frozenset({JobStatus.PAUSED}),
    JobStatus.STOPPED: frozenset(
        {JobStatus.ACTIVE, JobStatus.PAUSED, JobStatus.FINISHED, JobStatus.STOPPED}
    ),
    JobStatus.DELETED: frozenset(JobStatus),
    JobStatus.FINISHED: frozenset({JobStatus.ACTIVE, JobStatus.PAUSED}),
}


def check_job_move(job_id: str, src: JobStatus, to: JobStatus) -> bool:
    """Return whether ``src -> to`` changes anything; raise if it is not allowed.

    :raises ValueError: naming the job and both statuses
    """
    if src == to:
        return False
    if src not in _JOB_MOVES[to]:
        raise ValueError(f"job {job_id!r} is {src.value!r} and cannot become {to.value!r}")
    return True


def check_live_job(job_id: str, status: JobStatus) -> None:
    """Refuse new executions for a job that is not live (active or paused).

    :raises ValueError: naming the job and its status
    """
    if status not in (JobStatus.ACTIVE, JobStatus.PAUSED):
        raise ValueError(
            f"job {job_id!r} is {status.value!r}; only an active or paused job can get "
            "new executions"
        )


def category_chain(category: str) -> list[str]:
    """Return the category and its parents: ``"a/b/c"`` -> ``["a", "a/b", "a/b/c"]``."""
    parts = category.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def page_bounds(page: int, page_size: int) -> tuple[int, int]:
    """Return ``(limit, offset)`` for a 1-based page.

    :raises ValueError: naming the value if the page or page size is out of range
    """
    if not isinstance(page, int) or isinstance(page, bool) or page < 1:
        raise ValueError(f"page must be an integer >= 1, got {page!r}")
    if page > MAX_PAGE:
        # The offset must stay far from every store's integer limit (SQLite's, asyncpg's).
        raise ValueError(f"page must be at most {MAX_PAGE}, got {page!r}")
    if not isinstance(page_size, int) or isinstance(page_size, bool):
        raise ValueError(f"page_size must be an integer, got {page_size!r}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size!r}")
    return page_size, (page - 1) * page_size


def lost_worker_outcome(
    spec: StepSpec, crashes: int, cancel_requested: bool, node_id: str
) -> tuple[ExecutionStatus, ErrorInfo | None, str]:
    """Decide what becomes of a running execution whose node died.

    ``crashes`` counts this crash. Return the status, the error to record (if it fails) and
    the warning to log.
    """
    if cancel_requested:
        return ExecutionStatus.CANCELLED, None, f"node {node_id} died; the execution was cancelled"
    if spec.on_worker_lost == "retry" and crashes <= spec.crash_limit:
        return (
            ExecutionStatus.RETRYING,
            None,
            (
                f"node {node_id} died while running this execution; re-queued "
                f"(crash {crashes} of at most {spec.crash_limit})"
            ),
        )
    why = (
        f"after {crashes} crashes (crash_limit={spec.crash_limit})"
        if spec.on_worker_lost == "retry"
        else 'and on_worker_lost="fail"'
    )
    error = ErrorInfo(
        type="WorkerLost",
        message=f"the worker running this execution died (node {node_id}) {why}",
    )
    return ExecutionStatus.FAILED, error, error.message


def schedule_kind(schedule: Mapping[str, object]) -> str:
    """Return the kind of a stored schedule (``"once"``, ...)."""
    return str(schedule.get("kind", "once"))


# -- rows: the SQL stores select the same columns in the same order --------------------------

Row = Sequence[Any]
"""A row as both drivers give it (``sqlite3.Row``, ``asyncpg.Record``): read by index."""


def dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def loads(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def dt(seconds: float) -> Any:
    """Return the aware datetime of a time that is never null."""
    return to_datetime(seconds)


def execution_from_row(row: Row, spec: StepSpec | None = None) -> Execution:
    """Return the execution of a row of ``_EXEC_COLUMNS`` (``spec``: its column, decoded)."""
    if spec is None:
        spec = StepSpec.from_json(loads(row[3]))
    error = loads(row[10])
    return Execution(
        id=row[0],
        job_id=row[1],
        step=row[2],
        task=spec.task,
        args=spec.args,
        kwargs=spec.kwargs,
        status=ExecutionStatus(row[4]),
        priority=row[5],
        attempt=row[6],
        progress=row[7],
        progress_message=row[8],
        result=loads(row[9]),
        error=None if error is None else ErrorInfo.from_json(error),
        created_at=dt(row[11]),
        scheduled_for=dt(row[12]),
        started_at=to_datetime(row[13]),
        ended_at=to_datetime(row[14]),
        node=row[15],
        pid=row[16],
    )


FinishRow = tuple[str, int, str, str | None, str | None, float | None, str | None,
                  float | None, float | None, int]  # fmt: skip
"""What a finish writes to its execution: ``id, run, status, result, error, progress,
progress_message, ended_at, retry_at, attempts added`` (``result`` and ``error`` as JSON
text, ``retry_at`` the new ``scheduled_for`` of a retry)."""


def finish_rows(finishes: Sequence[Finish]) -> list[FinishRow]:
    """Return the rows of a batch's finishes, checked, one per run: a run named twice in one
    batch is ended by its first finish only, as one statement per finish would do."""
    rows: dict[tuple[str, int], FinishRow] = {}
    for finish in finishes:
        check_transition(ExecutionStatus.RUNNING, finish.status)
        if (finish.execution_id, finish.run) in rows:
            continue
        retrying = finish.status == ExecutionStatus.RETRYING
        rows[finish.execution_id, finish.run] = (
            finish.execution_id,
            finish.run,
            finish.status.value,
            None if finish.result is None else dumps(finish.result),
            None if finish.error is None else dumps(finish.error.to_json()),
            finish.progress,
            finish.progress_message,
            None if retrying else finish.at,
            (finish.retry_at if finish.retry_at is not None else finish.at) if retrying else None,
            1 if retrying and finish.new_attempt else 0,
        )
    return list(rows.values())


def claims_from_rows(rows: Sequence[Row], jobs: Mapping[str, tuple[Any, Any, Any]]) -> list[Claim]:
    """Return the claims of claimed rows (``_EXEC_COLUMNS`` then ``run``), in their order;
    ``jobs`` maps each job id to its decoded (shared, schedule, state)."""
    claims = []
    for row in rows:
        spec = StepSpec.from_json(loads(row[3]))  # once: a claim is on the hot path
        shared, schedule, state = jobs[row[1]]
        claims.append(
            Claim(
                execution=execution_from_row(row, spec),
                run=row[17],
                spec=spec,
                shared=shared,
                schedule=schedule,
                job_state=state,
            )
        )
    return claims


def job_documents(job: NewJob) -> tuple[str, str, str, str]:
    """A new job's JSON columns as text: schedule, steps, shared, state."""
    return (
        dumps(job.schedule),
        dumps([step.to_json() for step in job.steps]),
        dumps(job.shared),
        dumps(job.state),
    )


def job_from_new(job: NewJob) -> Job:
    """The job as a store holds it once ``job`` is inserted (no JSON round trip: the values
    are the handle's, already JSON)."""
    created = dt(job.created_at)
    return Job(
        id=job.id,
        name=job.name,
        category=job.category,
        status=JobStatus.ACTIVE,
        schedule=job.schedule,
        steps=job.steps,
        priority=job.priority,
        shared=dict(job.shared),
        key=job.key,
        created_at=created,
        updated_at=created,
        next_fire_at=to_datetime(job.next_fire_at),
        state=dict(job.state),
    )


def job_from_row(row: Row) -> Job:
    return Job(
        id=row[0],
        name=row[1],
        category=row[2],
        status=JobStatus(row[3]),
        schedule=loads(row[4]),
        steps=tuple(StepSpec.from_json(step) for step in loads(row[5])),
        priority=row[6],
        shared=loads(row[7]),
        key=row[8],
        created_at=dt(row[9]),
        updated_at=dt(row[10]),
        next_fire_at=to_datetime(row[11]),
        last_fire_at=to_datetime(row[12]),
        state=loads(row[13]),
    )


def event_from_row(row: Row) -> Event:
    seq, at, kind, job_id, execution_id = row[:5]
    if kind == "state":
        return StateChanged(
            seq=seq,
            at=dt(at),
            job_id=job_id,
            execution_id=execution_id,
            status=ExecutionStatus(row[5]),
        )
    if kind == "progress":
        return ProgressReported(
            seq=seq,
            at=dt(at),
            job_id=job_id,
            execution_id=execution_id,
            progress=row[6],
            message=row[8] or "",
        )
    return LogWritten(
        seq=seq,
        at=dt(at),
        job_id=job_id,
        execution_id=execution_id,
        level=LogLevel(row[7]),
        message=row[8] or "",
        data=loads(row[9]) or {},
    )
