"""Store conformance, the scheduling half: due jobs, firing ticks, daemon updates, retention.

Runs against every store through the ``store`` fixture, like ``test_conformance.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from asyncjobs import ExecutionStatus as S, JobStatus
from asyncjobs._models import StepSpec
from asyncjobs._states import LogLevel
from asyncjobs._types import ExecutionId, JobId, new_id
from asyncjobs.stores import (
    ExecutionQuery,
    Finish,
    JobQuery,
    LogQuery,
    NewExecution,
    NewJob,
    NewLog,
    NodeInfo,
    WriteBatch,
)
from asyncjobs.stores.base import JobUpdate, Tick

if TYPE_CHECKING:
    from asyncjobs._types import JSON
    from asyncjobs.stores import Store

pytestmark = pytest.mark.anyio
T0 = 1_700_000_000.0
NODE = NodeInfo(id="node-a", host="h", pid=1, started_at=T0, heartbeat_at=T0)


def new_job(
    *, next_fire_at: float | None, kind: str = "every", state: dict[str, JSON] | None = None
) -> NewJob:
    return NewJob(
        id=JobId(new_id()),
        name="tick",
        category="default",
        schedule={"kind": kind, "interval": 60.0},
        steps=(StepSpec(task="t"),),
        priority=0,
        shared={},
        key=None,
        created_at=T0,
        next_fire_at=next_fire_at,
        state=state or {},
    )


def execution(job: NewJob, at: float) -> NewExecution:
    return NewExecution(
        id=ExecutionId(new_id()),
        job_id=job.id,
        step=0,
        spec=job.steps[0],
        priority=0,
        scheduled_for=at,
        created_at=at,
    )


async def test_due_jobs_are_the_active_ones_whose_time_has_come(store: Store) -> None:
    late = new_job(next_fire_at=T0 + 10)
    early = new_job(next_fire_at=T0 + 5)
    future = new_job(next_fire_at=T0 + 100)
    paused = new_job(next_fire_at=T0 + 1)
    never = new_job(next_fire_at=None)
    for job in (late, early, future, paused, never):
        await store.add_job(job, [])
    await store.set_job_status(paused.id, JobStatus.PAUSED, T0)
    due = await store.due_jobs(T0 + 50, 10)
    assert [j.id for j in due] == [early.id, late.id]
    assert [j.id for j in await store.due_jobs(T0 + 50, 1)] == [early.id]
    assert await store.next_fire() == T0 + 5
    assert await store.count_executions(ExecutionQuery()) == 0


async def test_fire_inserts_each_tick_once_and_moves_the_marks(store: Store) -> None:
    job = new_job(next_fire_at=T0 + 60)
    await store.add_job(job, [])
    tick = Tick(at=T0 + 60, executions=[execution(job, T0 + 61)])
    result = await store.fire(
        job.id, expected=T0 + 60, ticks=[tick], next_fire_at=T0 + 120, overlap="allow", at=T0 + 61
    )
    assert result.status == "fired" and result.fired == (T0 + 60,)
    record = await store.get_job(job.id)
    assert record.next_fire_at is not None and record.next_fire_at.timestamp() == T0 + 120
    assert record.last_fire_at is not None and record.last_fire_at.timestamp() == T0 + 60
    assert await store.count_executions(ExecutionQuery(job_id=job.id)) == 1
    # A caller that read the job before this fire lost the race: nothing happens.
    again = await store.fire(
        job.id,
        expected=T0 + 60,
        ticks=[Tick(at=T0 + 60, executions=[execution(job, T0 + 62)])],
        next_fire_at=T0 + 120,
        overlap="allow",
        at=T0 + 62,
    )
    assert again.status == "stale"
    assert await store.count_executions(ExecutionQuery(job_id=job.id)) == 1


async def test_fire_never_fires_a_tick_at_or_before_the_last_fired_one(store: Store) -> None:
    job = new_job(next_fire_at=T0 + 60)
    await store.add_job(job, [])
    await store.fire(
        job.id,
        expected=T0 + 60,
        ticks=[Tick(at=T0 + 60, executions=[execution(job, T0 + 60)])],
        next_fire_at=T0,  # as a clock set back would compute it
        overlap="allow",
        at=T0 + 60,
    )
    result = await store.fire(
        job.id,
        expected=T0,
        ticks=[
            Tick(at=T0 + 60, executions=[execution(job, T0)]),
            Tick(at=T0 + 30, executions=[execution(job, T0)]),
        ],
        next_fire_at=T0 + 120,
        overlap="allow",
        at=T0,
    )
    assert result.fired == ()
    record = await store.get_job(job.id)
    assert record.last_fire_at is not None and record.last_fire_at.timestamp() == T0 + 60
    assert await store.count_executions(ExecutionQuery(job_id=job.id)) == 1


async def test_concurrent_fires_of_one_tick_create_one_set_of_executions(store: Store) -> None:
    job = new_job(next_fire_at=T0 + 60)
    await store.add_job(job, [])
    results = []

    async def fire_once() -> None:
        results.append(
            await store.fire(
                job.id,
                expected=T0 + 60,
                ticks=[Tick(at=T0 + 60, executions=[execution(job, T0 + 60)])],
                next_fire_at=T0 + 120,
                overlap="allow",
                at=T0 + 60,
            )
        )

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(fire_once)
    assert sorted(r.status for r in results) == ["fired"] + ["stale"] * 9
    assert await store.count_executions(ExecutionQuery(job_id=job.id)) == 1


@pytest.mark.parametrize(("overlap", "status", "executions"), [
    ("skip", "skipped", 1), ("queue", "busy", 1), ("allow", "fired", 2),
])  # fmt: skip
async def test_overlap_with_a_live_execution(
    store: Store, overlap: str, status: str, executions: int
) -> None:
    job = new_job(next_fire_at=T0 + 60)
    await store.add_job(job, [execution(job, T0)])  # still queued: live
    result = await store.fire(
        job.id,
        expected=T0 + 60,
        ticks=[Tick(at=T0 + 60, executions=[execution(job, T0 + 60)])],
        next_fire_at=T0 + 120,
        overlap=overlap,
        at=T0 + 60,
    )
    assert result.status == status
    assert await store.count_executions(ExecutionQuery(job_id=job.id)) == executions
    record = await store.get_job(job.id)
    assert record.next_fire_at is not None
    # busy changes nothing (the tick waits); skip and allow move on to the next tick.
    expected_next = T0 + 60 if status == "busy" else T0 + 120
    assert record.next_fire_at.timestamp() == expected_next


async def test_a_finish_carries_a_daemon_restart_or_ends_the_job(store: Store) -> None:
    job = new_job(next_fire_at=None, kind="daemon", state={"restarts": 0})
    first = execution(job, T0)
    await store.add_job(job, [first])
    (claim,) = await store.claim(NODE, 1, T0)
    assert claim.schedule["kind"] == "daemon" and claim.job_state == {"restarts": 0}
    update = JobUpdate(next_fire_at=T0 + 5, state={"restarts": 1})
    assert await store.write(
        WriteBatch(
            finishes=[
                Finish(execution_id=first.id, run=claim.run, status=S.FAILED, at=T0 + 1, job=update)
            ]
        )
    ) == [True]
    record = await store.get_job(job.id)
    assert record.status == JobStatus.ACTIVE
    assert record.next_fire_at is not None and record.next_fire_at.timestamp() == T0 + 5
    assert record.state == {"restarts": 1}
    assert [j.id for j in await store.due_jobs(T0 + 5, 10)] == [job.id]
    second = execution(job, T0 + 5)
    await store.fire(
        job.id,
        expected=T0 + 5,
        ticks=[Tick(at=T0 + 5, executions=[second])],
        next_fire_at=None,
        overlap="skip",
        at=T0 + 5,
    )
    (claim,) = await store.claim(NODE, 1, T0 + 5)
    await store.write(
        WriteBatch(
            finishes=[
                Finish(
                    execution_id=second.id,
                    run=claim.run,
                    status=S.COMPLETED,
                    at=T0 + 6,
                    job=JobUpdate(finished=True),
                )
            ]
        )
    )
    record = await store.get_job(job.id)
    assert record.status == JobStatus.FINISHED and record.next_fire_at is None


async def test_a_job_update_does_not_revive_a_stopped_job(store: Store) -> None:
    job = new_job(next_fire_at=None, kind="daemon")
    first = execution(job, T0)
    await store.add_job(job, [first])
    (claim,) = await store.claim(NODE, 1, T0)
    await store.set_job_status(job.id, JobStatus.STOPPED, T0 + 1)
    await store.write(
        WriteBatch(
            finishes=[
                Finish(
                    execution_id=first.id,
                    run=claim.run,
                    status=S.CANCELLED,
                    at=T0 + 2,
                    job=JobUpdate(next_fire_at=T0 + 3),
                )
            ]
        )
    )
    record = await store.get_job(job.id)
    assert record.status == JobStatus.STOPPED
    assert await store.due_jobs(T0 + 10, 10) == []


async def test_purge_deletes_what_retention_no_longer_keeps(store: Store) -> None:
    old = new_job(next_fire_at=None, kind="once")
    old_ex = execution(old, T0)
    await store.add_job(old, [old_ex])
    recent = new_job(next_fire_at=None, kind="once")
    recent_ex = execution(recent, T0)
    await store.add_job(recent, [recent_ex])
    claims = await store.claim(NODE, 2, T0)
    by_id = {c.execution.id: c for c in claims}
    await store.write(
        WriteBatch(
            logs=[
                NewLog(
                    execution_id=old_ex.id, job_id=old.id, at=T0, level=LogLevel.INFO, message="old"
                ),
                NewLog(
                    execution_id=recent_ex.id,
                    job_id=recent.id,
                    at=T0,
                    level=LogLevel.INFO,
                    message="stale",
                ),
                NewLog(
                    execution_id=recent_ex.id,
                    job_id=recent.id,
                    at=T0 + 500,
                    level=LogLevel.INFO,
                    message="fresh",
                ),
            ],
            finishes=[
                Finish(
                    execution_id=old_ex.id, run=by_id[old_ex.id].run, status=S.COMPLETED, at=T0 + 10
                ),
                Finish(
                    execution_id=recent_ex.id,
                    run=by_id[recent_ex.id].run,
                    status=S.COMPLETED,
                    at=T0 + 500,
                ),
            ],
        )
    )
    assert await store.purge(T0 + 100, T0 + 100) == (1, 2)
    assert await store.count_executions(ExecutionQuery()) == 1
    logs = await store.list_logs(LogQuery())
    assert [r.message for r in logs.items] == ["fresh"]
    assert await store.count_executions(ExecutionQuery(job_id=old.id)) == 0
    remaining = {j.id for j in (await store.list_jobs(JobQuery())).items}
    assert remaining == {recent.id}
    assert await store.purge(T0 + 100, T0 + 100) == (0, 0)
