"""The memory store: the reference implementation of :class:`~asyncjobs.stores.base.Store`.

Everything lives in this process's dicts and heaps and is lost when it exits: it is **not
durable**, and meant for tests, notebooks and throw-away work. It is the executable statement
of the contract, not a mock: every other store must behave as it does.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Self

from .._errors import ExecutionNotFound, JobNotFound
from .._models import (
    Category,
    ErrorInfo,
    Event,
    Execution,
    Job,
    LogRecord,
    LogWritten,
    Page,
    StepSpec,
    Transition,
)
from .._states import (
    TERMINAL,
    WAITING,
    ExecutionStatus,
    JobStatus,
    LogLevel,
    check_transition,
)
from .._types import to_datetime
from . import _common
from .base import (
    Claim,
    ExecutionQuery,
    FireResult,
    JobQuery,
    JobUpdate,
    LogQuery,
    NewExecution,
    NewJob,
    NewLog,
    NodeInfo,
    Tick,
    WriteBatch,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence
    from datetime import datetime

    from .._types import JSON, ExecutionId, JobId

_S = ExecutionStatus
_EventRow = tuple[
    int, float, str, str, str | None, str | None, float | None, int | None, str | None, str | None
]
"""An event as the SQL stores keep it (``seq, at, kind, job_id, execution_id, status,
progress, level, message, data``, ``data`` as JSON text), made an :class:`Event` when read
(``_common.event_from_row``). A tuple of strings and numbers is one object the cyclic
garbage collector stops walking after its first look; an event object would be walked at
every full collection, for as long as the store keeps it."""


@dataclass(slots=True, kw_only=True)
class _Exec:
    id: ExecutionId
    job_id: JobId
    step: int
    spec: StepSpec
    status: ExecutionStatus
    priority: int
    created_at: float
    scheduled_for: float
    attempt: int = 1
    run: int = 0
    crashes: int = 0
    progress: float = 0.0
    progress_message: str = ""
    result: JSON = None
    error: ErrorInfo | None = None
    started_at: float | None = None
    ended_at: float | None = None
    node: str | None = None
    pid: int | None = None
    child: tuple[int, str | None] | None = None
    cancel_requested: bool = False
    # Its state events' rows, shared with the store's event list: history() reads them as
    # transitions.
    history: list[_EventRow] = field(default_factory=list)

    def snapshot(self) -> Execution:
        return Execution(
            id=self.id,
            job_id=self.job_id,
            step=self.step,
            task=self.spec.task,
            args=self.spec.args,
            kwargs=self.spec.kwargs,
            attempt=self.attempt,
            status=self.status,
            priority=self.priority,
            progress=self.progress,
            progress_message=self.progress_message,
            result=self.result,
            error=self.error,
            created_at=_dt(self.created_at),
            scheduled_for=_dt(self.scheduled_for),
            started_at=to_datetime(self.started_at),
            ended_at=to_datetime(self.ended_at),
            node=self.node,
            pid=self.pid,
        )


def _dt(seconds: float) -> datetime:
    value = to_datetime(seconds)
    assert value is not None
    return value


class MemoryStore:
    """A store in this process's memory (not durable)."""

    durable = False

    def __init__(self) -> None:
        self.url = "memory://"
        self._jobs: dict[JobId, Job] = {}
        self._job_order: list[JobId] = []
        self._job_execs: dict[JobId, list[ExecutionId]] = {}
        self._execs: dict[ExecutionId, _Exec] = {}
        self._queued: list[tuple[int, float, str]] = []  # heap: claim order
        self._waiting: list[tuple[float, str]] = []  # heap: (scheduled_for, id)
        self._events: list[_EventRow] = []
        self._categories: dict[str, float] = {}
        self._nodes: dict[str, NodeInfo] = {}
        self._live_keys: dict[str, JobId] = {}
        self._ticks: dict[JobId, set[float]] = {}
        self._seq = 0
        # What the scheduler and the maintenance loop ask at every poll, kept small rather
        # than found by walking every job and execution ever stored:
        self._timed: set[JobId] = set()  # jobs with a next fire time
        self._cancels: set[ExecutionId] = set()  # executions asked to cancel while running

    async def __aenter__(self) -> Self:
        return self

    async def watch(self, callback: Callable[[frozenset[str]], None]) -> None:
        return None  # no other process shares this store

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    # -- helpers -------------------------------------------------------------------------

    def _event(
        self,
        at: float,
        kind: str,
        job_id: str,
        execution_id: str | None,
        status: str | None = None,
        progress: float | None = None,
        level: int | None = None,
        message: str | None = None,
        data: str | None = None,
    ) -> _EventRow:
        self._seq += 1
        event = (self._seq, at, kind, job_id, execution_id, status, progress, level, message, data)
        self._events.append(event)
        return event

    def _state(self, row: _Exec, at: float, status: ExecutionStatus) -> None:
        row.history.append(self._event(at, "state", row.job_id, row.id, status.value))

    def _move(self, row: _Exec, to: ExecutionStatus, at: float) -> None:
        check_transition(row.status, to)
        row.status = to
        self._state(row, at, to)
        if to == _S.QUEUED:
            heapq.heappush(self._queued, (row.priority, row.scheduled_for, row.id))
        elif to in WAITING:
            heapq.heappush(self._waiting, (row.scheduled_for, row.id))

    def _log(self, row: _Exec, at: float, level: LogLevel, message: str) -> None:
        self._event(at, "log", row.job_id, row.id, level=int(level), message=message)

    def _exec(self, execution_id: ExecutionId) -> _Exec:
        row = self._execs.get(execution_id)
        if row is None:
            raise ExecutionNotFound(execution_id)
        return row

    def _set_job(self, job: Job, **changes: object) -> Job:
        updated = replace(job, **changes)  # type: ignore[arg-type]
        self._jobs[job.id] = updated
        self._index_job(updated)
        if (
            job.key is not None
            and updated.status not in (JobStatus.ACTIVE, JobStatus.PAUSED)
            and self._live_keys.get(job.key) == job.id
        ):
            del self._live_keys[job.key]
        return updated

    def _index_job(self, job: Job) -> None:
        if job.next_fire_at is not None and job.status == JobStatus.ACTIVE:
            self._timed.add(job.id)
        else:
            self._timed.discard(job.id)  # paused: back in at resume, which sets it again

    def _update_job(self, job_id: JobId, update: JobUpdate, at: float) -> None:
        job = self._jobs[job_id]
        if job.status not in (JobStatus.ACTIVE, JobStatus.PAUSED):
            return
        changes: dict[str, object] = {"next_fire_at": to_datetime(update.next_fire_at)}
        if update.state is not None:
            changes["state"] = dict(update.state)
        if update.finished:
            changes["status"] = JobStatus.FINISHED
            changes["updated_at"] = to_datetime(at)
        self._set_job(job, **changes)

    def _maybe_finish_job(self, job_id: JobId, at: float) -> None:
        job = self._jobs[job_id]
        if job.status not in (JobStatus.ACTIVE, JobStatus.PAUSED):
            return
        if _common.schedule_kind(job.schedule) != "once":
            return
        if all(self._execs[e].status in TERMINAL for e in self._job_execs[job_id]):
            self._set_job(job, status=JobStatus.FINISHED, updated_at=to_datetime(at))

    # -- jobs ----------------------------------------------------------------------------

    async def add_job(self, job: NewJob, executions: Sequence[NewExecution]) -> tuple[Job, bool]:
        if job.key is not None and job.key in self._live_keys:
            return self._jobs[self._live_keys[job.key]], False
        record = _common.job_from_new(job)
        self._jobs[job.id] = record
        self._index_job(record)
        self._job_order.append(job.id)
        self._job_execs[job.id] = []
        if job.key is not None:
            self._live_keys[job.key] = job.id
        if job.category not in self._categories:  # its parents then exist too
            for name in _common.category_chain(job.category):
                self._categories.setdefault(name, job.created_at)
        for new in executions:
            self._insert_execution(new)
        return record, True

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
        # Atomic like every method here: neither call awaits anything.
        record, created = await self.add_job(job, executions)
        claims = await self.claim(node, limit, at, tasks=tasks) if created else []
        return record, created, claims

    async def add_executions(
        self, job_id: JobId, executions: Sequence[NewExecution], at: float
    ) -> list[Execution]:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        _common.check_live_job(job_id, job.status)
        for new in executions:
            self._insert_execution(new)
        return [self._execs[new.id].snapshot() for new in executions]

    def _insert_execution(self, new: NewExecution) -> None:
        status = _S.QUEUED if new.scheduled_for <= new.created_at else _S.SCHEDULED
        row = _Exec(
            id=new.id,
            job_id=new.job_id,
            step=new.step,
            spec=new.spec,
            status=status,
            priority=new.priority,
            created_at=new.created_at,
            scheduled_for=new.scheduled_for,
        )
        self._execs[new.id] = row
        self._job_execs[new.job_id].append(new.id)
        self._state(row, new.created_at, status)
        if status == _S.QUEUED:
            heapq.heappush(self._queued, (row.priority, row.scheduled_for, row.id))
        else:
            heapq.heappush(self._waiting, (row.scheduled_for, row.id))

    async def get_job(self, job_id: JobId) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def _match_jobs(self, query: JobQuery) -> list[Job]:
        prefix = None if query.category is None else query.category + "/"
        return [
            job
            for job in map(self._jobs.__getitem__, reversed(self._job_order))
            if (query.status is None or job.status == query.status)
            and (query.name is None or job.name == query.name)
            and (
                query.category is None
                or job.category == query.category
                or job.category.startswith(prefix)  # type: ignore[arg-type]
            )
        ]

    async def list_jobs(self, query: JobQuery) -> Page[Job]:
        limit, offset = _common.page_bounds(query.page, query.page_size)
        jobs = self._match_jobs(query)
        return Page(
            items=tuple(jobs[offset : offset + limit]),
            page=query.page,
            page_size=query.page_size,
            total=len(jobs),
        )

    async def count_jobs(self, query: JobQuery) -> int:
        return len(self._match_jobs(query))

    async def set_job_status(
        self, job_id: JobId, status: JobStatus, at: float
    ) -> tuple[Job, list[ExecutionId]]:
        job = await self.get_job(job_id)
        running: list[ExecutionId] = []
        if not _common.check_job_move(job_id, job.status, status):
            return job, running
        if status in (JobStatus.STOPPED, JobStatus.DELETED):
            for eid in self._job_execs[job_id]:
                row = self._execs[eid]
                if row.status in WAITING:
                    row.ended_at = at
                    self._move(row, _S.CANCELLED, at)
                elif row.status == _S.RUNNING:
                    row.cancel_requested = True
                    self._cancels.add(eid)
                    running.append(eid)
        job = self._set_job(job, status=status, updated_at=to_datetime(at))
        return job, running

    async def due_jobs(self, at: float, limit: int) -> list[Job]:
        due = [
            job
            for job in map(self._jobs.__getitem__, self._timed)
            if job.status == JobStatus.ACTIVE
            and job.next_fire_at is not None
            and job.next_fire_at.timestamp() <= at
        ]
        due.sort(key=lambda job: (job.next_fire_at, job.id))
        return due[:limit]

    async def next_fire(self) -> float | None:
        times = [
            job.next_fire_at.timestamp()
            for job in map(self._jobs.__getitem__, self._timed)
            if job.status == JobStatus.ACTIVE and job.next_fire_at is not None
        ]
        return min(times, default=None)

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
        job = await self.get_job(job_id)
        if (
            job.status != JobStatus.ACTIVE
            or job.next_fire_at is None
            or abs(job.next_fire_at.timestamp() - expected) >= 1e-6
        ):
            return FireResult(status="stale")
        live = any(self._execs[e].status not in TERMINAL for e in self._job_execs[job_id])
        if live and overlap == "queue":
            return FireResult(status="busy")
        last = job.last_fire_at.timestamp() if job.last_fire_at else None
        fired: list[float] = []
        done = self._ticks.setdefault(job_id, set())
        for tick in ticks:
            if tick.at in done or (last is not None and tick.at <= last):
                continue
            done.add(tick.at)
            if not (live and overlap == "skip"):
                for new in tick.executions:
                    self._insert_execution(new)
                fired.append(tick.at)
        latest = max([t.at for t in ticks if last is None or t.at > last], default=last)
        self._set_job(
            job,
            next_fire_at=to_datetime(next_fire_at),
            last_fire_at=to_datetime(latest),
            updated_at=to_datetime(at),
        )
        if live and overlap == "skip":
            return FireResult(status="skipped")
        return FireResult(status="fired", fired=tuple(fired))

    async def purge(self, ended_before: float, logs_before: float) -> tuple[int, int]:
        gone = {
            row.id
            for row in self._execs.values()
            if row.status in TERMINAL and row.ended_at is not None and row.ended_at < ended_before
        }
        logs = sum(
            1 for e in self._events if e[2] == "log" and (e[4] in gone or e[1] < logs_before)
        )
        kept = [
            e
            for e in self._events
            if e[4] not in gone and not (e[2] == "log" and e[1] < logs_before)
        ]
        # Sequence numbers stay as they were: streams resume after them.
        self._events = kept
        for eid in gone:
            row = self._execs.pop(eid)
            self._job_execs[row.job_id].remove(eid)
            self._cancels.discard(eid)
        for job in list(self._jobs.values()):
            if (
                job.status in (JobStatus.FINISHED, JobStatus.STOPPED, JobStatus.DELETED)
                and job.updated_at.timestamp() < ended_before
                and not self._job_execs[job.id]
            ):
                del self._jobs[job.id], self._job_execs[job.id]
                self._job_order.remove(job.id)
                self._ticks.pop(job.id, None)
        return len(gone), logs

    # -- executions ----------------------------------------------------------------------

    async def get_execution(self, execution_id: ExecutionId) -> Execution:
        return self._exec(execution_id).snapshot()

    def _match_execs(self, query: ExecutionQuery) -> list[_Exec]:
        if query.job_id is not None:
            ids: Sequence[ExecutionId] = self._job_execs.get(query.job_id, [])
        else:
            ids = list(self._execs)
        return [
            row
            for row in map(self._execs.__getitem__, reversed(ids))
            if (query.status is None or row.status == query.status)
            and (query.task is None or row.spec.task == query.task)
        ]

    async def list_executions(self, query: ExecutionQuery) -> Page[Execution]:
        limit, offset = _common.page_bounds(query.page, query.page_size)
        rows = self._match_execs(query)
        return Page(
            items=tuple(row.snapshot() for row in rows[offset : offset + limit]),
            page=query.page,
            page_size=query.page_size,
            total=len(rows),
        )

    async def count_executions(self, query: ExecutionQuery) -> int:
        return len(self._match_execs(query))

    async def history(self, execution_id: ExecutionId) -> list[Transition]:
        rows = self._exec(execution_id).history  # state events: their status is set
        return [Transition(status=_S(str(e[5])), at=_dt(e[1])) for e in rows]

    def _promote(self, at: float) -> None:
        while self._waiting and self._waiting[0][0] <= at:
            _, eid = heapq.heappop(self._waiting)
            row = self._execs[eid]  # type: ignore[index]
            if row.status in (_S.SCHEDULED, _S.RETRYING) and row.scheduled_for <= at:
                self._move(row, _S.QUEUED, at)

    async def claim(
        self, node: NodeInfo, limit: int, at: float, *, tasks: Collection[str] | None = None
    ) -> list[Claim]:
        self._promote(at)
        claims: list[Claim] = []
        held: list[tuple[int, float, str]] = []
        running: dict[str, int] | None = None  # per task, counted at the first limited row
        while self._queued and len(claims) < limit:
            entry = heapq.heappop(self._queued)
            row = self._execs[entry[2]]  # type: ignore[index]
            if row.status != _S.QUEUED or (row.priority, row.scheduled_for) != entry[:2]:
                continue  # stale heap entry: the row moved on since it was pushed
            job = self._jobs[row.job_id]
            if job.status != JobStatus.ACTIVE:
                held.append(entry)  # paused: keep it queued for when the job resumes
                continue
            if tasks is not None and row.spec.task not in tasks and row.spec.command is None:
                held.append(entry)  # a task this node does not know: left for one that does
                continue
            cap = row.spec.concurrency
            if cap is not None:
                if running is None:
                    running = {}
                    for other in self._execs.values():
                        if other.status == _S.RUNNING:
                            task = other.spec.task
                            running[task] = running.get(task, 0) + 1
                if running.get(row.spec.task, 0) >= cap:
                    held.append(entry)  # the task is at its limit: it waits for a finish
                    continue
                running[row.spec.task] = running.get(row.spec.task, 0) + 1
            row.run += 1
            row.started_at = at
            row.ended_at = None
            row.node = node.id
            row.pid = node.pid
            row.cancel_requested = False
            self._move(row, _S.RUNNING, at)
            claims.append(
                Claim(
                    execution=row.snapshot(),
                    run=row.run,
                    spec=row.spec,
                    shared=dict(job.shared),
                    schedule=job.schedule,
                    job_state=dict(job.state),
                )
            )
        for entry in held:
            heapq.heappush(self._queued, entry)
        return claims

    async def next_due(self) -> float | None:
        while self._waiting:
            when, eid = self._waiting[0]
            row = self._execs[eid]  # type: ignore[index]
            if row.status in (_S.SCHEDULED, _S.RETRYING) and row.scheduled_for == when:
                return when
            heapq.heappop(self._waiting)
        return None

    async def write_and_claim(
        self,
        batch: WriteBatch,
        node: NodeInfo,
        limit: int,
        at: float,
        *,
        tasks: Collection[str] | None = None,
    ) -> tuple[list[bool], list[Claim]]:
        # Atomic like every method here: neither call awaits anything.
        applied = await self.write(batch)
        return applied, await self.claim(node, limit, at, tasks=tasks)

    async def write(self, batch: WriteBatch) -> list[bool]:
        for log in batch.logs:
            self._append_log(log)
        for update in {(u.execution_id, u.run): u for u in batch.progress}.values():
            row = self._execs.get(update.execution_id)
            if row is None or row.status != _S.RUNNING or row.run != update.run:
                continue
            row.progress = update.progress
            row.progress_message = update.message
            self._event(
                update.at,
                "progress",
                row.job_id,
                row.id,
                progress=update.progress,
                message=update.message,
            )
        applied: list[bool] = []
        for finish in batch.finishes:
            row = self._execs.get(finish.execution_id)
            if row is None or row.status != _S.RUNNING or row.run != finish.run:
                applied.append(False)
                continue
            if finish.progress is not None:
                row.progress = finish.progress
            if finish.progress_message is not None:
                row.progress_message = finish.progress_message
            row.result = finish.result
            row.error = finish.error
            if finish.status == _S.RETRYING:
                row.scheduled_for = finish.at if finish.retry_at is None else finish.retry_at
                if finish.new_attempt:
                    row.attempt += 1
            else:
                row.ended_at = finish.at
            if finish.shared:
                job = self._jobs[row.job_id]
                self._set_job(job, shared={**job.shared, **finish.shared})
            if finish.job is not None:
                self._update_job(row.job_id, finish.job, finish.at)
            self._move(row, finish.status, finish.at)
            self._maybe_finish_job(row.job_id, finish.at)
            applied.append(True)
        return applied

    def _append_log(self, log: NewLog) -> None:
        self._event(
            log.at,
            "log",
            log.job_id,
            log.execution_id,
            level=int(log.level),
            message=log.message,
            data=_common.dumps(log.data) if log.data else None,
        )

    async def cancel_execution(
        self, execution_id: ExecutionId, at: float
    ) -> tuple[Execution, bool]:
        row = self._exec(execution_id)
        if row.status in WAITING:
            row.ended_at = at
            self._move(row, _S.CANCELLED, at)
            self._maybe_finish_job(row.job_id, at)
        elif row.status == _S.RUNNING:
            row.cancel_requested = True
            self._cancels.add(row.id)
            return row.snapshot(), True
        return row.snapshot(), False

    async def cancel_requests(self, node_id: str) -> list[tuple[ExecutionId, int]]:
        rows = [self._execs[eid] for eid in self._cancels]
        self._cancels.difference_update(
            row.id for row in rows if row.status != _S.RUNNING or not row.cancel_requested
        )
        return [
            (row.id, row.run)
            for row in rows
            if row.status == _S.RUNNING and row.node == node_id and row.cancel_requested
        ]

    # -- nodes ---------------------------------------------------------------------------

    async def register_node(self, node: NodeInfo) -> None:
        self._nodes[node.id] = node

    async def heartbeat(self, node_id: str, at: float) -> bool:
        node = self._nodes.get(node_id)
        if node is None:
            return False
        self._nodes[node_id] = replace(node, heartbeat_at=at)
        return True

    async def list_nodes(self) -> list[NodeInfo]:
        return list(self._nodes.values())

    async def record_child(
        self, execution_id: ExecutionId, run: int, pid: int, started: str | None
    ) -> None:
        row = self._execs.get(execution_id)
        if row is not None and row.status == _S.RUNNING and row.run == run:
            row.child = (pid, started)

    async def node_children(self, node_id: str) -> list[tuple[int, str | None]]:
        return [
            row.child
            for row in self._execs.values()
            if row.status == _S.RUNNING and row.node == node_id and row.child is not None
        ]

    async def recover_node(self, node_id: str, at: float) -> list[Execution]:
        recovered: list[Execution] = []
        for row in list(self._execs.values()):
            if row.status != _S.RUNNING or row.node != node_id:
                continue
            row.crashes += 1
            status, error, message = _common.lost_worker_outcome(
                row.spec, row.crashes, row.cancel_requested, node_id
            )
            self._log(row, at, LogLevel.WARN, message)
            row.error = error
            if status == _S.RETRYING:
                row.scheduled_for = at
                row.attempt += 1
            else:
                row.ended_at = at
            self._move(row, status, at)
            self._maybe_finish_job(row.job_id, at)
            recovered.append(row.snapshot())
        self._nodes.pop(node_id, None)
        return recovered

    # -- logs, events, categories ---------------------------------------------------------

    async def list_logs(self, query: LogQuery) -> Page[LogRecord]:
        limit, offset = _common.page_bounds(query.page, query.page_size)
        level = query.level
        if query.execution_id is not None and query.execution_id not in self._execs:
            raise ExecutionNotFound(query.execution_id)
        rows = [
            e
            for e in self._events
            if e[2] == "log"
            and (query.execution_id is None or e[4] == query.execution_id)
            and (query.job_id is None or e[3] == query.job_id)
            and (level is None or (e[7] or 0) >= level)
        ]
        logs = [_common.event_from_row(row) for row in rows[offset : offset + limit]]
        return Page(
            items=tuple(
                LogRecord(
                    execution_id=e.execution_id,
                    job_id=e.job_id,
                    seq=e.seq,
                    at=e.at,
                    level=e.level,
                    message=e.message,
                    data=e.data,
                )
                for e in logs
                if isinstance(e, LogWritten)
            ),
            page=query.page,
            page_size=query.page_size,
            total=len(rows),
        )

    async def events_after(
        self,
        seq: int,
        *,
        job_id: JobId | None = None,
        execution_id: ExecutionId | None = None,
        limit: int = 500,
    ) -> list[Event]:
        start = bisect_right(self._events, seq, key=lambda e: e[0])
        out: list[Event] = []
        for event in self._events[start:]:
            if (job_id is None or event[3] == job_id) and (
                execution_id is None or event[4] == execution_id
            ):
                out.append(_common.event_from_row(event))
                if len(out) >= limit:
                    break
        return out

    async def last_seq(self) -> int:
        return self._seq

    async def list_categories(self) -> list[Category]:
        counts: dict[str, int] = dict.fromkeys(self._categories, 0)
        for job in self._jobs.values():
            if job.status != JobStatus.DELETED:
                counts[job.category] = counts.get(job.category, 0) + 1
        return [Category(name=name, jobs=counts[name]) for name in sorted(counts)]


MemoryStore.__module__ = "asyncjobs.stores"
