from __future__ import annotations

import enum
import gc
import logging
import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

import anyio
import anyio.lowlevel
import pytest

import asyncjobs as aj
from asyncjobs import ExecutionStatus as S

if TYPE_CHECKING:
    from asyncjobs.stores import Claim, WriteBatch

pytestmark = pytest.mark.anyio


def make_runtime(store_url: str, **options: object) -> aj.Runtime:
    options.setdefault("workers", 4)
    options.setdefault("poll_interval", 0.05)
    options.setdefault("progress_interval", 0.01)
    options.setdefault("shutdown_timeout", 5)
    options.setdefault("system_jobs", False)
    return aj.Runtime(store_url, **options)  # type: ignore[arg-type]


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Point:
    x: int
    y: float
    when: datetime


async def test_once_runs_an_async_task_and_returns_its_result(store_url: str) -> None:
    rt = make_runtime(store_url)

    @rt.task
    async def add(a: int, b: int) -> int:
        return a + b

    async with rt:
        job = await rt.once(add, 2, 3)
        with anyio.fail_after(5):
            assert await job.result() == 5
        await job.refresh()
        assert job.status == aj.JobStatus.FINISHED
        ex = await job.wait()
        assert ex.status == S.COMPLETED
        assert ex.attempt == 1
        assert ex.started_at is not None and ex.ended_at is not None
        assert [t.status for t in await rt.executions.history(ex.id)] == [
            S.QUEUED,
            S.RUNNING,
            S.COMPLETED,
        ]


async def test_sync_task_runs_in_a_thread_and_reports(store_url: str) -> None:
    rt = make_runtime(store_url)
    threads: list[int] = []

    @rt.task(name="crunch")
    def crunch(ctx: aj.Context, n: int) -> int:
        threads.append(threading.get_ident())
        ctx.progress(50, "half way")
        ctx.log.info("crunching %d", n, size=n)
        return n * 2

    async with rt:
        job = await rt.once("crunch", 21)
        with anyio.fail_after(5):
            assert await job.result() == 42
        ex = await job.wait()
        assert threads and threads[0] != threading.get_ident()
        assert ex.progress == 50 and ex.progress_message == "half way"
        logs = await rt.logs.list(execution_id=ex.id)
        assert [(r.level, r.message, r.data) for r in logs.items] == [
            (aj.LogLevel.INFO, "crunching 21", {"size": 21})
        ]


async def test_arguments_are_converted_to_annotated_types(store_url: str) -> None:
    rt = make_runtime(store_url)
    seen: list[object] = []

    @rt.task
    async def typed(
        ctx: aj.Context,
        when: datetime,
        delay: timedelta,
        ident: UUID,
        color: Color,
        point: Point,
        points: list[Point],
        flags: dict[str, bool],
    ) -> str:
        seen.extend([ctx.attempt, when, delay, ident, color, point, points, flags])
        return "ok"

    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    ident = UUID("12345678-1234-5678-1234-567812345678")
    point = Point(x=1, y=2.5, when=when)
    async with rt:
        job = await rt.once(
            typed,
            when,
            timedelta(seconds=90),
            ident,
            Color.BLUE,
            point,
            kwargs={"points": [point], "flags": {"a": True}},
        )
        with anyio.fail_after(5):
            assert await job.result() == "ok"
    assert seen == [1, when, timedelta(seconds=90), ident, Color.BLUE, point, [point], {"a": True}]


async def test_bad_arguments_are_refused_at_creation_and_nothing_is_stored(
    store_url: str,
) -> None:
    rt = make_runtime(store_url)

    @rt.task
    async def need(ctx: aj.Context, count: int, label: str = "x") -> None:
        return None

    async with rt:
        with pytest.raises(aj.InvalidArguments, match="'count'") as info:
            await rt.once(need, "many")
        assert info.value.parameter == "count"
        with pytest.raises(aj.InvalidArguments, match="'count'"):
            await rt.once(need)
        with pytest.raises(aj.InvalidArguments, match="unexpected"):
            await rt.once(need, 1, kwargs={"colour": "red"})
        with pytest.raises(aj.InvalidArguments, match="set"):
            await rt.once(need, 1, kwargs={"label": {1, 2}})
        with pytest.raises(aj.InvalidArguments, match="ctx"):
            await rt.once(need, 1, kwargs={"ctx": 3})
        with pytest.raises(aj.UnknownTask, match="'nope'"):
            await rt.once("nope")

        async def unregistered() -> None: ...

        with pytest.raises(aj.UnknownTask, match="unregistered"):
            await rt.once(unregistered)
        assert await rt.jobs.count() == 0
        assert await rt.executions.count() == 0


async def test_non_json_result_fails_naming_the_type(store_url: str) -> None:
    rt = make_runtime(store_url)

    @rt.task
    async def odd() -> object:
        return {1, 2}

    async with rt:
        job = await rt.once(odd)
        with anyio.fail_after(5), pytest.raises(aj.ExecutionFailed, match="set") as info:
            await job.result()
        assert info.value.error is not None
        assert "not JSON" in info.value.error.message


async def test_values_no_store_can_hold_fail_their_own_execution_only(store_url: str) -> None:
    """An integer past 64 bits or a lone surrogate: orjson, which every store writes with,
    has no form for them. Refused where they enter (an argument, a result), naming them;
    a log line keeps its text with U+FFFD; nothing else is held up."""
    rt = make_runtime(store_url, workers=8)

    @rt.task
    async def huge(ctx: aj.Context, text: bool) -> object:
        ctx.log.info("half \ud800 of a pair")
        return "\ud800" if text else 10**30

    @rt.task
    async def fine(ctx: aj.Context, i: int) -> int:
        ctx.log.info("fine %d", i)
        return i

    async with rt:
        with pytest.raises(aj.InvalidArguments, match=r"10000000000000000000000000000.*2\*\*64"):
            await rt.once(fine, 10**30)
        with pytest.raises(aj.InvalidArguments, match="lone surrogate"):
            await rt.once(fine, kwargs={"i": "\udc80"})
        bad = [await rt.once(huge, text) for text in (False, True)]
        good = [await rt.once(fine, i) for i in range(6)]
        with anyio.fail_after(10):
            assert [await job.result() for job in good] == list(range(6))
            for job, expected in zip(bad, ("too large for JSON", "lone surrogate"), strict=True):
                with pytest.raises(aj.ExecutionFailed, match=expected):
                    await job.result()
        logs = [line.message for line in (await rt.logs.list(job_id=bad[0].id)).items]
        assert "half \ufffd of a pair" in logs
        for job in good:
            assert [line.message for line in (await rt.logs.list(job_id=job.id)).items] == [
                f"fine {(await job.result())}"
            ]


async def test_an_item_the_store_refuses_fails_alone(tmp_path: object) -> None:
    """A write carries the outcomes and log lines of every execution that ended meanwhile. One
    the store refuses (here by a store that refuses a marked result and a marked log line)
    failed the whole batch: those executions stayed 'running', their logs lost. Now the
    batch is written item by item: the refused outcome fails its execution, saying why; the
    refused log line is dropped with a warning; the rest is written."""
    store = aj.stores.open_store(f"sqlite:///{tmp_path}/refuses.db")

    def refuse(batch: WriteBatch) -> None:
        if any(f.result == "poison" for f in batch.finishes):
            raise ValueError("a value this store cannot hold")
        if any(log.message == "poison" for log in batch.logs):
            raise ValueError("a line this store cannot hold")

    write, write_and_claim = store.write, store.write_and_claim

    async def refusing_write(batch: WriteBatch) -> list[bool]:
        refuse(batch)
        return await write(batch)

    async def refusing_write_and_claim(batch: WriteBatch, *args: Any, **kwargs: Any) -> Any:
        refuse(batch)
        return await write_and_claim(batch, *args, **kwargs)

    store.write = refusing_write  # type: ignore[method-assign]
    store.write_and_claim = refusing_write_and_claim  # type: ignore[method-assign]
    completed: list[object] = []
    rt = make_runtime(
        store,  # type: ignore[arg-type]
        workers=16,
        on_complete=lambda execution, result: completed.append(result),
    )
    gate = anyio.Event()

    @rt.task
    async def step(ctx: aj.Context, i: int) -> object:
        await gate.wait()
        ctx.log.info("poison" if i == 0 else f"line {i}")
        return "poison" if i == 1 else i

    async with rt:
        jobs = [await rt.once(step, i) for i in range(10)]
        await anyio.sleep(0.1)  # all running, waiting: they end together, in one batch
        gate.set()
        with anyio.fail_after(10):
            assert [await job.result() for job in jobs[2:]] == list(range(2, 10))
            assert await jobs[0].result() == 0
            with pytest.raises(aj.ExecutionFailed, match="could not be stored: a value") as info:
                await jobs[1].result()
        assert info.value.error is not None and info.value.error.type == "UnstorableOutcome"
        for i, job in enumerate(jobs):
            lines = [line.message for line in (await rt.logs.list(job_id=job.id)).items]
            assert lines == ([] if i == 0 else [f"line {i}"])
        assert await rt.executions.count(status="running") == 0
        # The runtime counts and tells what was written, not what the task returned.
        statistics = rt.statistics()
        assert (statistics.completed, statistics.failed) == (9, 1)
        assert "poison" not in completed and len(completed) == 9


async def test_progress_is_validated_at_the_call(store_url: str) -> None:
    rt = make_runtime(store_url)
    errors: list[str] = []

    @rt.task
    async def report(ctx: aj.Context) -> None:
        for bad in (101, -1, float("nan"), "50", True):
            try:
                ctx.progress(bad)  # type: ignore[arg-type]
            except ValueError as exc:
                errors.append(str(exc))
        ctx.progress(100, "done")

    async with rt:
        job = await rt.once(report)
        with anyio.fail_after(5):
            await job.result()
        ex = await job.wait()
        assert ex.progress == 100 and ex.progress_message == "done"
    assert len(errors) == 5
    assert "101" in errors[0] and "from 0 to 100" in errors[0]


async def test_retries_follow_the_backoff_then_succeed(store_url: str) -> None:
    rt = make_runtime(store_url)
    attempts: list[int] = []

    @rt.task(retries=3, backoff=aj.Backoff.fixed(0.01))
    async def flaky(ctx: aj.Context) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError(f"boom {ctx.attempt}")
        return ctx.attempt

    async with rt:
        job = await rt.once(flaky)
        with anyio.fail_after(5):
            assert await job.result() == 3
        ex = await job.wait()
        statuses = [t.status for t in await rt.executions.history(ex.id)]
        assert statuses == [
            S.QUEUED,
            S.RUNNING,
            S.RETRYING,
            S.QUEUED,
            S.RUNNING,
            S.RETRYING,
            S.QUEUED,
            S.RUNNING,
            S.COMPLETED,
        ]
        warnings = await rt.logs.list(execution_id=ex.id, level="warn")
        assert len(warnings.items) == 2
        assert "ConnectionError: boom 1" in warnings.items[0].message
    assert attempts == [1, 2, 3]


async def test_a_retry_due_at_once_starts_from_the_write_that_ends_the_run_before(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With no backoff the write that records a failed attempt may claim the next one of the
    same execution, which starts while the run before finishes its bookkeeping: each run
    is its own entry of the pool, and nothing goes wrong."""
    rt = make_runtime(store_url, workers=0)
    attempts: list[int] = []

    @rt.task(retries=3, backoff=0)
    async def flaky(ctx: aj.Context) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError(f"boom {ctx.attempt}")
        return ctx.attempt

    with caplog.at_level(logging.ERROR):
        async with rt:
            job = await rt.once(flaky)
            rt.resize(1)  # its first claim is full: the writes that follow claim too
            with anyio.fail_after(5):
                assert await job.result() == 3
            with anyio.fail_after(5):
                while rt.statistics().running:
                    await anyio.sleep(0.01)
        gc.collect()  # a task that died of an error says so when it is collected
    assert attempts == [1, 2, 3]
    # An execution's task that failed (the pool's entry of the run before taken for its
    # own) is reported when it is collected; the engine logs what it could not record.
    assert [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("asyncjobs") or "never retrieved" in r.getMessage()
    ] == []


async def test_retries_exhausted_fail_with_the_remote_error(store_url: str) -> None:
    rt = make_runtime(store_url)

    @rt.task(retries=1, backoff=0)
    async def always() -> None:
        raise KeyError("missing-thing")

    async with rt:
        job = await rt.once(always)
        with anyio.fail_after(5), pytest.raises(aj.ExecutionFailed) as info:
            await job.result()
        error = info.value.error
        assert error is not None and error.type == "KeyError"
        assert "missing-thing" in error.message
        assert "raise KeyError" in error.traceback
        assert info.value.execution.attempt == 2


async def test_timeout_fails_with_execution_timeout_and_counts_for_retries(
    store_url: str,
) -> None:
    rt = make_runtime(store_url)
    calls: list[int] = []

    @rt.task(timeout=0.05, retries=1, backoff=0)
    async def slow(ctx: aj.Context) -> None:
        calls.append(ctx.attempt)
        await anyio.sleep(10)

    async with rt:
        job = await rt.once(slow)
        with anyio.fail_after(5), pytest.raises(aj.ExecutionTimeout, match="timeout"):
            await job.result()
    assert calls == [1, 2]


async def test_cancel_a_queued_and_a_running_execution(store_url: str) -> None:
    rt = make_runtime(store_url)
    started = anyio.Event()
    cancelled = anyio.Event()

    @rt.task
    async def forever() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    async with rt:
        later = await rt.once(forever, after=3600)
        (waiting,) = await later.executions()
        assert waiting.status == S.SCHEDULED
        ex = await rt.executions.cancel(waiting.id)
        assert ex.status == S.CANCELLED

        job = await rt.once(forever)
        with anyio.fail_after(5):
            await started.wait()
        (running,) = await job.executions()
        ex = await rt.executions.cancel(running.id)
        assert cancelled.is_set()
        assert ex.status == S.CANCELLED
        with pytest.raises(aj.ExecutionCancelled):
            await job.result()
        await job.refresh()
        assert job.status == aj.JobStatus.FINISHED


async def test_stop_and_destroy_cancel_live_executions(store_url: str) -> None:
    rt = make_runtime(store_url)
    started = anyio.Event()

    @rt.task
    async def forever() -> None:
        started.set()
        await anyio.sleep_forever()

    async with rt:
        job = rt.job("pair").add(forever).add(forever)
        await job.push()
        with anyio.fail_after(5):
            await started.wait()
        stopped = await rt.jobs.stop(job.id)
        assert stopped.status == aj.JobStatus.STOPPED
        with anyio.fail_after(5):
            await job.wait()
        assert {e.status for e in await job.executions()} == {S.CANCELLED}
        deleted = await rt.jobs.destroy(job.id)
        assert deleted.status == aj.JobStatus.DELETED
        assert (await rt.jobs.get(job.id)).status == aj.JobStatus.DELETED


async def test_pause_holds_executions_until_resume(store_url: str) -> None:
    rt = make_runtime(store_url)

    @rt.task
    async def noop() -> str:
        return "ran"

    async with rt:
        job = await rt.once(noop, after=0.2)
        await rt.jobs.pause(job.id)
        await anyio.sleep(0.4)  # the due time passes while paused: it must not run
        (ex,) = await job.executions()
        assert ex.status in (S.SCHEDULED, S.QUEUED)
        await rt.jobs.resume(job.id)
        with anyio.fail_after(5):
            assert await job.result() == "ran"


async def test_priority_lower_runs_first_fifo_within(store_url: str) -> None:
    rt = make_runtime(store_url, workers=1)
    gate = anyio.Event()
    order: list[str] = []

    @rt.task
    async def block() -> None:
        await gate.wait()

    @rt.task
    async def mark(label: str) -> None:
        order.append(label)

    async with rt:
        blocker = await rt.once(block)
        with anyio.fail_after(5):
            while (await blocker.executions())[0].status != S.RUNNING:
                await anyio.sleep(0.01)
        jobs = [
            await rt.once(mark, "low-a", priority=5),
            await rt.once(mark, "high-a", priority=-1),
            await rt.once(mark, "mid", priority=0),
            await rt.once(mark, "high-b", priority=-1),
            await rt.once(mark, "low-b", priority=5),
        ]
        gate.set()
        with anyio.fail_after(5):
            for job in jobs:
                await job.wait()
    assert order == ["high-a", "high-b", "mid", "low-a", "low-b"]


async def test_idempotency_key_returns_the_live_job(store_url: str) -> None:
    rt = make_runtime(store_url, workers=0)

    @rt.task
    async def noop() -> None: ...

    async with rt:
        first = await rt.once(noop, key="report-2024-05", after=60)
        second = await rt.once(noop, key="report-2024-05", after=60)
        assert second.id == first.id
        assert await rt.jobs.count() == 1
        await rt.jobs.stop(first.id)
        third = await rt.once(noop, key="report-2024-05")
        assert third.id != first.id


async def test_hooks_per_task_and_per_runtime(store_url: str) -> None:
    seen: list[tuple[str, object]] = []

    def runtime_complete(ex: aj.Execution, result: object) -> None:
        seen.append(("rt-complete", result))

    def runtime_state(ex: aj.Execution, status: aj.ExecutionStatus) -> None:
        seen.append(("state", status.value))

    rt = make_runtime(store_url, on_complete=runtime_complete, on_state_change=runtime_state)

    async def forgive(ex: aj.Execution, error: BaseException | None) -> BaseException | None:
        seen.append(("terminate", type(error).__name__))
        return None if isinstance(error, LookupError) else error

    def translate(ex: aj.Execution, error: BaseException | None) -> BaseException | None:
        return RuntimeError(f"translated {type(error).__name__}")

    @rt.task(on_terminate=forgive, on_complete=lambda ex, r: seen.append(("task-complete", r)))
    async def soft() -> None:
        raise LookupError("not really an error")

    @rt.task(on_terminate=translate)
    async def hard() -> None:
        raise ValueError("x")

    async with rt:
        with anyio.fail_after(5):
            assert await (await rt.once(soft)).result() is None
            with pytest.raises(aj.ExecutionFailed, match="translated ValueError") as info:
                await (await rt.once(hard)).result()
    assert info.value.error is not None and info.value.error.type == "RuntimeError"
    assert ("terminate", "LookupError") in seen
    assert ("task-complete", None) in seen and ("rt-complete", None) in seen
    states = [value for kind, value in seen if kind == "state"]
    assert states == ["running", "completed", "running", "failed"]


async def test_events_stream_state_progress_and_logs_live(store_url: str) -> None:
    rt = make_runtime(store_url)
    go = anyio.Event()

    @rt.task
    async def talk(ctx: aj.Context) -> None:
        await go.wait()
        ctx.log.warning("careful")
        ctx.progress(40, "forty")
        await anyio.sleep(0.05)
        ctx.progress(90, "ninety")

    async with rt:
        job = await rt.once(talk)
        (ex,) = await job.executions()
        events: list[aj.Event] = []
        with anyio.fail_after(5):
            stream = rt.events(execution_id=ex.id, after=0)
            go.set()
            events.extend([event async for event in stream])
    kinds = [
        (type(e).__name__, getattr(e, "status", None) or getattr(e, "message", None))
        for e in events
    ]
    assert kinds[0] == ("StateChanged", S.QUEUED)
    assert ("LogWritten", "careful") in kinds
    assert ("ProgressReported", "forty") in kinds or ("ProgressReported", "ninety") in kinds
    assert kinds[-1] == ("StateChanged", S.COMPLETED)
    assert [e.seq for e in events] == sorted(e.seq for e in events)


async def test_stdlib_logging_inside_a_task_is_captured(store_url: str) -> None:
    rt = make_runtime(store_url)

    @rt.task
    def legacy() -> None:
        logging.getLogger("legacy.module").warning("disk at %d%%", 91)

    async with rt:
        job = await rt.once(legacy)
        with anyio.fail_after(5):
            ex = await job.wait()
        logs = await rt.logs.list(execution_id=ex.id)
        assert [(r.level, r.message, r.data["logger"]) for r in logs.items] == [
            (aj.LogLevel.WARN, "disk at 91%", "legacy.module")
        ]


async def test_all_seven_levels_and_level_filter(store_url: str) -> None:
    rt = make_runtime(store_url)

    @rt.task
    async def chatty(ctx: aj.Context) -> None:
        for name in ("trace", "debug", "info", "warn", "error", "fatal", "panic"):
            getattr(ctx.log, name)(name)

    async with rt:
        ex = await (await rt.once(chatty)).wait()
        every = await rt.logs.list(execution_id=ex.id)
        assert [r.message for r in every.items] == [
            "trace",
            "debug",
            "info",
            "warn",
            "error",
            "fatal",
            "panic",
        ]
        severe = await rt.logs.list(execution_id=ex.id, level="error")
        assert [r.message for r in severe.items] == ["error", "fatal", "panic"]
        with pytest.raises(ValueError, match="unknown log level 'loud'"):
            await rt.logs.list(level="loud")


async def test_query_api_pages_filters_and_categories(store_url: str) -> None:
    rt = make_runtime(store_url, workers=0)

    @rt.task(category="reports/daily")
    async def report(n: int) -> None: ...

    @rt.task
    async def other() -> None: ...

    async with rt:
        for n in range(7):
            await rt.once(report, n, after=60)
        await rt.once(other, category="etl")
        page = await rt.jobs.list(page=2, page_size=3, category="reports")
        assert page.total == 7 and len(page.items) == 3 and page.pages == 3
        assert await rt.jobs.count(category="reports/daily") == 7
        assert await rt.jobs.count(category="etl") == 1
        assert await rt.executions.count(status="scheduled") == 7
        assert await rt.executions.count(status="queued") == 1
        cats = {c.name: c.jobs for c in await rt.categories.list()}
        assert cats == {"reports": 0, "reports/daily": 7, "etl": 1}
        with pytest.raises(ValueError, match="unknown execution status 'done'"):
            await rt.executions.list(status="done")
        with pytest.raises(ValueError, match="page_size"):
            await rt.jobs.list(page_size=0)
        with pytest.raises(aj.JobNotFound, match="no job with id 'nope'"):
            await rt.jobs.get("nope")
        with pytest.raises(aj.ExecutionNotFound, match="'nope'"):
            await rt.executions.get("nope")


async def test_multi_step_job_runs_every_step(store_url: str) -> None:
    rt = make_runtime(store_url)

    @rt.task
    async def step(label: str) -> str:
        return label

    async with rt:
        job = rt.job("pipeline", category="etl").add(step, "extract").add(step, "load")
        await job.push()
        with anyio.fail_after(5):
            assert await job.result() == "load"
        assert [e.result for e in await job.executions()] == ["extract", "load"]
        with pytest.raises(aj.InvalidArguments, match="at least one step"):
            await rt.job("empty").push()


async def test_shared_data_is_read_and_written(store_url: str) -> None:
    rt = make_runtime(store_url)

    @rt.task
    async def bump(ctx: aj.Context) -> int:
        count = ctx.shared.get("count", 0)
        assert isinstance(count, int)
        ctx.shared["count"] = count + 1
        return count + 1

    async with rt:
        job = await rt.once(bump, shared={"count": 41})
        with anyio.fail_after(5):
            assert await job.result() == 42
        await job.refresh()
        assert job.shared == {"count": 42}


async def test_resize_changes_concurrency_while_running(store_url: str) -> None:
    rt = make_runtime(store_url, workers=1)
    running = 0
    peak = 0
    gate = anyio.Event()

    @rt.task
    async def hold() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        running -= 1

    async with rt:
        jobs = [await rt.once(hold) for _ in range(4)]
        await anyio.sleep(0.2)
        assert peak == 1
        rt.resize(3)
        with anyio.fail_after(5):
            while peak < 3:
                await anyio.sleep(0.01)
        assert rt.statistics().running == 3
        gate.set()
        for job in jobs:
            await job.wait()
    assert peak == 3


async def test_a_runtime_with_a_free_slot_starts_what_it_pushes_in_the_same_write(
    store_url: str,
) -> None:
    """The push claims for its own node: the execution is running when once() returns, with
    no dispatcher round trip; with no slot free it is queued and runs when one frees."""
    rt = make_runtime(store_url, workers=1, poll_interval=30)
    gate = anyio.Event()

    @rt.task
    async def hold() -> None:
        await gate.wait()

    async with rt:
        # Let the dispatcher's first claim end: a push made while a claim holds the free
        # slots leaves its execution to the dispatcher (which the long poll would delay).
        await anyio.sleep(0.2)
        first = await rt.once(hold)
        (ex,) = (await rt.executions.list(job_id=first.id)).items
        assert ex.status == S.RUNNING and ex.node is not None
        second = await rt.once(hold)
        (waiting,) = (await rt.executions.list(job_id=second.id)).items
        assert waiting.status == S.QUEUED  # the only slot is taken
        gate.set()
        with anyio.fail_after(5):
            assert (await second.wait()).status == S.COMPLETED


async def test_concurrent_pushes_never_run_more_than_the_pool(store_url: str) -> None:
    rt = make_runtime(store_url, workers=3)
    running = peak = 0

    @rt.task
    async def brief() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.02)
        running -= 1

    async with rt:
        jobs: list[aj.Job] = []

        async def push() -> None:
            jobs.append(await rt.once(brief))

        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(push)
        with anyio.fail_after(10):
            for job in jobs:
                assert (await job.wait()).status == S.COMPLETED
    assert peak == 3


async def test_ended_executions_hand_their_slots_on_in_the_write_that_ends_them(
    store_url: str,
) -> None:
    """Draining a queue, the write of a batch's outcomes claims their successors in the same
    transaction (no claim of its own), and the pool still never runs more than it holds;
    once the queue is empty, writes claim nothing."""
    store = aj.stores.open_store(store_url)
    handed_on = write_and_claim_calls = 0
    write_and_claim = store.write_and_claim

    async def counted(*args: Any, **kwargs: Any) -> tuple[list[bool], list[Claim]]:
        nonlocal handed_on, write_and_claim_calls
        write_and_claim_calls += 1
        applied, claims = await write_and_claim(*args, **kwargs)
        handed_on += len(claims)
        return applied, claims

    store.write_and_claim = counted  # type: ignore[method-assign]
    rt = make_runtime(store, workers=0)  # type: ignore[arg-type]
    running = peak = 0

    @rt.task
    async def brief(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.lowlevel.checkpoint()
        running -= 1
        return i

    async with rt:
        jobs = [await rt.once(brief, i) for i in range(30)]
        rt.resize(3)
        with anyio.fail_after(10):
            assert [await job.result() for job in jobs] == list(range(30))
        assert peak == 3
        assert handed_on >= 15  # 27 (all but the first claim's) unless a batch came apart
        # The queue is empty: a push claims its own execution, and its write claims nothing.
        calls = write_and_claim_calls
        with anyio.fail_after(10):
            for i in range(5):
                assert await (await rt.once(brief, i)).result() == i
        assert write_and_claim_calls == calls


async def test_an_execution_keeps_its_slot_until_its_hooks_have_run(store_url: str) -> None:
    seen: list[str] = []

    async def after(ex: aj.Execution, result: object) -> None:
        seen.append(f"hook {result}")
        await anyio.sleep(0.05)
        seen.append(f"hook {result} done")

    rt = make_runtime(store_url, workers=0, on_complete=after)

    @rt.task
    async def step(i: int) -> int:
        seen.append(f"start {i}")
        return i

    async with rt:
        jobs = [await rt.once(step, i) for i in range(2)]
        rt.resize(1)
        with anyio.fail_after(10):
            for job in jobs:
                await job.wait()
            while len(seen) < 6:
                await anyio.sleep(0.01)
    assert seen == ["start 0", "hook 0", "hook 0 done", "start 1", "hook 1", "hook 1 done"]


async def test_pushes_start_in_their_own_write_while_the_dispatcher_looks_for_work(
    store_url: str,
) -> None:
    """An idle dispatcher polling often holds the free slots for a moment at each look at
    the queue; a push meanwhile waits for the look to end instead of leaving its job queued
    for a later claim."""
    rt = make_runtime(store_url, workers=40, poll_interval=0.001)
    gate = anyio.Event()

    @rt.task
    async def hold() -> None:
        await gate.wait()

    async with rt:
        await anyio.sleep(0.05)
        statuses = []
        for _ in range(30):
            job = await rt.once(hold)
            (ex,) = (await rt.executions.list(job_id=job.id)).items
            statuses.append(ex.status)
        gate.set()
    assert statuses == [S.RUNNING] * 30


async def test_a_stop_does_not_wait_out_its_timeout_for_a_claim_in_flight(
    store_url: str,
) -> None:
    # The dispatcher claims at every poll; a stop must not take a claim that was in flight
    # when it began for a running execution (it once waited the whole shutdown_timeout).
    rt = make_runtime(store_url, poll_interval=0.001, shutdown_timeout=30)

    @rt.task
    async def noop() -> None: ...

    for _ in range(3):
        await rt.start()
        await anyio.sleep(0.05)
        with anyio.fail_after(5):
            await rt.stop()


async def test_start_and_stop_from_different_tasks(store_url: str) -> None:
    # A notebook starts the runtime in one cell and stops it in another.
    rt = make_runtime(store_url)

    @rt.task
    async def noop() -> int:
        return 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(rt.start)
    assert await (await rt.once(noop)).result() == 1
    async with anyio.create_task_group() as tg:
        tg.start_soon(rt.stop)
    with pytest.raises(RuntimeError, match="not started"):
        await rt.once(noop)


async def test_graceful_stop_puts_unfinished_work_back_without_an_attempt(
    tmp_path: object,
) -> None:
    url = f"sqlite:///{tmp_path}/stop.db"
    attempts: list[int] = []
    started = anyio.Event()

    def build() -> aj.Runtime:
        rt = make_runtime(url, shutdown_timeout=0.1)

        @rt.task(name="long")
        async def long(ctx: aj.Context) -> int:
            attempts.append(ctx.attempt)
            started.set()
            if len(attempts) == 1:
                await anyio.sleep(30)
            return ctx.attempt

        return rt

    rt = build()
    async with rt:
        job = await rt.once("long")
        with anyio.fail_after(5):
            await started.wait()
    (ex,) = await _executions_after_stop(url, job.id)
    assert ex.status == S.RETRYING and ex.attempt == 1
    rt = build()
    async with rt:
        again = await rt.jobs.get(job.id)
        with anyio.fail_after(5):
            assert await again.result() == 1
    assert attempts == [1, 1]


async def test_a_stop_puts_back_what_a_write_in_flight_claims_after_the_drain(
    tmp_path: object,
) -> None:
    """A write that hands slots on and returns after the stop stopped waiting for running
    executions: what it claimed is put back at once (no attempt used), its body not begun."""
    url = f"sqlite:///{tmp_path}/late.db"
    store = aj.stores.open_store(url)
    entered, gate = anyio.Event(), anyio.Event()
    write_and_claim = store.write_and_claim

    async def held(*args: Any, **kwargs: Any) -> tuple[list[bool], list[Claim]]:
        entered.set()
        await gate.wait()
        return await write_and_claim(*args, **kwargs)

    store.write_and_claim = held  # type: ignore[method-assign]
    rt = make_runtime(store, workers=0, shutdown_timeout=0.1)  # type: ignore[arg-type]

    started: list[int] = []

    @rt.task
    async def step(i: int) -> int:
        started.append(i)
        if i >= 2:
            await anyio.sleep(30)
        return i

    await rt.start()
    jobs = [await rt.once(step, i) for i in range(4)]
    rt.resize(2)  # claims 0 and 1; their write hands the slots to 2 and 3, held at the gate
    with anyio.fail_after(5):
        await entered.wait()
    with anyio.fail_after(5):  # not the 30 s of the late ones, nor a 10 s wait for them
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.stop)
            await anyio.sleep(0.3)  # past the drain's timeout, the write still in flight
            gate.set()
    done = [await _executions_after_stop(url, job.id) for job in jobs]
    assert [ex.status for (ex,) in done] == [S.COMPLETED, S.COMPLETED, S.RETRYING, S.RETRYING]
    assert all(ex.attempt == 1 for (ex,) in done)
    assert started == [0, 1]  # the ones put back never began


async def test_a_push_given_up_on_still_starts_what_its_claim_took(tmp_path: object) -> None:
    """A push whose caller gives up while the claim in its transaction is at the store: once
    committed, the execution is 'running' on this node, so the push starts it all the same
    (without that, it sat 'running' with nothing running it until the stop)."""
    url = f"sqlite:///{tmp_path}/given-up.db"
    store = aj.stores.open_store(url)
    add_job_and_claim = store.add_job_and_claim

    async def slow_answer(*args: Any, **kwargs: Any) -> Any:
        result = await add_job_and_claim(*args, **kwargs)
        await anyio.sleep(0.2)  # committed; the answer is slow to come back
        return result

    store.add_job_and_claim = slow_answer  # type: ignore[method-assign]
    rt = make_runtime(store)  # type: ignore[arg-type]
    ran: list[int] = []

    @rt.task
    async def step(i: int) -> None:
        ran.append(i)

    async with rt:
        await rt.once(step, 0)  # the dispatcher's first look is over: the next push claims
        with anyio.fail_after(5):
            while ran != [0]:
                await anyio.sleep(0.01)
        with anyio.move_on_after(0.05) as waited:
            job = await rt.once(step, 1)
        assert waited.cancel_called
        with anyio.fail_after(5):
            while ran != [0, 1]:
                await anyio.sleep(0.01)
    ((execution,),) = [await _executions_after_stop(url, job.id)]
    assert (execution.status, execution.attempt) == (S.COMPLETED, 1)


async def test_a_stop_starts_what_the_dispatchers_claim_in_flight_took(tmp_path: object) -> None:
    """A stop that lands while the dispatcher's claim is at the store: what it took is
    started and drained as usual, not left 'running' for the stop's recovery to count as
    crashed (which failed them with on_worker_lost='fail')."""
    url = f"sqlite:///{tmp_path}/claim-in-flight.db"
    store = aj.stores.open_store(url)
    claim, answering = store.claim, anyio.Event()

    async def slow_answer(*args: Any, **kwargs: Any) -> Any:
        result = await claim(*args, **kwargs)
        if result:
            answering.set()
            await anyio.sleep(0.2)  # committed; the answer is slow to come back
        return result

    store.claim = slow_answer  # type: ignore[method-assign]
    rt = make_runtime(store, workers=0)  # type: ignore[arg-type]

    @rt.task(on_worker_lost="fail")
    async def step(i: int) -> int:
        return i

    await rt.start()
    jobs = [await rt.once(step, i) for i in range(3)]
    rt.resize(3)
    with anyio.fail_after(5):
        await answering.wait()
        await rt.stop()
    done = [await _executions_after_stop(url, job.id) for job in jobs]
    assert [(ex.status, ex.attempt) for (ex,) in done] == [(S.COMPLETED, 1)] * 3


async def test_leaving_a_runtime_block_cut_short_stops_the_runtime_first(
    tmp_path: object,
) -> None:
    """A cancel scope around ``async with rt`` that runs out: the stop it starts is cancelled
    too, and returned at once, leaving the runtime running after the block. Now the drain is
    cut short (running executions go back to the queue) and the stop ends before the block."""
    url = f"sqlite:///{tmp_path}/cut-block.db"
    rt = make_runtime(url, shutdown_timeout=30)
    began = anyio.Event()

    @rt.task
    async def slow() -> None:
        began.set()
        await anyio.sleep(30)

    with anyio.fail_after(10), anyio.CancelScope() as block:
        async with rt:
            job = await rt.once(slow)
            await began.wait()
            block.cancel()
            await anyio.sleep(30)
    ((execution,),) = [await _executions_after_stop(url, job.id)]
    assert (execution.status, execution.attempt) == (S.RETRYING, 1)  # put back, not running


async def test_a_start_given_up_on_leaves_nothing_running(
    tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    """A start cut short (a timeout around it) went on starting the engine in the background,
    against a store the cut then closed: its loops logged failures forever after."""
    rt = make_runtime(f"sqlite:///{tmp_path}/cut-start.db")

    @rt.task
    async def step() -> int:
        return 1

    with caplog.at_level(logging.ERROR, logger="asyncjobs"):
        for delay in (0, 0.001, 0.003, 0.01, 0.03):
            with anyio.move_on_after(delay):
                await rt.start()
            await rt.stop()
        async with rt:  # and it starts again, whole
            assert await (await rt.once(step)).result() == 1
        await anyio.sleep(0.2)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def _executions_after_stop(url: str, job_id: str) -> list[aj.Execution]:
    rt = aj.Runtime(url, workers=0)
    async with rt:
        return list((await rt.executions.list(job_id=job_id)).items)


async def test_restart_sees_earlier_jobs_executions_and_logs(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/again.db"

    def build() -> aj.Runtime:
        rt = make_runtime(url)

        @rt.task(name="note")
        async def note(ctx: aj.Context) -> str:
            ctx.log.info("noted")
            return "kept"

        return rt

    async with build() as rt:
        job = await rt.once("note")
        await job.wait()
    async with build() as rt:
        again = await rt.jobs.get(job.id)
        assert again.status == aj.JobStatus.FINISHED
        (ex,) = await again.executions()
        assert ex.result == "kept"
        logs = await rt.logs.list(execution_id=ex.id)
        assert [r.message for r in logs.items] == ["noted"]


def test_unknown_store_scheme_lists_the_supported_ones() -> None:
    with pytest.raises(aj.InvalidStoreURL, match="memory://, sqlite:///"):
        aj.Runtime("redis://localhost")


def test_bad_options_name_the_value() -> None:
    with pytest.raises(ValueError, match="workers must be >= 0, got -1"):
        aj.Runtime("memory://", workers=-1)
    rt = aj.Runtime("memory://")
    with pytest.raises(ValueError, match="retries must be >= 0, got -2"):
        rt.task(retries=-2)(lambda: None)
    with pytest.raises(ValueError, match="on_worker_lost"):
        rt.task(on_worker_lost="maybe")(lambda: None)
    with pytest.raises(ValueError, match="timeout must be > 0"):
        rt.task(timeout=0)(lambda: None)


YEARS_100 = r"\(at most 100 years\)"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (
            {"health_interval": math.inf},
            f"health_interval must be > 0 seconds {YEARS_100}, got inf",
        ),
        ({"health_interval": 1e12}, r"health_interval must be .*got 1000000000000.0"),
        ({"poll_interval": math.inf}, "poll_interval must be .*got inf"),
        ({"shutdown_timeout": math.nan}, "shutdown_timeout must be .*got nan"),
        ({"retention": math.inf}, "retention must be .* or None to keep ended executions for good"),
        ({"log_retention": 1e300}, r"log_retention must be .*got 1e\+300"),
        ({"clock": "x"}, "clock must be an aj.Clock .*got 'x'"),
        ({"process_limits": "x"}, "process_limits must be an aj.ProcessLimits, got 'x'"),
        ({"system_jobs": "no"}, "system_jobs must be True or False, got 'no'"),
    ],
)
def test_runtime_options_are_refused_up_front_naming_the_value(
    options: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        aj.Runtime("memory://", **options)


def test_a_store_that_is_neither_a_url_nor_a_store_is_refused() -> None:
    with pytest.raises(aj.InvalidStoreURL, match=r"store must be a store URL .*got 5"):
        aj.Runtime(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: aj.Backoff.fixed(math.inf), f"Backoff.fixed\\(seconds\\) must be .*{YEARS_100}"),
        (
            lambda: aj.Backoff.fixed("5"),  # type: ignore[arg-type]
            "must be seconds or a timedelta, got '5'",
        ),
        (lambda: aj.Backoff.exponential(10, 1), "cap=...\\) must be at least base \\(10\\), got 1"),
        (
            lambda: aj.Backoff.exponential(jitter="x"),  # type: ignore[arg-type]
            "jitter=...\\) must be a fraction .*got 'x'",
        ),
        (lambda: aj.ProcessLimits(kill_grace=math.inf), "kill_grace must be .*got inf"),
        (lambda: aj.Command(["ls"], timeout=math.inf), "timeout must be > 0 seconds .*got inf"),
        (
            lambda: aj.Command(["ls"], cwd=5),  # type: ignore[arg-type]
            "cwd must be a directory path .*got 5",
        ),
        (lambda: aj.Command(["env"], env={"A=B": "1"}), "env names must be .*got 'A=B'"),
        (lambda: aj.Command(["env"], env={"A": "x\0y"}), "env value of 'A' must not contain a NUL"),
        (lambda: aj.Command(["echo", "a\0b"]), "argv\\[1\\] must not contain a NUL"),
        (lambda: aj.Command([""]), "program \\(argv\\[0\\]\\) must be a non-empty string"),
    ],
)
def test_bad_backoffs_limits_and_commands_are_refused_naming_the_value(
    make: Any, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        make()


async def test_retention_none_keeps_ended_executions_for_good() -> None:
    async with aj.Runtime("memory://", workers=0, retention=None) as rt:
        (cleanup,) = (await rt.jobs.list(name="retention cleanup")).items
        kwargs = cleanup.record.steps[0].kwargs
        assert kwargs["retention"] == kwargs["log_retention"] == 100 * 365.25 * 86400


async def test_bad_job_options_are_refused_and_nothing_is_lost(store_url: str) -> None:
    rt = make_runtime(store_url)

    @rt.task(retries=1)
    async def add(a: int) -> int:
        return a

    async with rt:
        good = await rt.once(add, 1)
        with anyio.fail_after(5):
            assert await good.result() == 1
        with pytest.raises(ValueError, match=f"timeout must be > 0 seconds {YEARS_100}, got inf"):
            await rt.once(add, 1, timeout=math.inf)
        with pytest.raises(ValueError, match="priority must be <= 2147483647, got 3000000000"):
            await rt.once(add, 1, priority=3_000_000_000)
        with pytest.raises(ValueError, match="priority must be >= -2147483648"):
            rt.task(name="low", priority=-(2**40))(add)
        with pytest.raises(ValueError, match="retries must be <= 2147483647"):
            await rt.once(add, 1, retries=2**63)
        with pytest.raises(ValueError, match=r"a job name must be a non-empty string.*got 5"):
            await rt.once(add, 1, name=5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"a job name must be a non-empty string.*got 123"):
            rt.job(123)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="backoff for one job cannot be a function"):
            await rt.once(add, 1, backoff=lambda n: 30)  # type: ignore[arg-type]
        with pytest.raises(aj.InvalidArguments, match=r"^job 'empty' needs at least one step"):
            await rt.job("empty").push()
        with pytest.raises(
            ValueError, match="page must be at most 1000000, got 4611686018427387904"
        ):
            await rt.jobs.list(page=2**62)
        with pytest.raises(ValueError, match="page must be at most 1000000"):
            await rt.executions.list(page=10**30)
        # Nothing was stored, and what was stays readable.
        assert await rt.jobs.count() == 1
        assert [e.job_id for e in (await rt.executions.list()).items] == [good.id]


async def test_second_stop_aborts_the_drain(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/abort.db"
    rt = make_runtime(url, shutdown_timeout=60)
    started = anyio.Event()

    @rt.task
    async def stubborn() -> None:
        started.set()
        await anyio.sleep(60)

    await rt.start()
    job = await rt.once(stubborn)
    with anyio.fail_after(5):
        await started.wait()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.stop)
            await anyio.sleep(0.1)
            await rt.stop()
    (ex,) = await _executions_after_stop(url, job.id)
    assert ex.status == S.RETRYING and ex.attempt == 1


async def test_bad_query_filters_are_refused_naming_the_value() -> None:
    async with make_runtime("memory://") as rt:
        with pytest.raises(ValueError, match="the category filter must be a string, got 5"):
            await rt.jobs.list(category=5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"the name filter must be a string, got \[1\]"):
            await rt.jobs.count(name=[1])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="the task filter must be a string, got 3"):
            await rt.executions.list(task=3)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="after must be an integer, got 'x'"):
            async for _ in rt.events(after="x"):  # type: ignore[arg-type]
                pass
        with pytest.raises(ValueError, match="after must be >= 0, got -1"):
            async for _ in rt.events(after=-1):
                pass
