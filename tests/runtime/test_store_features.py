"""Runtime features that stores carry: triggering a job now, per-task concurrency limits,
and wake-ups across runtimes that share a store."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import anyio
import pytest

import asyncjobs as aj
from asyncjobs import ExecutionStatus as S

if TYPE_CHECKING:
    from pathlib import Path

    from tests.pg import PostgresServer

pytestmark = pytest.mark.anyio


def make_runtime(store: str, **options: object) -> aj.Runtime:
    options.setdefault("workers", 4)
    options.setdefault("poll_interval", 0.05)
    options.setdefault("shutdown_timeout", 5)
    options.setdefault("system_jobs", False)
    return aj.Runtime(store, **options)  # type: ignore[arg-type]


async def test_trigger_runs_every_step_now_with_the_jobs_priority(store_url: str) -> None:
    rt = make_runtime(store_url)
    seen: list[tuple[str, int]] = []

    @rt.task
    async def step(name: str, n: int) -> None:
        seen.append((name, n))

    async with rt:
        job = rt.job("pair", schedule=aj.Every(3600), priority=-3)
        job.add(step, "a", 1).add(step, "b", 2)
        await job.push()
        assert await rt.executions.count(job_id=job.id) == 0
        executions = await rt.jobs.trigger(job.id)
        assert [(e.step, e.priority, e.args) for e in executions] == [
            (0, -3, ("a", 1)),
            (1, -3, ("b", 2)),
        ]
        with anyio.fail_after(10):
            for execution in executions:
                while (await rt.executions.get(execution.id)).status != S.COMPLETED:
                    await anyio.sleep(0.02)
        assert sorted(seen) == [("a", 1), ("b", 2)]
        await job.refresh()
        assert job.status == aj.JobStatus.ACTIVE  # the schedule goes on
        await rt.jobs.stop(job.id)
        with pytest.raises(ValueError, match=f"job '{job.id}' is 'stopped'"):
            await rt.jobs.trigger(job.id)
        with pytest.raises(aj.JobNotFound, match="'nope'"):
            await rt.jobs.trigger("nope")
        assert await rt.executions.count(job_id=job.id) == 2


@pytest.fixture(params=["sqlite", "postgres"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store that two runtimes share through the database itself."""
    if request.param == "postgres":
        server: PostgresServer = request.getfixturevalue("pg_server")
        return server.url()
    return f"sqlite:///{tmp_path}/shared.db"


async def test_a_runtime_hears_work_and_results_from_another_at_once(shared_url: str) -> None:
    # Both poll only every 30 s: anything faster is the store's notifications at work
    # (PostgreSQL NOTIFY; SQLite: the watcher of the -wal file).
    worker, client = _doubling_pair(shared_url, worker_workers=4)
    async with worker, client:
        await anyio.sleep(0.3)  # the worker is idle, waiting
        for n in range(3):
            with anyio.fail_after(3):
                job = await client.once("double", n)
                assert await job.result() == 2 * n
        events = client.events()
        job = await client.once("double", 21)
        with anyio.fail_after(3):
            async for event in events:
                if isinstance(event, aj.StateChanged) and event.status == S.COMPLETED:
                    assert event.job_id == job.id
                    break


async def test_a_runtime_without_workers_watches_the_store_once_it_needs_to(
    shared_url: str,
) -> None:
    """A process that only enqueues does not pay for the store's watch until something
    waits for a change, or until it is given workers; from then on it hears other
    processes at once (both runtimes poll only every 30 s)."""
    worker, client = _doubling_pair(shared_url, worker_workers=0)
    async with worker, client:
        first = await client.once("double", 1)
        assert not _watching(worker) and not _watching(client)
        worker.resize(2)  # its dispatcher claims what is queued, and watches from now on
        with anyio.fail_after(3):
            assert await first.result() == 2  # the client's first wait starts its watch
        assert _watching(worker) and _watching(client)
        await anyio.sleep(0.3)  # the worker is idle, waiting
        with anyio.fail_after(3):
            job = await client.once("double", 21)
            assert await job.result() == 42


def _doubling_pair(url: str, *, worker_workers: int) -> tuple[aj.Runtime, aj.Runtime]:
    """A worker and a client (no workers) on one store, both knowing ``double``, both
    polling only every 30 s: anything faster is the store's notifications at work."""
    worker = make_runtime(url, poll_interval=30, workers=worker_workers)
    client = make_runtime(url, poll_interval=30, workers=0)

    @worker.task(name="double")
    async def double(n: int) -> int:
        return 2 * n

    client.task(name="double")(double)
    return worker, client


def _watching(rt: aj.Runtime) -> bool:
    assert rt._engine is not None
    return rt._engine.watching


def test_a_concurrency_limit_is_validated_naming_the_value() -> None:
    rt = make_runtime("memory://")
    with pytest.raises(ValueError, match="concurrency must be >= 1, got 0"):
        rt.task(concurrency=0)(_nothing)
    with pytest.raises(ValueError, match="concurrency must be an integer, got '2'"):
        rt.task(concurrency="2")(_nothing)  # type: ignore[call-overload]
    rt.task(concurrency=None)(_nothing)
    assert rt.get_task(f"{__name__}:_nothing").concurrency is None


async def _nothing() -> None:
    return None


async def _run_limited(runtimes: list[aj.Runtime], jobs: int) -> int:
    """Run ``jobs`` executions of a task limited to 2 on the runtimes; return the peak."""
    running = peak = 0

    async def limited(n: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.05)
        running -= 1
        return n

    for rt in runtimes:
        rt.task(name="limited", concurrency=2)(limited)
    async with AsyncExitStack() as stack:
        for rt in runtimes:
            await stack.enter_async_context(rt)
        pushed = [await runtimes[i % len(runtimes)].once("limited", i) for i in range(jobs)]
        with anyio.fail_after(20):
            assert [await job.result() for job in pushed] == list(range(jobs))
    return peak


async def test_a_concurrency_limit_holds_on_a_runtime(store_url: str) -> None:
    assert await _run_limited([make_runtime(store_url, workers=8)], 8) == 2


async def test_a_limited_tasks_next_execution_starts_when_one_ends_not_at_a_poll(
    store_url: str,
) -> None:
    """The queue behind a task at its limit moves as each execution ends: the runtime that
    frees the task's slot claims at once, as another node hears of it at once."""
    rt = make_runtime(store_url, workers=4, poll_interval=30)

    @rt.task(concurrency=1)
    async def one_at_a_time(n: int) -> int:
        await anyio.sleep(0.01)
        return n

    async with rt:
        await anyio.sleep(0.1)  # the dispatcher's first look is over: it waits a poll
        jobs = [await rt.once(one_at_a_time, n) for n in range(4)]
        with anyio.fail_after(5):  # 90 s if each waited for the poll
            assert [await job.result() for job in jobs] == [0, 1, 2, 3]


async def test_a_concurrency_limit_holds_across_nodes(pg_server: PostgresServer) -> None:
    url = pg_server.url()
    nodes = [make_runtime(url, workers=4) for _ in range(3)]
    assert await _run_limited(nodes, 12) == 2


async def test_a_node_leaves_a_task_it_does_not_know_for_a_node_that_does(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/mixed.db"
    knows_beta = make_runtime(url)
    knows_alpha = make_runtime(url)

    @knows_beta.task(name="beta")
    async def beta() -> str:
        return "beta"

    @knows_alpha.task(name="alpha")
    async def alpha() -> str:
        return "alpha"

    async with knows_beta:
        enqueuer = make_runtime(url, workers=0)
        enqueuer.task(name="alpha")(lambda: None)
        async with enqueuer:
            waiting = await enqueuer.once("alpha")
            done = await knows_beta.once(beta)
            assert await done.result(timeout=10) == "beta"
            await anyio.sleep(0.3)  # several claims later, alpha is still left alone
            (ex,) = await waiting.executions()
            assert ex.status == S.QUEUED
            async with knows_alpha:
                assert await waiting.result(timeout=10) == "alpha"
