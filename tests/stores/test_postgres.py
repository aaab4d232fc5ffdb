"""What is particular to PostgreSQL: its own schema, migrations under a lock, refusing schemas
it must not touch, clear connection errors, and several stores (nodes) on one database."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
import uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING

import anyio
import asyncpg
import pytest

from asyncjobs import InvalidStoreURL, SchemaVersionError, StoreError
from asyncjobs._models import StepSpec
from asyncjobs._types import ExecutionId, JobId, new_id
from asyncjobs.stores import (
    ExecutionQuery,
    JobQuery,
    NewExecution,
    NewJob,
    NodeInfo,
    PostgresStore,
    open_store,
)
from asyncjobs.stores.base import WORK
from asyncjobs.stores.postgres import SCHEMA_VERSION, split_url
from tests.pg import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

    from asyncjobs.stores import Store
    from tests.pg import PostgresServer

pytestmark = pytest.mark.anyio
T0 = 1_700_000_000.0


def _job_with(count: int) -> tuple[NewJob, list[NewExecution]]:
    job = NewJob(
        id=JobId(new_id()),
        name="many",
        category="default",
        schedule={"kind": "once"},
        steps=(StepSpec(task="t"),),
        priority=0,
        shared={},
        key=None,
        created_at=T0,
    )
    executions = [
        NewExecution(
            id=ExecutionId(new_id()),
            job_id=job.id,
            step=i,
            spec=job.steps[0],
            priority=0,
            scheduled_for=T0,
            created_at=T0,
        )
        for i in range(count)
    ]
    return job, executions


@contextmanager
def _loop_reports() -> Iterator[list[str]]:
    """What the loop's exception handler is given meanwhile (where asyncpg reports)."""
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context["message"]))
    try:
        yield reported
    finally:
        loop.set_exception_handler(handler)


def _fresh() -> str:
    return f"s_{uuid.uuid4().hex[:12]}"


async def _sql(server: PostgresServer, *statements: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{server.port}/postgres")
    try:
        rows: list[asyncpg.Record] = []
        for statement in statements:
            rows = await conn.fetch(statement)
        return rows
    finally:
        await conn.close()


def test_urls_name_the_schema_and_never_keep_the_password() -> None:
    dsn, schema, public = split_url("postgresql://me:s3cret@db.example:5433/jobs?schema=team_a")
    assert schema == "team_a"
    assert dsn == "postgresql://me:s3cret@db.example:5433/jobs"
    assert public == "postgresql://me@db.example:5433/jobs?schema=team_a"
    assert "s3cret" not in PostgresStore("postgres://me:s3cret@h/db?sslmode=disable").url
    assert split_url("postgresql://h/db", "other")[1] == "other"
    assert split_url("postgresql://h/db")[1] == "asyncjobs"
    with pytest.raises(InvalidStoreURL, match=r"invalid PostgreSQL schema name 'Bad-Name'"):
        PostgresStore("postgresql://me:s3cret@h/db?schema=Bad-Name")
    with pytest.raises(InvalidStoreURL, match=r"invalid PostgreSQL schema name '1x'") as caught:
        PostgresStore("postgresql://me:s3cret@h/db?schema=1x")
    assert "s3cret" not in str(caught.value)


async def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    url = f"postgresql://me:s3cret@127.0.0.1:{free_port()}/db"
    with pytest.raises(StoreError, match="cannot connect to the PostgreSQL store") as caught:
        async with open_store(url):
            pass
    assert "s3cret" not in str(caught.value)
    assert f"postgresql://me@127.0.0.1:{url.rsplit(':', 1)[1]}" in str(caught.value)


async def test_the_store_lives_in_its_own_versioned_schema(pg_server: PostgresServer) -> None:
    name = _fresh()
    url = pg_server.url(schema=name)
    async with open_store(url) as store:
        assert store.url == url
        await store.add_job(*_job_with(1))
    tables = await _sql(pg_server, f"SELECT tablename FROM pg_tables WHERE schemaname = '{name}'")
    assert {"jobs", "executions", "events", "ticks", "asyncjobs_meta"} <= {r[0] for r in tables}
    (version,) = await _sql(pg_server, f"SELECT value FROM {name}.asyncjobs_meta")
    assert version[0] == str(SCHEMA_VERSION)
    async with open_store(url) as again:  # reopening migrates nothing and keeps the rows
        assert await again.count_jobs(JobQuery()) == 1


async def test_a_version_1_schema_is_migrated_and_keeps_its_rows(pg_server: PostgresServer) -> None:
    name = _fresh()
    url = pg_server.url(schema=name)
    cron = dataclasses.replace(
        _job_with(0)[0], schedule={"kind": "cron", "expr": "* * * * *"}, next_fire_at=T0 + 60
    )
    async with open_store(url) as store:
        await store.add_job(*_job_with(2))
        await store.add_job(cron, [])
    # As a version-1 store left it: without the index of version 2, with version 1's jobs_due.
    await _sql(
        pg_server,
        f"DROP INDEX {name}.executions_limited",
        f"DROP INDEX {name}.jobs_due",
        f"CREATE INDEX jobs_due ON {name}.jobs (next_fire_at) WHERE status = 'active'",
        f"UPDATE {name}.asyncjobs_meta SET value = '1'",
    )
    async with open_store(url) as store:
        assert await store.count_jobs(JobQuery()) == 2
        # The rebuilt due index still finds the schedule, and only it.
        assert await store.next_fire() == T0 + 60
        assert [j.id for j in await store.due_jobs(T0 + 60, 10)] == [cron.id]
        assert await store.due_jobs(T0 + 59, 10) == []
    indexes = dict(
        await _sql(
            pg_server, f"SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = '{name}'"
        )
    )
    assert "executions_limited" in indexes
    # Version 3: one-off jobs (no next fire time) are not in the due index.
    assert "next_fire_at IS NOT NULL" in indexes["jobs_due"]
    (version,) = await _sql(pg_server, f"SELECT value FROM {name}.asyncjobs_meta")
    assert version[0] == str(SCHEMA_VERSION)


async def test_a_newer_schema_is_refused_untouched(pg_server: PostgresServer) -> None:
    name = _fresh()
    url = pg_server.url(schema=name)
    async with open_store(url):
        pass
    await _sql(pg_server, f"UPDATE {name}.asyncjobs_meta SET value = '99'")
    with pytest.raises(
        SchemaVersionError, match=f"version 99, newer than this code's {SCHEMA_VERSION}"
    ):
        async with open_store(url):
            pass
    (version,) = await _sql(pg_server, f"SELECT value FROM {name}.asyncjobs_meta")
    assert version[0] == "99"


async def test_a_foreign_schema_is_refused_untouched(pg_server: PostgresServer) -> None:
    name = _fresh()
    await _sql(pg_server, f"CREATE SCHEMA {name}", f"CREATE TABLE {name}.orders (id int)")
    with pytest.raises(SchemaVersionError, match=r"holds tables that asyncjobs did not create"):
        async with open_store(pg_server.url(schema=name)):
            pass
    tables = await _sql(pg_server, f"SELECT tablename FROM pg_tables WHERE schemaname = '{name}'")
    assert [r[0] for r in tables] == ["orders"]


async def test_runtimes_starting_at_once_migrate_once(pg_server: PostgresServer) -> None:
    url = pg_server.url()
    errors: list[BaseException] = []

    async def open_one() -> None:
        try:
            async with open_store(url):
                pass
        except Exception as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(open_one)
    assert errors == []


async def test_two_stores_on_one_database_claim_each_execution_once(
    pg_server: PostgresServer,
) -> None:
    url = pg_server.url()
    async with open_store(url) as first, open_store(url) as second:
        job, executions = _job_with(300)
        await first.add_job(job, executions)
        claimed: list[str] = []

        async def claimer(store: Store, node: NodeInfo) -> None:
            while claims := await store.claim(node, 7, T0):
                claimed.extend(c.execution.id for c in claims)

        async with anyio.create_task_group() as tg:
            for i, store in enumerate((first, second, first, second)):
                node = NodeInfo(id=f"n{i}", host="h", pid=i, started_at=T0, heartbeat_at=T0)
                tg.start_soon(claimer, store, node)
    assert sorted(claimed) == sorted(e.id for e in executions)


async def test_watchers_hear_other_stores_changes_and_not_their_own(
    pg_server: PostgresServer,
) -> None:
    url = pg_server.url()
    heard: list[frozenset[str]] = []
    async with open_store(url) as watching, open_store(url) as other:
        await watching.watch(heard.append)
        job, executions = _job_with(2)
        await watching.add_job(job, executions)  # its own change: not reported
        other_job, other_executions = _job_with(1)
        with anyio.fail_after(5):
            await other.add_job(other_job, other_executions)
            while not heard:
                await anyio.sleep(0.01)
        (keys,) = heard
        assert {WORK, other_job.id, other_executions[0].id} <= keys
        assert job.id not in keys
    # Closed: nothing more is heard, and the listening connection is gone.
    async with open_store(url) as other:
        await other.add_job(*_job_with(1))
        await anyio.sleep(0.2)
    assert len(heard) == 1


async def test_a_reader_following_the_events_misses_none_of_concurrent_pushes(
    pg_server: PostgresServer,
) -> None:
    # Pushes commit in one statement each (add_job, and add_job_and_claim when the push is
    # next in line), from two stores at once, beside claims and their writes. A reader that
    # has seen seq N must never see a smaller seq appear later: each statement takes the
    # events lock before it draws a seq, and holds it until it commits.
    url = pg_server.url()
    node = NodeInfo(id="n", host="h", pid=1, started_at=T0, heartbeat_at=T0)
    async with open_store(url) as first, open_store(url) as second, open_store(url) as reader:
        seen: list[int] = []
        done = anyio.Event()

        async def follow() -> None:
            while True:
                finished = done.is_set()  # one more read after the last push
                after = seen[-1] if seen else 0
                seen.extend(e.seq for e in await reader.events_after(after, limit=1000))
                if finished:
                    return

        async def push(store: Store, claiming: bool) -> None:
            for _ in range(60):
                job, executions = _job_with(1)
                if claiming:
                    await store.add_job_and_claim(job, executions, node, 1, T0)
                else:
                    await store.add_job(job, executions)

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            async with anyio.create_task_group() as pushers:
                for store, claiming in ((first, False), (second, True), (first, True)):
                    pushers.start_soon(push, store, claiming)
            done.set()
        everything = [e.seq for e in await reader.events_after(0, limit=5000)]
    assert seen == everything  # read in order, nothing skipped and found later
    assert len(everything) >= 180 + 120  # a 'queued' per push, a 'running' per claim


async def test_a_call_cut_short_mid_statement_rolls_back_quietly(
    pg_server: PostgresServer,
) -> None:
    # A stop or a timeout can cancel a store call while its statement runs at the server.
    # asyncpg cancels the statement; the rollback after it must not be cancelled in turn, or
    # the pool rolls back when it takes the connection back and logs "Resetting connection
    # with an active transaction" at ERROR through the loop, on every such cut.
    url = pg_server.url()
    dsn, schema, _ = split_url(url)
    with _loop_reports() as reported:
        async with open_store(url) as store:
            kept, kept_executions = _job_with(1)
            await store.add_job(kept, kept_executions)
            blocker = await asyncpg.connect(dsn)
            try:
                holding = blocker.transaction()
                await holding.start()
                await blocker.execute(f'LOCK TABLE "{schema}".jobs IN ACCESS EXCLUSIVE MODE')
                cut, cut_executions = _job_with(1)
                with anyio.move_on_after(0.3) as write:
                    await store.add_job(cut, cut_executions)  # waits on the lock
                with anyio.move_on_after(0.3) as read:
                    await store.list_jobs(JobQuery())
                assert write.cancelled_caught and read.cancelled_caught
                await holding.rollback()
            finally:
                await blocker.close()
            # The cut push left nothing behind, and the store goes on.
            assert [j.id for j in (await store.list_jobs(JobQuery())).items] == [kept.id]
            await store.add_job(*_job_with(1))
            assert (await store.list_jobs(JobQuery())).total == 2
    assert reported == []


async def test_calls_cut_short_at_any_point_report_nothing_and_lose_nothing(
    pg_server: PostgresServer,
) -> None:
    # Cuts at random points of reads and pushes: in BEGIN (which asyncpg counts as the
    # connection's transaction before it is sent), mid-statement, in COMMIT.
    url = pg_server.url()
    with _loop_reports() as reported:
        async with open_store(url) as store:
            started = time.perf_counter()
            await store.add_job(*_job_with(1))
            took = time.perf_counter() - started
            for _ in range(150):
                with anyio.move_on_after(random.uniform(0, 2 * took)):
                    await store.list_jobs(JobQuery())
                with anyio.move_on_after(random.uniform(0, 2 * took)):
                    await store.add_job(*_job_with(1))
            # Each push is there whole (its job, execution and event) or not at all.
            jobs = (await store.list_jobs(JobQuery(page_size=500))).total
            executions = await store.count_executions(ExecutionQuery())
            events = await store.events_after(0, limit=1000)
            assert executions == jobs == len(events)
    assert reported == []


async def test_a_watch_cut_short_leaves_no_listening_connection(
    pg_server: PostgresServer,
) -> None:
    url = pg_server.url()
    async with open_store(url) as store:
        started = time.perf_counter()
        await store.watch(lambda keys: None)
        took = time.perf_counter() - started
    for _ in range(30):
        async with open_store(url) as store:
            with anyio.move_on_after(random.uniform(0.3 * took, took)):
                await store.watch(lambda keys: None)
    with anyio.fail_after(5):
        while await _sql(
            pg_server,
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'asyncjobs listen'",
        ):
            await anyio.sleep(0.05)
