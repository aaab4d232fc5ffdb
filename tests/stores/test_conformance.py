"""Store conformance: every promise of ``asyncjobs/stores/base.py``, against every store.

Parametrized through the ``store`` fixture (memory, SQLite on a real file; PostgreSQL joins
the same parameter). Nothing here may special-case a store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from asyncjobs import (
    ExecutionNotFound,
    ExecutionStatus as S,
    JobNotFound,
    JobStatus,
    LogLevel,
    LogWritten,
    ProgressReported,
    StateChanged,
)
from asyncjobs._models import ErrorInfo, StepSpec
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
    ProgressUpdate,
    WriteBatch,
)

if TYPE_CHECKING:
    from asyncjobs._types import JSON
    from asyncjobs.stores import Store

pytestmark = pytest.mark.anyio
T0 = 1_700_000_000.0
NODE = NodeInfo(id="node-a", host="host-a", pid=101, started_at=T0, heartbeat_at=T0)
OTHER = NodeInfo(id="node-b", host="host-b", pid=202, started_at=T0, heartbeat_at=T0)


def job(
    *,
    category: str = "default",
    name: str = "job",
    key: str | None = None,
    priority: int = 0,
    shared: dict[str, JSON] | None = None,
    created_at: float = T0,
    spec: StepSpec | None = None,
) -> NewJob:
    return NewJob(
        id=JobId(new_id()),
        name=name,
        category=category,
        schedule={"kind": "once"},
        steps=(spec or StepSpec(task="t"),),
        priority=priority,
        shared=shared or {},
        key=key,
        created_at=created_at,
    )


def execution(
    of: NewJob,
    *,
    at: float = T0,
    due: float | None = None,
    step: int = 0,
    priority: int | None = None,
) -> NewExecution:
    return NewExecution(
        id=ExecutionId(new_id()),
        job_id=of.id,
        step=step,
        spec=of.steps[0],
        priority=of.priority if priority is None else priority,
        scheduled_for=at if due is None else due,
        created_at=at,
    )


async def add(store: Store, **options: object) -> tuple[NewJob, NewExecution]:
    j = job(**options)  # type: ignore[arg-type]
    e = execution(j)
    await store.add_job(j, [e])
    return j, e


def finish(eid: ExecutionId, run: int, status: S, at: float = T0 + 1, **fields: object) -> Finish:
    return Finish(execution_id=eid, run=run, status=status, at=at, **fields)  # type: ignore[arg-type]


# -- jobs -----------------------------------------------------------------------------------


async def test_add_job_stores_the_job_its_executions_and_first_states(store: Store) -> None:
    j = job(category="reports/daily/pdf", shared={"cursor": 3})
    now, later = execution(j), execution(j, due=T0 + 60, step=1)
    record, created = await store.add_job(j, [now, later])
    assert created
    assert record.id == j.id and record.status == JobStatus.ACTIVE
    assert record.shared == {"cursor": 3} and record.category == "reports/daily/pdf"
    assert record == await store.get_job(j.id)  # what add_job returns is what it stored
    assert (await store.get_execution(now.id)).status == S.QUEUED
    assert (await store.get_execution(later.id)).status == S.SCHEDULED
    assert [t.status for t in await store.history(later.id)] == [S.SCHEDULED]
    names = [c.name for c in await store.list_categories()]
    assert names == ["reports", "reports/daily", "reports/daily/pdf"]


async def test_what_add_job_returns_is_what_get_job_reads_for_every_option(store: Store) -> None:
    """A store returns the job it inserted without reading it back: every field of every
    step, and nested shared data, must come back from the store just the same."""
    spec = StepSpec(
        task="t",
        args=(1, 2.5, "x", None, [1, {"a": [True]}]),
        kwargs={"k": {"nested": [1, 2]}, "s": "é"},
        mode="process",
        timeout=1.5,
        retries=3,
        backoff={"kind": "exponential", "base": 2.0},
        on_worker_lost="fail",
        crash_limit=5,
        target="pkg.mod:fn",
        command=("echo", "hi"),
        env={"A": "1"},
        cwd="/srv",
        concurrency=2,
        stand_in=True,
    )
    j = job(spec=spec, shared={"deep": {"list": [1, [2, 3]], "f": 0.1}, "n": None})
    record, created = await store.add_job(j, [execution(j)])
    assert created and record == await store.get_job(j.id)
    keyed = job(key="claimed", spec=StepSpec(task="t", kwargs={"x": [1.25]}))
    record, created, _ = await store.add_job_and_claim(keyed, [execution(keyed)], NODE, 1, T0 + 1)
    assert created and record == await store.get_job(keyed.id)


async def test_a_live_key_returns_the_existing_job_and_inserts_nothing(store: Store) -> None:
    first, _ = await add(store, key="k-1")
    again = job(key="k-1", category="other/sub")
    record, created = await store.add_job(again, [execution(again)])
    assert not created and record.id == first.id
    assert await store.count_jobs(JobQuery()) == 1
    assert await store.count_executions(ExecutionQuery()) == 1
    assert [c.name for c in await store.list_categories()] == ["default"]
    await store.set_job_status(first.id, JobStatus.STOPPED, T0 + 1)
    third = job(key="k-1")
    record, created = await store.add_job(third, [])
    assert created and record.id == third.id
    # The refused job's category was not made: the next job in it makes it, parents and all.
    await add(store, category="other/sub")
    names = [c.name for c in await store.list_categories()]
    assert names == ["default", "other", "other/sub"]


async def test_concurrent_adds_with_one_key_make_one_job(store: Store) -> None:
    results: list[tuple[str, bool]] = []

    async def push() -> None:
        j = job(key="same")
        record, created = await store.add_job(j, [execution(j)])
        results.append((record.id, created))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(push)
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert await store.count_jobs(JobQuery()) == 1


async def test_add_executions_joins_a_live_job_and_refuses_an_ended_one(store: Store) -> None:
    j, _ = await add(store)
    now, later = execution(j, at=T0 + 5), execution(j, at=T0 + 5, due=T0 + 60, step=1)
    start = await store.last_seq()
    added = await store.add_executions(j.id, [now, later], T0 + 5)
    assert [(e.id, e.status, e.job_id) for e in added] == [
        (now.id, S.QUEUED, j.id),
        (later.id, S.SCHEDULED, j.id),
    ]
    assert [(e.execution_id, e.status) for e in await store.events_after(start)] == [  # type: ignore[union-attr]
        (now.id, S.QUEUED),
        (later.id, S.SCHEDULED),
    ]
    await store.set_job_status(j.id, JobStatus.PAUSED, T0 + 6)
    paused = execution(j, at=T0 + 6)
    await store.add_executions(j.id, [paused], T0 + 6)
    assert await store.claim(NODE, 10, T0 + 6) == []  # a paused job's executions wait
    await store.set_job_status(j.id, JobStatus.STOPPED, T0 + 7)
    assert (await store.get_execution(paused.id)).status == S.CANCELLED
    late = execution(j, at=T0 + 8)
    with pytest.raises(ValueError, match=f"job '{j.id}' is 'stopped'; only an active or paused"):
        await store.add_executions(j.id, [late], T0 + 8)
    with pytest.raises(ExecutionNotFound):
        await store.get_execution(late.id)
    with pytest.raises(JobNotFound, match="'j-404'"):
        await store.add_executions(JobId("j-404"), [], T0)
    done, e = await add(store)
    (claim,) = await store.claim(NODE, 1, T0)
    await store.write(WriteBatch(finishes=[finish(e.id, claim.run, S.COMPLETED)]))
    with pytest.raises(ValueError, match="is 'finished'"):
        await store.add_executions(done.id, [execution(done)], T0 + 9)


async def test_get_missing_ids_name_them(store: Store) -> None:
    with pytest.raises(JobNotFound, match="no job with id 'j-404'"):
        await store.get_job(JobId("j-404"))
    with pytest.raises(ExecutionNotFound, match="no execution with id 'e-404'"):
        await store.get_execution(ExecutionId("e-404"))
    with pytest.raises(ExecutionNotFound, match="'e-404'"):
        await store.history(ExecutionId("e-404"))
    with pytest.raises(ExecutionNotFound, match="'e-404'"):
        await store.cancel_execution(ExecutionId("e-404"), T0)
    with pytest.raises(ExecutionNotFound, match="'e-404'"):
        await store.list_logs(LogQuery(execution_id=ExecutionId("e-404")))
    with pytest.raises(JobNotFound, match="'j-404'"):
        await store.set_job_status(JobId("j-404"), JobStatus.PAUSED, T0)


async def test_list_jobs_pages_newest_first_with_totals_and_filters(store: Store) -> None:
    ids = []
    for i in range(7):
        j, _ = await add(
            store, category="etl" if i % 2 else "etl2", name=f"n{i}", created_at=T0 + i
        )
        ids.append(j.id)
    page = await store.list_jobs(JobQuery(page=1, page_size=3))
    assert [j.id for j in page.items] == ids[::-1][:3] and page.total == 7
    last = await store.list_jobs(JobQuery(page=3, page_size=3))
    assert [j.id for j in last.items] == [ids[0]]
    assert await store.count_jobs(JobQuery(category="etl")) == 3  # not 'etl2'
    assert await store.count_jobs(JobQuery(name="n4")) == 1
    await store.set_job_status(ids[0], JobStatus.PAUSED, T0)
    assert [j.id for j in (await store.list_jobs(JobQuery(status=JobStatus.PAUSED))).items] == [
        ids[0]
    ]


async def test_category_filter_includes_sub_categories(store: Store) -> None:
    for category in ("a", "a/b", "a/b/c", "ab", "b/a"):
        await add(store, category=category)
    assert await store.count_jobs(JobQuery(category="a")) == 3
    assert await store.count_jobs(JobQuery(category="a/b")) == 2
    cats = {c.name: c.jobs for c in await store.list_categories()}
    assert cats == {"a": 1, "a/b": 1, "a/b/c": 1, "ab": 1, "b": 0, "b/a": 1}


@pytest.mark.parametrize(("page", "size", "match"), [
    (0, 10, "page must be an integer >= 1, got 0"),
    (1, 0, "page_size must be between 1 and 1000, got 0"),
    (1, 5000, "got 5000"),
    (1_000_001, 10, "page must be at most 1000000, got 1000001"),
    (2**62, 10, "page must be at most 1000000, got 4611686018427387904"),  # not an OverflowError
])  # fmt: skip
async def test_bad_pages_name_the_value(store: Store, page: int, size: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        await store.list_jobs(JobQuery(page=page, page_size=size))
    with pytest.raises(ValueError, match=match):
        await store.list_executions(ExecutionQuery(page=page, page_size=size))
    with pytest.raises(ValueError, match=match):
        await store.list_logs(LogQuery(page=page, page_size=size))


@pytest.mark.parametrize(("src", "to", "allowed"), [
    (JobStatus.ACTIVE, JobStatus.PAUSED, True),
    (JobStatus.PAUSED, JobStatus.ACTIVE, True),
    (JobStatus.ACTIVE, JobStatus.STOPPED, True),
    (JobStatus.PAUSED, JobStatus.DELETED, True),
    (JobStatus.STOPPED, JobStatus.ACTIVE, False),
    (JobStatus.STOPPED, JobStatus.PAUSED, False),
    (JobStatus.DELETED, JobStatus.STOPPED, False),
    (JobStatus.DELETED, JobStatus.ACTIVE, False),
])  # fmt: skip
async def test_job_status_moves(store: Store, src: JobStatus, to: JobStatus, allowed: bool) -> None:
    j, _ = await add(store)
    path = {
        JobStatus.ACTIVE: [],
        JobStatus.PAUSED: [JobStatus.PAUSED],
        JobStatus.STOPPED: [JobStatus.STOPPED],
        JobStatus.DELETED: [JobStatus.DELETED],
    }[src]
    for status in path:
        await store.set_job_status(j.id, status, T0)
    if allowed:
        record, _ = await store.set_job_status(j.id, to, T0 + 1)
        assert record.status == to
    else:
        with pytest.raises(ValueError, match=f"is '{src.value}' and cannot become '{to.value}'"):
            await store.set_job_status(j.id, to, T0 + 1)
        assert (await store.get_job(j.id)).status == src


async def test_stop_cancels_waiting_executions_and_marks_running_ones(store: Store) -> None:
    j = job()
    running, queued, scheduled = execution(j), execution(j, step=1), execution(j, due=T0 + 99)
    await store.add_job(j, [running, queued, scheduled])
    (claim,) = await store.claim(NODE, 1, T0)
    assert claim.execution.id == running.id
    record, live = await store.set_job_status(j.id, JobStatus.STOPPED, T0 + 1)
    assert record.status == JobStatus.STOPPED and live == [running.id]
    assert (await store.get_execution(queued.id)).status == S.CANCELLED
    assert (await store.get_execution(scheduled.id)).status == S.CANCELLED
    assert await store.cancel_requests(NODE.id) == [(running.id, claim.run)]
    assert await store.cancel_requests(OTHER.id) == []


async def test_pause_hides_executions_from_claims_until_resume(store: Store) -> None:
    j, e = await add(store)
    await store.set_job_status(j.id, JobStatus.PAUSED, T0)
    assert await store.claim(NODE, 10, T0) == []
    await store.set_job_status(j.id, JobStatus.ACTIVE, T0)
    (claim,) = await store.claim(NODE, 10, T0)
    assert claim.execution.id == e.id


# -- executions ------------------------------------------------------------------------------


async def test_claim_order_priority_then_fifo_and_limit(store: Store) -> None:
    order = []
    for i, priority in enumerate([5, -1, 0, -1, 5]):
        j = job(priority=priority, created_at=T0 + i)
        e = execution(j, at=T0 + i)
        await store.add_job(j, [e])
        order.append((priority, i, e.id))
    expected = [eid for _, _, eid in sorted(order)]
    first = await store.claim(NODE, 2, T0 + 10)
    rest = await store.claim(NODE, 10, T0 + 10)
    assert [c.execution.id for c in first + rest] == expected
    assert await store.claim(NODE, 10, T0 + 10) == []


async def test_claim_sets_running_fields_and_returns_what_the_run_needs(store: Store) -> None:
    j, e = await add(store, shared={"k": [1, 2]})
    (claim,) = await store.claim(NODE, 1, T0 + 5)
    ex = claim.execution
    assert ex.status == S.RUNNING and ex.node == NODE.id and ex.pid == NODE.pid
    assert ex.started_at is not None and ex.started_at.timestamp() == T0 + 5
    assert claim.run == 1 and claim.shared == {"k": [1, 2]} and claim.spec == j.steps[0]
    assert [t.status for t in await store.history(e.id)] == [S.QUEUED, S.RUNNING]


async def test_due_waiting_executions_are_promoted_at_claim_and_next_due_tracks_them(
    store: Store,
) -> None:
    j = job()
    soon, later = execution(j, due=T0 + 10), execution(j, due=T0 + 20, step=1)
    await store.add_job(j, [soon, later])
    assert await store.next_due() == T0 + 10
    assert await store.claim(NODE, 10, T0 + 5) == []
    (claim,) = await store.claim(NODE, 10, T0 + 10)
    assert claim.execution.id == soon.id
    assert [t.status for t in await store.history(soon.id)] == [S.SCHEDULED, S.QUEUED, S.RUNNING]
    assert await store.next_due() == T0 + 20


async def test_nothing_is_claimed_twice_by_concurrent_claimers(store: Store) -> None:
    j = job()
    executions = [execution(j, step=i) for i in range(60)]
    await store.add_job(j, executions)
    claimed: list[str] = []

    async def claimer(node: NodeInfo) -> None:
        while claims := await store.claim(node, 7, T0):
            claimed.extend(c.execution.id for c in claims)

    async with anyio.create_task_group() as tg:
        for node in (NODE, OTHER, NODE):
            tg.start_soon(claimer, node)
    assert sorted(claimed) == sorted(e.id for e in executions)


async def test_a_concurrency_limit_holds_in_the_claim_and_passes_over_what_waits(
    store: Store,
) -> None:
    limited = job(spec=StepSpec(task="limited", concurrency=2))
    await store.add_job(limited, [execution(limited, step=i) for i in range(5)])
    free = job(spec=StepSpec(task="free"), created_at=T0 + 1)
    await store.add_job(free, [execution(free, at=T0 + 1, step=i) for i in range(3)])
    claims = await store.claim(NODE, 10, T0 + 2)
    assert sorted(c.execution.task for c in claims) == ["free"] * 3 + ["limited"] * 2
    assert claims[0].spec.concurrency == 2  # the limit rides in the step
    assert await store.claim(OTHER, 10, T0 + 2) == []  # the limit counts every node
    done = next(c for c in claims if c.execution.task == "limited")
    await store.write(WriteBatch(finishes=[finish(done.execution.id, done.run, S.COMPLETED)]))
    (again,) = await store.claim(OTHER, 10, T0 + 3)
    assert again.execution.task == "limited"
    assert await store.count_executions(ExecutionQuery(task="limited", status=S.RUNNING)) == 2


async def test_a_node_claims_only_the_tasks_it_knows_and_commands(store: Store) -> None:
    theirs = job(spec=StepSpec(task="theirs"))
    await store.add_job(theirs, [execution(theirs, step=i) for i in range(2)])
    command = job(spec=StepSpec(task="echo", mode="process", command=("echo", "hi")))
    await store.add_job(command, [execution(command, at=T0 + 1)])
    limited = job(spec=StepSpec(task="theirs-limited", concurrency=5))
    await store.add_job(limited, [execution(limited, at=T0 + 2)])
    mine = job(spec=StepSpec(task="mine"))
    await store.add_job(mine, [execution(mine, at=T0 + 3)])
    claims = await store.claim(NODE, 10, T0 + 5, tasks={"mine", "other"})
    assert [c.execution.task for c in claims] == ["echo", "mine"]  # in claim order
    assert await store.claim(NODE, 10, T0 + 5, tasks={"mine"}) == []
    # What this node does not know stays queued, for a node that knows it.
    rest = await store.claim(OTHER, 10, T0 + 5, tasks={"theirs", "theirs-limited"})
    assert sorted(c.execution.task for c in rest) == ["theirs", "theirs", "theirs-limited"]


async def test_concurrent_claimers_never_exceed_a_concurrency_limit(store: Store) -> None:
    j = job(spec=StepSpec(task="limited", concurrency=3))
    await store.add_job(j, [execution(j, step=i) for i in range(40)])
    claimed: list[str] = []

    async def claimer(node: NodeInfo) -> None:
        while claims := await store.claim(node, 2, T0):
            claimed.extend(c.execution.id for c in claims)

    async with anyio.create_task_group() as tg:
        for node in (NODE, OTHER, NODE, OTHER):
            tg.start_soon(claimer, node)
    assert len(claimed) == len(set(claimed)) == 3
    assert await store.count_executions(ExecutionQuery(status=S.RUNNING)) == 3


async def test_add_job_and_claim_claims_in_the_same_transaction_by_the_claim_rules(
    store: Store,
) -> None:
    # Nothing else waits: the new execution is claimed at once, with what its run needs.
    j = job(shared={"k": 1})
    e = execution(j)
    record, created, (claim,) = await store.add_job_and_claim(j, [e], NODE, 1, T0 + 1)
    assert created and record.id == j.id
    assert claim.execution.id == e.id and claim.run == 1 and claim.shared == {"k": 1}
    assert claim.execution.node == NODE.id
    assert await store.get_execution(e.id) == claim.execution  # what the store holds
    assert [t.status for t in await store.history(e.id)] == [S.QUEUED, S.RUNNING]
    # An older execution of the same priority is next in line: it is the one claimed.
    _, older_e = await add(store, created_at=T0 + 2)
    j2 = job(created_at=T0 + 3)
    e2 = execution(j2, at=T0 + 3)
    _, _, claims = await store.add_job_and_claim(j2, [e2], NODE, 1, T0 + 4)
    assert [c.execution.id for c in claims] == [older_e.id]
    assert (await store.get_execution(e2.id)).status == S.QUEUED
    # The rules of claim() hold: tasks this node does not know, and concurrency limits.
    theirs = job(spec=StepSpec(task="theirs"), created_at=T0 + 5)
    _, _, claims = await store.add_job_and_claim(
        theirs, [execution(theirs, at=T0 + 5)], NODE, 5, T0 + 5, tasks={"t"}
    )
    assert [c.execution.id for c in claims] == [e2.id]
    limited = job(spec=StepSpec(task="limited", concurrency=1), created_at=T0 + 6)
    batch = [execution(limited, at=T0 + 6, step=i) for i in range(3)]
    _, _, claims = await store.add_job_and_claim(
        limited, batch, OTHER, 3, T0 + 6, tasks={"limited"}
    )
    assert [c.execution.id for c in claims] == [batch[0].id]
    # A live key: nothing inserted, nothing claimed.
    await add(store, key="busy", created_at=T0 + 7)
    keyed = job(key="busy", created_at=T0 + 8)
    found, created, claims = await store.add_job_and_claim(
        keyed, [execution(keyed, at=T0 + 8)], NODE, 10, T0 + 8
    )
    assert not created and found.id != keyed.id and claims == []
    assert await store.count_executions(ExecutionQuery(status=S.QUEUED)) == 4


async def test_add_job_and_claim_takes_what_is_ahead_of_the_new_execution_first(
    store: Store,
) -> None:
    # A waiting execution that has come due is promoted and claimed before the new one.
    early = job(created_at=T0)
    waiting = execution(early, at=T0, due=T0 + 1)
    await store.add_job(early, [waiting])
    new = job(created_at=T0 + 2)
    new_e = execution(new, at=T0 + 2)
    _, _, claims = await store.add_job_and_claim(new, [new_e], NODE, 1, T0 + 2)
    assert [c.execution.id for c in claims] == [waiting.id]
    # A queued execution of a later priority class waits behind the new one; an earlier
    # one goes first. (Claim order: priority, then due time, then id.)
    urgent = job(priority=-1, created_at=T0 + 3)
    urgent_e = execution(urgent, at=T0 + 3)
    await store.add_job(urgent, [urgent_e])
    late = job(priority=5, created_at=T0 + 3)
    late_e = execution(late, at=T0 + 3)
    await store.add_job(late, [late_e])

    async def push(at: float, limit: int) -> tuple[str, list[str]]:
        """Push a one-step job at ``at``; return its execution's id and the claimed ids."""
        pushed = job(created_at=at)
        pushed_e = execution(pushed, at=at)
        _, _, claims = await store.add_job_and_claim(pushed, [pushed_e], NODE, limit, at)
        return pushed_e.id, [c.execution.id for c in claims]

    mid_id, claimed = await push(T0 + 4, 1)
    assert claimed == [urgent_e.id]
    last_id, claimed = await push(T0 + 5, 3)
    assert claimed == [new_e.id, mid_id, last_id]
    # Only 'late' is left, behind it: the new execution is the one claimed.
    alone_id, claimed = await push(T0 + 6, 1)
    assert claimed == [alone_id]
    # With room for more, the claim goes on past the new execution, to 'late'.
    roomy_id, claimed = await push(T0 + 7, 5)
    assert claimed == [roomy_id, late_e.id]
    assert await store.count_executions(ExecutionQuery(status=S.QUEUED)) == 0


async def test_list_and_count_executions_filter_by_job_status_and_task(store: Store) -> None:
    a, _ = await add(store)
    b = job(spec=StepSpec(task="other"))
    await store.add_job(b, [execution(b), execution(b, step=1)])
    await store.claim(NODE, 1, T0)
    assert await store.count_executions(ExecutionQuery(job_id=b.id)) == 2
    assert await store.count_executions(ExecutionQuery(task="other")) == 2
    assert await store.count_executions(ExecutionQuery(status=S.RUNNING)) == 1
    page = await store.list_executions(ExecutionQuery(page_size=2))
    assert page.total == 3 and len(page.items) == 2
    assert page.items[0].created_at >= page.items[1].created_at
    assert await store.count_executions(ExecutionQuery(job_id=a.id)) == 1


async def test_write_appends_logs_and_fenced_progress(store: Store) -> None:
    j, e = await add(store)
    (claim,) = await store.claim(NODE, 1, T0)
    applied = await store.write(
        WriteBatch(
            logs=[
                NewLog(
                    execution_id=e.id,
                    job_id=j.id,
                    at=T0,
                    level=LogLevel.INFO,
                    message="a",
                    data={"n": 1},
                ),
                NewLog(execution_id=e.id, job_id=j.id, at=T0, level=LogLevel.ERROR, message="b"),
            ],
            progress=[
                ProgressUpdate(
                    execution_id=e.id, run=claim.run, progress=40, message="forty", at=T0
                ),
                ProgressUpdate(
                    execution_id=e.id, run=claim.run + 1, progress=99, message="stale", at=T0
                ),
            ],
        )
    )
    assert applied == []
    ex = await store.get_execution(e.id)
    assert (ex.progress, ex.progress_message) == (40, "forty")
    # Of two updates of one run in a batch, the last is the one applied, with one event.
    seq = await store.last_seq()
    await store.write(
        WriteBatch(
            progress=[
                ProgressUpdate(execution_id=e.id, run=claim.run, progress=p, message=m, at=T0)
                for p, m in ((50, "fifty"), (60, "sixty"))
            ]
        )
    )
    ex = await store.get_execution(e.id)
    assert (ex.progress, ex.progress_message) == (60, "sixty")
    events = await store.events_after(seq, execution_id=e.id)
    assert [(type(ev), getattr(ev, "progress", None)) for ev in events] == [(ProgressReported, 60)]
    logs = await store.list_logs(LogQuery(execution_id=e.id))
    assert [(r.message, r.level, r.data) for r in logs.items] == [
        ("a", LogLevel.INFO, {"n": 1}),
        ("b", LogLevel.ERROR, {}),
    ]
    errors = await store.list_logs(LogQuery(job_id=j.id, level=LogLevel.WARN))
    assert [r.message for r in errors.items] == ["b"]


async def test_finish_is_fenced_on_the_run(store: Store) -> None:
    j, e = await add(store)
    (claim,) = await store.claim(NODE, 1, T0)
    stale = finish(e.id, claim.run - 1, S.COMPLETED, result="old")
    assert await store.write(WriteBatch(finishes=[stale])) == [False]
    assert (await store.get_execution(e.id)).status == S.RUNNING
    done = finish(
        e.id, claim.run, S.COMPLETED, result={"ok": True}, progress=100, progress_message="done"
    )
    assert await store.write(WriteBatch(finishes=[done])) == [True]
    ex = await store.get_execution(e.id)
    assert ex.status == S.COMPLETED and ex.result == {"ok": True}
    assert ex.progress == 100 and ex.ended_at is not None
    # A second finish of the same run (a late duplicate) changes nothing.
    assert await store.write(WriteBatch(finishes=[finish(e.id, claim.run, S.FAILED)])) == [False]
    assert (await store.get_job(j.id)).status == JobStatus.FINISHED


async def test_failed_carries_the_error_and_retrying_requeues(store: Store) -> None:
    _, e = await add(store)
    (claim,) = await store.claim(NODE, 1, T0)
    error = ErrorInfo(type="KeyError", message="'x'", traceback="Traceback...")
    retry = finish(e.id, claim.run, S.RETRYING, error=error, retry_at=T0 + 30)
    assert await store.write(WriteBatch(finishes=[retry])) == [True]
    ex = await store.get_execution(e.id)
    assert ex.status == S.RETRYING and ex.attempt == 2 and ex.error == error
    assert ex.scheduled_for.timestamp() == T0 + 30 and ex.ended_at is None
    assert await store.claim(NODE, 1, T0 + 29) == []
    (again,) = await store.claim(NODE, 1, T0 + 30)
    assert again.run == claim.run + 1
    released = finish(e.id, again.run, S.RETRYING, retry_at=T0 + 30, new_attempt=False)
    await store.write(WriteBatch(finishes=[released]))
    assert (await store.get_execution(e.id)).attempt == 2
    (third,) = await store.claim(NODE, 1, T0 + 31)
    await store.write(
        WriteBatch(finishes=[finish(third.execution.id, third.run, S.FAILED, error=error)])
    )
    ex = await store.get_execution(e.id)
    assert ex.status == S.FAILED and ex.error == error
    assert [t.status for t in await store.history(e.id)] == [
        S.QUEUED, S.RUNNING, S.RETRYING, S.QUEUED, S.RUNNING, S.RETRYING, S.QUEUED, S.RUNNING,
        S.FAILED,
    ]  # fmt: skip


async def test_write_and_claim_ends_runs_then_claims_by_the_claim_rules(store: Store) -> None:
    """One transaction: the batch as :meth:`write` applies it, then a claim that sees it."""
    first, second = await add(store), await add(store)
    a, b = await store.claim(NODE, 2, T0)
    queued = [await add(store) for _ in range(3)]
    paused, _ = await add(store)
    await store.set_job_status(paused.id, JobStatus.PAUSED, T0)
    batch = WriteBatch(
        finishes=[
            finish(a.execution.id, a.run, S.COMPLETED, result=1),
            finish(b.execution.id, b.run, S.RETRYING, retry_at=T0 + 1),  # due at the claim
            finish(b.execution.id, b.run - 1, S.FAILED),  # stale: not applied
        ],
        logs=[NewLog(execution_id=a.execution.id, job_id=first[0].id, at=T0, level=LogLevel.INFO,
                     message="done", data={})],
    )  # fmt: skip
    applied, claims = await store.write_and_claim(batch, OTHER, 3, T0 + 1)
    assert applied == [True, True, False]
    # Claim order (the retry, promoted, is due last), the paused job's execution passed over.
    assert [c.execution.id for c in claims] == [e.id for _, e in queued]
    assert all(c.execution.node == OTHER.id and c.run == 1 for c in claims)
    assert (await store.get_job(first[0].id)).status == JobStatus.FINISHED
    assert (await store.get_execution(b.execution.id)).status == S.QUEUED  # promoted, left
    (log,) = (await store.list_logs(LogQuery(execution_id=a.execution.id))).items
    assert log.message == "done"
    applied, claims = await store.write_and_claim(WriteBatch(), OTHER, 2, T0 + 2)
    assert applied == [] and [c.execution.id for c in claims] == [b.execution.id]
    assert claims[0].run == b.run + 1 and claims[0].execution.attempt == 2
    assert [t.status for t in await store.history(b.execution.id)] == [
        S.QUEUED, S.RUNNING, S.RETRYING, S.QUEUED, S.RUNNING,
    ]  # fmt: skip
    # With limit 0 only the batch is written.
    done = finish(claims[0].execution.id, claims[0].run, S.COMPLETED)
    assert await store.write_and_claim(WriteBatch(finishes=[done]), NODE, 0, T0 + 3) == ([True], [])
    assert (await store.get_job(second[0].id)).status == JobStatus.FINISHED


async def test_a_large_batch_applies_each_update_and_finish_on_its_own_run(store: Store) -> None:
    # More finishes than a store writes with one statement, of every kind, with a stale run
    # and a second finish of a run already ended in the same batch: each is applied or not
    # as if it were written alone, in order.
    jobs = [job() for _ in range(520)]
    for j in jobs:
        await store.add_job(j, [execution(j)])
    claims = await store.claim(NODE, 600, T0)
    assert len(claims) == 520
    kinds = (S.COMPLETED, S.FAILED, S.RETRYING, S.CANCELLED)
    error = ErrorInfo(type="ValueError", message="bad", traceback="Traceback...")
    finishes = [
        finish(
            c.execution.id,
            c.run,
            kinds[i % 4],
            result={"i": i} if kinds[i % 4] == S.COMPLETED else None,
            error=error if kinds[i % 4] in (S.FAILED, S.RETRYING) else None,
            progress=float(i % 101),
            retry_at=T0 + 60,
        )
        for i, c in enumerate(claims)
    ]
    first, second = claims[0], claims[1]
    stale = finish(second.execution.id, second.run - 1, S.COMPLETED, result="stale")
    again = finish(first.execution.id, first.run, S.FAILED, error=error)
    progress = [
        ProgressUpdate(execution_id=c.execution.id, run=c.run, progress=1, message="", at=T0)
        for c in claims
    ]
    seq = await store.last_seq()
    applied = await store.write(WriteBatch(progress=progress, finishes=[stale, *finishes, again]))
    assert applied == [False, *[True] * 520, False]
    events = await store.events_after(seq, limit=5000)
    assert sum(isinstance(e, ProgressReported) for e in events) == 520
    assert sum(isinstance(e, StateChanged) for e in events) == 520
    for i, c in enumerate(claims):
        ex = await store.get_execution(c.execution.id)
        assert ex.status == kinds[i % 4] and ex.progress == float(i % 101)
        assert ex.result == ({"i": i} if kinds[i % 4] == S.COMPLETED else None)
        assert ex.error == (error if kinds[i % 4] in (S.FAILED, S.RETRYING) else None)
        retrying = kinds[i % 4] == S.RETRYING
        assert (ex.ended_at is None) == retrying and ex.attempt == (2 if retrying else 1)
        assert [t.status for t in await store.history(c.execution.id)] == [
            S.QUEUED, S.RUNNING, kinds[i % 4],
        ]  # fmt: skip
        status = JobStatus.ACTIVE if retrying else JobStatus.FINISHED
        assert (await store.get_job(c.execution.job_id)).status == status


async def test_shared_writes_merge_into_the_job(store: Store) -> None:
    j, e = await add(store, shared={"keep": 1, "cursor": 0})
    (claim,) = await store.claim(NODE, 1, T0)
    await store.write(
        WriteBatch(
            finishes=[finish(e.id, claim.run, S.COMPLETED, shared={"cursor": 9, "new": "x"})]
        )
    )
    assert (await store.get_job(j.id)).shared == {"keep": 1, "cursor": 9, "new": "x"}


async def test_a_one_off_job_finishes_when_its_last_execution_ends(store: Store) -> None:
    j = job()
    first, second = execution(j), execution(j, step=1)
    await store.add_job(j, [first, second])
    claims = await store.claim(NODE, 2, T0)
    runs = {c.execution.id: c.run for c in claims}
    await store.write(WriteBatch(finishes=[finish(first.id, runs[first.id], S.COMPLETED)]))
    assert (await store.get_job(j.id)).status == JobStatus.ACTIVE
    await store.write(WriteBatch(finishes=[finish(second.id, runs[second.id], S.FAILED)]))
    assert (await store.get_job(j.id)).status == JobStatus.FINISHED


async def test_cancel_waiting_at_once_running_by_mark_ended_unchanged(store: Store) -> None:
    j = job()
    running, waiting = execution(j), execution(j, due=T0 + 60, step=1)
    await store.add_job(j, [running, waiting])
    (claim,) = await store.claim(NODE, 1, T0)
    ex, is_running = await store.cancel_execution(waiting.id, T0 + 1)
    assert ex.status == S.CANCELLED and not is_running and ex.ended_at is not None
    ex, is_running = await store.cancel_execution(running.id, T0 + 1)
    assert ex.status == S.RUNNING and is_running
    assert await store.cancel_requests(NODE.id) == [(running.id, claim.run)]
    await store.write(WriteBatch(finishes=[finish(running.id, claim.run, S.CANCELLED)]))
    ex, is_running = await store.cancel_execution(running.id, T0 + 2)
    assert ex.status == S.CANCELLED and not is_running
    assert await store.cancel_requests(NODE.id) == []
    assert (await store.get_job(j.id)).status == JobStatus.FINISHED


# -- nodes -----------------------------------------------------------------------------------


async def test_nodes_register_heartbeat_and_list(store: Store) -> None:
    await store.register_node(NODE)
    assert await store.heartbeat(NODE.id, T0 + 5)
    assert not await store.heartbeat("ghost", T0 + 5)
    (node,) = await store.list_nodes()
    assert node.id == NODE.id and node.heartbeat_at == T0 + 5


@pytest.mark.parametrize(("policy", "crashes_before", "status"), [
    ("retry", 0, S.RETRYING),
    ("retry", 2, S.RETRYING),
    ("retry", 3, S.FAILED),
    ("fail", 0, S.FAILED),
])  # fmt: skip
async def test_recover_node_follows_the_lost_worker_policy(
    store: Store, policy: str, crashes_before: int, status: S
) -> None:
    j = job(spec=StepSpec(task="t", on_worker_lost=policy, crash_limit=3))
    e = execution(j)
    await store.add_job(j, [e])
    await store.register_node(NODE)
    for _ in range(crashes_before):
        await store.claim(NODE, 1, T0)
        await store.recover_node(NODE.id, T0)
        await store.register_node(NODE)
    (claim,) = await store.claim(NODE, 1, T0 + 1)
    (ex,) = await store.recover_node(NODE.id, T0 + 2)
    assert ex.id == e.id and ex.status == status
    assert NODE.id not in {n.id for n in await store.list_nodes()}
    warnings = await store.list_logs(LogQuery(execution_id=e.id, level=LogLevel.WARN))
    assert warnings.items and "node-a" in warnings.items[-1].message
    if status == S.RETRYING:
        assert ex.attempt == claim.execution.attempt + 1
        (again,) = await store.claim(OTHER, 1, T0 + 2)
        assert again.execution.id == e.id
    else:
        assert ex.error is not None and ex.error.type == "WorkerLost"
        assert "node-a" in ex.error.message
        assert (await store.get_job(j.id)).status == JobStatus.FINISHED


async def test_recover_node_cancels_what_was_marked_and_leaves_other_nodes_alone(
    store: Store,
) -> None:
    j = job()
    mine, theirs = execution(j), execution(j, step=1)
    await store.add_job(j, [mine, theirs])
    (a,) = await store.claim(NODE, 1, T0)
    (b,) = await store.claim(OTHER, 1, T0)
    await store.cancel_execution(a.execution.id, T0)
    (ex,) = await store.recover_node(NODE.id, T0 + 1)
    assert ex.status == S.CANCELLED
    assert (await store.get_execution(b.execution.id)).status == S.RUNNING


async def test_children_are_recorded_per_run_and_listed_for_their_node(store: Store) -> None:
    j = job()
    mine, theirs = execution(j), execution(j, step=1)
    await store.add_job(j, [mine, theirs])
    (a,) = await store.claim(NODE, 1, T0)
    (b,) = await store.claim(OTHER, 1, T0)
    await store.record_child(a.execution.id, a.run, 4242, "123456")
    await store.record_child(b.execution.id, b.run + 1, 999, None)  # a stale run: ignored
    assert await store.node_children(NODE.id) == [(4242, "123456")]
    assert await store.node_children(OTHER.id) == []
    await store.write(WriteBatch(finishes=[finish(a.execution.id, a.run, S.COMPLETED)]))
    assert await store.node_children(NODE.id) == []


# -- events ----------------------------------------------------------------------------------


async def test_events_are_ordered_filtered_and_limited(store: Store) -> None:
    start = await store.last_seq()
    j1, e1 = await add(store)
    j2, _ = await add(store)
    (claim,) = await store.claim(NODE, 1, T0)
    assert claim.execution.id == e1.id
    await store.write(
        WriteBatch(
            logs=[
                NewLog(execution_id=e1.id, job_id=j1.id, at=T0, level=LogLevel.INFO, message="hi")
            ],
            progress=[
                ProgressUpdate(execution_id=e1.id, run=claim.run, progress=5, message="p", at=T0)
            ],
        )
    )
    events = await store.events_after(start)
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert await store.last_seq() == seqs[-1]
    mine = await store.events_after(start, job_id=j1.id)
    kinds = [type(e) for e in mine]
    assert kinds == [StateChanged, StateChanged, LogWritten, ProgressReported]
    assert all(e.job_id == j1.id for e in mine)
    only = await store.events_after(start, execution_id=e1.id, limit=2)
    assert [e.seq for e in only] == [e.seq for e in mine[:2]]
    assert await store.events_after(seqs[-1]) == []
    assert [e.job_id for e in await store.events_after(start, job_id=j2.id)] == [j2.id]
