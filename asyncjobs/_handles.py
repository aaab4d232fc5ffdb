"""The job handle: a job's id and last snapshot, bound to its runtime."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Self

from ._backoff import Backoff, as_backoff
from ._errors import (
    ExecutionCancelled,
    ExecutionFailed,
    ExecutionTimeout,
    InvalidArguments,
    InvalidSchedule,
)
from ._models import Execution, Job as JobRecord, StepSpec
from ._schedules import Cron, Daemon, Every, Once, Schedule
from ._states import TERMINAL, ExecutionStatus, JobStatus
from ._tasks import (
    Command,
    check_category,
    check_mode,
    check_name,
    child_target,
    encode_arguments,
)
from ._types import JSON, ExecutionId, JobId, as_seconds, check_int, new_id
from .stores.base import ExecutionQuery, NewExecution, NewJob

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from ._runtime import Runtime


class Job:
    """A job: build it with :meth:`Runtime.job` and :meth:`add`, then :meth:`push` it.

    Handles returned by ``rt.once(...)`` or ``rt.jobs.get(id)`` are already pushed. The
    attributes (``status``, ``shared``, ...) are the snapshot taken when the handle was made
    or last refreshed (:meth:`refresh`).
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        record: JobRecord | None = None,
        name: str | None = None,
        schedule: Schedule | None = None,
        category: str | None = None,
        priority: int | None = None,
        shared: Mapping[str, object] | None = None,
        key: str | None = None,
    ) -> None:
        self._rt = runtime
        self._record = record
        self._name = None if name is None else check_name("job", name)
        self._schedule: Schedule | None = _check_schedule(schedule)
        self._category = None if category is None else check_category(category)
        self._priority = None if priority is None else check_int("priority", priority)
        if key is not None and (not isinstance(key, str) or not key):
            raise ValueError(f"key must be a non-empty string, got {key!r}")
        self._key = key
        self._shared = _shared_json(shared)
        self._steps: list[tuple[StepSpec, str]] = []  # (spec, task category)
        self._latest: tuple[Execution, ...] | None = None  # last read; for _repr_html_

    # -- building ------------------------------------------------------------------------

    def add(
        self,
        task: Callable[..., Any] | str | Command,
        /,
        *args: object,
        kwargs: Mapping[str, object] | None = None,
        mode: str | None = None,
        timeout: float | timedelta | None = None,
        retries: int | None = None,
        backoff: Backoff | float | timedelta | None = None,
    ) -> Self:
        """Add a step: ``task`` (a registered function or name, or an :class:`aj.Command`)
        with its arguments.

        :raises UnknownTask: if the task is not registered on the runtime
        :raises InvalidArguments: if the arguments do not bind to its signature or are not
            JSON, or a process child could not import the task
        """
        if self._record is not None:
            raise RuntimeError(f"job {self.id} was pushed already; build a new job to add steps")
        if timeout is not None:
            timeout = as_seconds(timeout, name="timeout", allow_zero=False)
        retries = None if retries is None else check_int("retries", retries, minimum=0)
        step_backoff = None if backoff is None else as_backoff(backoff)
        if step_backoff is not None and step_backoff.kind == "custom":
            # A step is stored as JSON and a function is not: it would be dropped silently,
            # and the retry would wait the task's default instead.
            raise ValueError(
                "backoff for one job cannot be a function: the job is stored and a function "
                "cannot be; give seconds, a timedelta or an aj.Backoff, or make the function "
                f"the task's default with @rt.task(backoff=...); got {backoff!r}"
            )
        if isinstance(task, Command):
            if args or kwargs:
                raise InvalidArguments(
                    task.name, None, "a command takes no arguments: put them in argv"
                )
            spec = StepSpec(
                task=task.name,
                mode="process",
                timeout=timeout or as_seconds(task.timeout, name="timeout", allow_zero=False),
                retries=retries or 0,
                backoff=None if step_backoff is None else step_backoff.to_json(),
                command=tuple(task.argv),
                env=None if task.env is None else dict(task.env),
                cwd=task.cwd,
            )
            self._steps.append((spec, "default"))
            return self
        definition = self._rt._registry.resolve(task)
        json_args, json_kwargs = encode_arguments(definition, args, kwargs)
        chosen_backoff = definition.backoff if step_backoff is None else step_backoff
        chosen_mode = check_mode(mode) if mode is not None else definition.mode
        spec = StepSpec(
            task=definition.name,
            args=json_args,
            kwargs=json_kwargs,
            mode=chosen_mode,
            timeout=definition.timeout if timeout is None else timeout,
            retries=definition.retries if retries is None else retries,
            backoff=None if chosen_backoff is None else chosen_backoff.to_json(),
            on_worker_lost=definition.on_worker_lost,
            crash_limit=definition.crash_limit,
            concurrency=definition.concurrency,
            target=child_target(definition) if chosen_mode == "process" else None,
            stand_in=definition.stand_in,
        )
        self._steps.append((spec, definition.category))
        if self._priority is None:
            self._priority = definition.priority
        return self

    async def push(self) -> Self:
        """Store the job; once this returns, the job survives a crash of this process.

        If the job has a ``key`` and a live job has the same key, this handle becomes that job.

        :raises InvalidArguments: if the job has no step
        """
        if self._record is not None:
            return self
        if not self._steps:
            job = "a job" if self._name is None else f"job {self._name!r}"
            problem = "needs at least one step: add one with job.add(task, ...) before push()"
            error = InvalidArguments(self._name or "job", None, problem)
            # The error is about the job, not a task: say so (the type stays the documented one).
            error.args = (f"{job} {problem}",)
            raise error
        now = self._rt._clock.time()
        first = self._steps[0][0]
        job_id = JobId(new_id())
        schedule = self._schedule or Once()
        fire = schedule.first_fire(now)
        priority = self._priority or 0
        # One-off jobs and daemons start with their executions; cron and interval jobs get
        # theirs from the scheduler at each tick.
        starts_now = isinstance(schedule, Once | Daemon)
        new_job = NewJob(
            id=job_id,
            name=self._name or first.task,
            category=self._category or self._steps[0][1],
            schedule=schedule.to_json(),
            steps=tuple(spec for spec, _ in self._steps),
            priority=priority,
            shared=self._shared,
            key=self._key,
            created_at=now,
            next_fire_at=None if starts_now else fire,
            state={"restarts": 0, "quick": 0} if isinstance(schedule, Daemon) else {},
        )
        executions = [
            NewExecution(
                id=ExecutionId(new_id()),
                job_id=job_id,
                step=index,
                spec=spec,
                priority=priority,
                scheduled_for=max(fire, now),
                created_at=now,
            )
            for index, (spec, _) in enumerate(self._steps)
            if starts_now
        ]
        self._record = await self._rt._add_job(new_job, executions, due=fire)
        return self

    # -- reading -------------------------------------------------------------------------

    @property
    def record(self) -> JobRecord:
        if self._record is None:
            raise RuntimeError("this job has not been pushed yet: await job.push()")
        return self._record

    @property
    def id(self) -> JobId:
        return self.record.id

    @property
    def name(self) -> str:
        return self.record.name if self._record else (self._name or "")

    @property
    def status(self) -> JobStatus:
        return self.record.status

    @property
    def category(self) -> str:
        return self.record.category

    @property
    def shared(self) -> dict[str, JSON]:
        return self.record.shared

    @property
    def key(self) -> str | None:
        return self.record.key

    @property
    def priority(self) -> int:
        return self.record.priority

    @property
    def created_at(self) -> datetime:
        return self.record.created_at

    async def refresh(self) -> Self:
        """Re-read the job from the store."""
        self._record = await self._rt._require_store().get_job(self.id)
        return self

    async def executions(self) -> list[Execution]:
        """Return the job's executions, oldest first (at most the newest 1,000)."""
        page = await self._rt._require_store().list_executions(
            ExecutionQuery(job_id=self.id, page_size=1000)
        )
        return list(reversed(page.items))

    async def wait(self, timeout: float | None = None) -> Execution:
        """Wait until the job's latest firing has ended; return its last execution.

        :param timeout: seconds to wait at most (``None``: no limit)
        :raises TimeoutError: if ``timeout`` passes first
        """
        scope = nullcontext() if timeout is None else _fail_after(timeout)
        with scope:
            while True:
                armed = self._rt._changes_arm(self.id)
                latest = await self._latest_executions()
                if latest and all(e.status in TERMINAL for e in latest):
                    await self.refresh()
                    return max(latest, key=lambda e: e.step)
                await self._rt._changes_wait(armed)

    async def watch(self, timeout: float | None = None) -> None:
        """Show the job with a live progress bar per step until its latest firing ends.

        In Jupyter (or any running IPython) the bars are one output that updates in place;
        elsewhere each change is printed as text. Returns nothing, so a cell shows the bars
        once; :meth:`wait` or :meth:`result` give the outcome afterwards. A job that has not
        fired yet is watched until its first firing ends.

        :param timeout: seconds to watch at most (``None``: no limit)
        :raises TimeoutError: if ``timeout`` passes first (the display shows the last state)
        """
        from ._display import watch

        with nullcontext() if timeout is None else _fail_after(timeout):
            await watch(self)

    async def _latest_executions(self) -> tuple[Execution, ...]:
        """Read the executions of the job's latest firing (one per step), by step."""
        page = await self._rt._require_store().list_executions(
            ExecutionQuery(job_id=self.id, page_size=len(self.record.steps))
        )
        self._latest = tuple(sorted(page.items, key=lambda e: e.step))
        return self._latest

    async def result(self, timeout: float | None = None) -> JSON:
        """Wait for the job's latest firing and return its last step's result.

        :raises ExecutionFailed: with the remote error type, message and traceback, if a step
            failed (:class:`ExecutionTimeout` if it ran past its timeout)
        :raises ExecutionCancelled: if a step was cancelled
        """
        last = await self.wait(timeout)
        page = await self._rt._require_store().list_executions(
            ExecutionQuery(job_id=self.id, page_size=len(self.record.steps))
        )
        for execution in sorted(page.items, key=lambda e: e.step):
            raise_for_status(execution)
        return last.result

    def __repr__(self) -> str:
        if self._record is None:
            return f"<Job (not pushed) name={self._name!r} steps={len(self._steps)}>"
        return f"<Job {self.id} name={self.name!r} status={self.status.value}>"

    def _repr_html_(self) -> str:
        """Jupyter: the job with a progress bar per step of its latest firing, as last read
        (by :meth:`wait`, :meth:`watch` or :meth:`result`)."""
        from ._display import esc, job_html

        if self._record is None:
            return esc(repr(self))
        return job_html(self._record, self._latest)


def raise_for_status(execution: Execution) -> None:
    """Raise the error an ended execution stands for (nothing if it completed)."""
    if execution.status == ExecutionStatus.FAILED:
        if execution.error is not None and execution.error.type == "ExecutionTimeout":
            raise ExecutionTimeout(execution)
        raise ExecutionFailed(execution)
    if execution.status == ExecutionStatus.CANCELLED:
        raise ExecutionCancelled(execution)


def _fail_after(timeout: float) -> Any:
    import anyio

    return anyio.fail_after(timeout)


def _check_schedule(schedule: object) -> Schedule | None:
    """Return ``schedule`` if it is one (or ``None``: now).

    :raises InvalidSchedule: naming the value and the schedule types
    """
    if schedule is None or isinstance(schedule, Once | Cron | Every | Daemon):
        return schedule
    hint = (
        f"; for a cron expression write schedule=aj.Cron({schedule!r})"
        if isinstance(schedule, str)
        else ""
    )
    raise InvalidSchedule(
        f"schedule must be an aj.Once, aj.Cron, aj.Every or aj.Daemon (or None for now), "
        f"got {schedule!r}{hint}"
    )


def _shared_json(shared: Mapping[str, object] | None) -> dict[str, JSON]:
    if shared is None:
        return {}
    from asyncjobs_runner._convert import to_json

    if not isinstance(shared, Mapping):
        raise ValueError(f"shared must be a mapping of JSON values, got {shared!r}")
    out: dict[str, JSON] = {}
    for key, value in shared.items():
        if not isinstance(key, str):
            raise ValueError(f"shared data keys must be strings, got {key!r}")
        out[key] = to_json(value, path=f"shared[{key!r}]")
    return out


Job.__module__ = "asyncjobs"
