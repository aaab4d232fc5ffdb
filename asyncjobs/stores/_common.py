"""Rules that every store applies the same way, written once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._models import ErrorInfo, StepSpec
from .._states import ExecutionStatus, JobStatus
from .base import MAX_PAGE_SIZE

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
