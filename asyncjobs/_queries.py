"""The query API: ``rt.jobs``, ``rt.executions``, ``rt.logs``, ``rt.categories``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._handles import Job
from ._models import Category, Execution, LogRecord, Page, Transition
from ._states import TERMINAL, ExecutionStatus, JobStatus, LogLevel
from .stores.base import ExecutionQuery, JobQuery, LogQuery

if TYPE_CHECKING:
    import builtins

    from ._runtime import Runtime
    from ._types import ExecutionId, JobId


def _job_status(value: str | JobStatus | None) -> JobStatus | None:
    if value is None:
        return None
    try:
        return JobStatus(value)
    except ValueError:
        known = ", ".join(s.value for s in JobStatus)
        raise ValueError(f"unknown job status {value!r}; expected one of {known}") from None


def _execution_status(value: str | ExecutionStatus | None) -> ExecutionStatus | None:
    if value is None:
        return None
    try:
        return ExecutionStatus(value)
    except ValueError:
        known = ", ".join(s.value for s in ExecutionStatus)
        raise ValueError(f"unknown execution status {value!r}; expected one of {known}") from None


class JobsAPI:
    """``rt.jobs``: read jobs and change their status."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    async def get(self, job_id: str) -> Job:
        """Return the job.

        :raises JobNotFound: if there is no job with that id
        """
        record = await self._rt._require_store().get_job(_job_id(job_id))
        return Job(self._rt, record=record)

    async def list(
        self,
        *,
        page: int = 1,
        page_size: int = 50,
        status: str | JobStatus | None = None,
        category: str | None = None,
        name: str | None = None,
    ) -> Page[Job]:
        """Return one page of jobs, newest first; ``category`` includes its sub-categories."""
        result = await self._rt._require_store().list_jobs(
            JobQuery(
                status=_job_status(status),
                category=category,
                name=name,
                page=page,
                page_size=page_size,
            )
        )
        return Page(
            items=tuple(Job(self._rt, record=r) for r in result.items),
            page=result.page,
            page_size=result.page_size,
            total=result.total,
        )

    async def count(
        self,
        *,
        status: str | JobStatus | None = None,
        category: str | None = None,
        name: str | None = None,
    ) -> int:
        """Return how many jobs match the filters."""
        return await self._rt._require_store().count_jobs(
            JobQuery(status=_job_status(status), category=category, name=name)
        )

    async def trigger(self, job_id: str) -> builtins.list[Execution]:
        """Run the job now, besides its schedule, and return the new executions.

        One execution per step, queued now with the job's priority, as a firing of its
        schedule would make; the schedule itself does not move (a cron job still fires at its
        next tick). A paused job's executions wait until it resumes.

        :raises JobNotFound: if there is no job with that id
        :raises ValueError: naming the status, if the job is finished, stopped or deleted
            (only a live job runs again), or if it is a daemon (it always runs: pause and
            resume it to restart it)
        """
        from ._engine.scheduler import executions_for

        rt = self._rt
        store = rt._require_store()
        record = await store.get_job(_job_id(job_id))
        if record.schedule.get("kind") == "daemon":
            raise ValueError(
                f"job {record.id!r} is a daemon, which always runs and cannot be triggered; "
                "pause and resume it to restart it"
            )
        now = rt._clock.time()
        executions = await store.add_executions(record.id, executions_for(record, now, now), now)
        rt._work_added()
        rt._notify({record.id})
        return executions

    async def pause(self, job_id: str) -> Job:
        """Pause an active job: no new firing, and its waiting executions are not started
        until it resumes. A daemon's running execution is cancelled (resume restarts it)."""
        job = await self._set(job_id, JobStatus.PAUSED)
        if job.record.schedule.get("kind") == "daemon":
            live = await self._rt._require_store().list_executions(
                ExecutionQuery(job_id=job.id, status=ExecutionStatus.RUNNING, page_size=100)
            )
            for execution in live.items:
                await self._rt.executions.cancel(execution.id)
        return job

    async def resume(self, job_id: str) -> Job:
        """Resume a paused job."""
        return await self._set(job_id, JobStatus.ACTIVE)

    async def stop(self, job_id: str) -> Job:
        """Stop the job and cancel all its live executions (running ones included)."""
        return await self._set(job_id, JobStatus.STOPPED)

    async def destroy(self, job_id: str) -> Job:
        """Stop the job and mark it deleted (its history stays readable)."""
        return await self._set(job_id, JobStatus.DELETED)

    async def _set(self, job_id: str, status: JobStatus) -> Job:
        rt = self._rt
        record, running = await rt._require_store().set_job_status(
            _job_id(job_id), status, rt._clock.time()
        )
        for execution_id in running:
            await rt._cancel_local(execution_id)
        rt._notify({record.id})
        if status == JobStatus.ACTIVE:
            rt._work_added(schedule=True)  # a resumed schedule or daemon fires again
        return Job(rt, record=record)


class ExecutionsAPI:
    """``rt.executions``: read executions, their history, and cancel them."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    async def get(self, execution_id: str) -> Execution:
        """Return the execution.

        :raises ExecutionNotFound: if there is no execution with that id
        """
        return await self._rt._require_store().get_execution(_execution_id(execution_id))

    async def list(
        self,
        *,
        job_id: str | None = None,
        status: str | ExecutionStatus | None = None,
        task: str | None = None,
        page: int = 1,
        page_size: int = 50,
    ) -> Page[Execution]:
        """Return one page of executions, newest first."""
        return await self._rt._require_store().list_executions(
            ExecutionQuery(
                job_id=None if job_id is None else _job_id(job_id),
                status=_execution_status(status),
                task=task,
                page=page,
                page_size=page_size,
            )
        )

    async def count(
        self,
        *,
        job_id: str | None = None,
        status: str | ExecutionStatus | None = None,
        task: str | None = None,
    ) -> int:
        """Return how many executions match the filters."""
        return await self._rt._require_store().count_executions(
            ExecutionQuery(
                job_id=None if job_id is None else _job_id(job_id),
                status=_execution_status(status),
                task=task,
            )
        )

    async def history(self, execution_id: str) -> builtins.list[Transition]:
        """Return every status the execution took with its time: ``[(status, at), ...]``."""
        return await self._rt._require_store().history(_execution_id(execution_id))

    async def cancel(self, execution_id: str) -> Execution:
        """Cancel a waiting or running execution and return it.

        A waiting execution is cancelled at once. A running one is cancelled where it runs:
        here, this returns once it has ended; on another node, within about a second.
        """
        rt = self._rt
        store = rt._require_store()
        execution, running = await store.cancel_execution(
            _execution_id(execution_id), rt._clock.time()
        )
        if running and await rt._cancel_local(execution.id):
            execution = await store.get_execution(execution.id)
        if execution.status in TERMINAL:
            rt._notify({execution.job_id, execution.id})
        return execution


class LogsAPI:
    """``rt.logs``: read executions' log lines."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    async def list(
        self,
        *,
        execution_id: str | None = None,
        job_id: str | None = None,
        level: str | int | LogLevel | None = None,
        page: int = 1,
        page_size: int = 100,
    ) -> Page[LogRecord]:
        """Return one page of log lines, oldest first; ``level`` is the minimum level."""
        return await self._rt._require_store().list_logs(
            LogQuery(
                execution_id=None if execution_id is None else _execution_id(execution_id),
                job_id=None if job_id is None else _job_id(job_id),
                level=None if level is None else LogLevel.parse(level),
                page=page,
                page_size=page_size,
            )
        )


class CategoriesAPI:
    """``rt.categories``: the categories jobs were filed under."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    async def list(self) -> builtins.list[Category]:
        """Return every category with its number of jobs (deleted ones not counted)."""
        return await self._rt._require_store().list_categories()


def _job_id(value: str) -> JobId:
    if not isinstance(value, str) or not value:
        raise ValueError(f"a job id must be a non-empty string, got {value!r}")
    return value  # type: ignore[return-value]


def _execution_id(value: str) -> ExecutionId:
    if not isinstance(value, str) or not value:
        raise ValueError(f"an execution id must be a non-empty string, got {value!r}")
    return value  # type: ignore[return-value]
