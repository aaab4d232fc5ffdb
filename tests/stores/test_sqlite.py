"""What is particular to the SQLite file: refusing files it must not touch, WAL, several
stores and processes on one file."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from asyncjobs import (
    ExecutionStatus,
    InvalidStoreURL,
    JobNotFound,
    SchemaVersionError,
    StoreError,
)
from asyncjobs._models import StepSpec
from asyncjobs._types import ExecutionId, JobId, new_id
from asyncjobs.stores import (
    ExecutionQuery,
    JobQuery,
    NewExecution,
    NewJob,
    NodeInfo,
    open_store,
    sqlite as sqlite_store,
)
from asyncjobs.stores.sqlite import SCHEMA_VERSION, SQLiteStore

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
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


def _sql(path: Path, statement: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(statement)
    conn.close()


async def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path: Path) -> None:
    path = anyio.Path(tmp_path / "notes.db")
    content = b"these are my notes, not a database\n" * 200
    await path.write_bytes(content)
    with pytest.raises(SchemaVersionError, match="is not a SQLite database"):
        async with SQLiteStore(tmp_path / "notes.db"):
            pass
    assert await path.read_bytes() == content
    assert not await anyio.Path(tmp_path / "notes.db-wal").exists()


async def test_an_sqlite_too_old_is_refused_before_the_file_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(StoreError, match=r"needs SQLite 3\.35 or newer .* has SQLite 3\.31\.1"):
        async with SQLiteStore(tmp_path / "jobs.db"):
            pass
    assert not await anyio.Path(tmp_path / "jobs.db").exists()


async def test_a_foreign_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    await anyio.to_thread.run_sync(_sql, path, "CREATE TABLE users (id INTEGER PRIMARY KEY)")
    before = await anyio.Path(path).read_bytes()
    with pytest.raises(SchemaVersionError, match=r"asyncjobs did not create.*users"):
        async with SQLiteStore(path):
            pass
    assert await anyio.Path(path).read_bytes() == before


async def test_a_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    async with SQLiteStore(path):
        pass
    await anyio.to_thread.run_sync(
        _sql, path, "UPDATE asyncjobs_meta SET value = '999' WHERE key = 'schema_version'"
    )
    before = await anyio.Path(path).read_bytes()
    with pytest.raises(
        SchemaVersionError, match=f"schema version 999, newer than this code's {SCHEMA_VERSION}"
    ):
        async with SQLiteStore(path):
            pass
    assert await anyio.Path(path).read_bytes() == before


async def test_the_file_uses_wal_and_keeps_its_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    async with SQLiteStore(path):
        pass

    def inspect() -> tuple[str, tuple[str]]:
        with sqlite3.connect(path) as conn:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            version = conn.execute(
                "SELECT value FROM asyncjobs_meta WHERE key = 'schema_version'"
            ).fetchone()
        conn.close()
        return mode, version

    assert await anyio.to_thread.run_sync(inspect) == ("wal", (str(SCHEMA_VERSION),))
    async with SQLiteStore(path):  # opening again migrates nothing and loses nothing
        pass


async def test_a_version_1_file_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    """A file made by the first schema gets the later migrations at the next open, its jobs
    and executions kept: the claim uses the index that version 2 adds, and version 3 narrows
    the due index to the jobs that have a next fire time."""
    path = tmp_path / "v1.db"

    def make_v1() -> None:
        script = (ROOT / "asyncjobs/stores/sql/sqlite/0001_init.sql").read_text()
        with sqlite3.connect(path) as conn:
            conn.executescript(script)
            conn.execute("CREATE TABLE asyncjobs_meta (key TEXT PRIMARY KEY, value TEXT)")
            conn.execute("INSERT INTO asyncjobs_meta VALUES ('schema_version', '1')")
        conn.close()

    await anyio.to_thread.run_sync(make_v1)
    job, executions = _job_with(3)
    cron = dataclasses.replace(
        _job_with(0)[0], schedule={"kind": "cron", "expr": "* * * * *"}, next_fire_at=T0 + 60
    )
    async with SQLiteStore(path) as store:
        await store.add_job(job, executions)
        await store.add_job(cron, [])
    # Written by a version-1 store: no index of version 2 yet, version 1's jobs_due.
    # Re-create that state.
    await anyio.to_thread.run_sync(_sql, path, "DROP INDEX executions_limited")
    await anyio.to_thread.run_sync(_sql, path, "DROP INDEX jobs_due")
    await anyio.to_thread.run_sync(
        _sql, path, "CREATE INDEX jobs_due ON jobs (next_fire_at) WHERE status = 'active'"
    )
    await anyio.to_thread.run_sync(
        _sql, path, "UPDATE asyncjobs_meta SET value = '1' WHERE key = 'schema_version'"
    )
    node = NodeInfo(id="n", host="h", pid=1, started_at=T0, heartbeat_at=T0)
    async with SQLiteStore(path) as store:
        await store.register_node(node)
        claims = await store.claim(node, 10, T0 + 1)
        assert [c.execution.id for c in claims] == [e.id for e in executions]
        # The rebuilt due index still finds the schedule, and only it.
        assert await store.next_fire() == T0 + 60
        assert [j.id for j in await store.due_jobs(T0 + 60, 10)] == [cron.id]
        assert await store.due_jobs(T0 + 59, 10) == []

    def indexes() -> dict[str, str]:
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
            named = {row[0]: row[1] for row in rows}
        conn.close()
        return named

    named = await anyio.to_thread.run_sync(indexes)
    assert "executions_limited" in named
    # Version 3: one-off jobs (no next fire time) are not in the due index.
    assert "next_fire_at IS NOT NULL" in named["jobs_due"]


def test_bad_urls_and_options_name_what_is_supported(tmp_path: Path) -> None:
    with pytest.raises(InvalidStoreURL, match=r"unknown store URL 'redis://x'.*memory://"):
        open_store("redis://x")
    with pytest.raises(StoreError, match="unknown SQLite store option 'journal'"):
        SQLiteStore(f"{tmp_path}/x.db?journal=off")
    with pytest.raises(StoreError, match="synchronous must be full, normal or extra"):
        SQLiteStore(f"{tmp_path}/x.db?synchronous=fast")


async def test_a_directory_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    import threading

    def connection_threads() -> set[int | None]:
        return {t.ident for t in threading.enumerate() if "_connection_worker" in t.name}

    before = connection_threads()
    for path in (tmp_path, tmp_path / "missing" / "t.db"):
        with pytest.raises(StoreError, match="cannot open the SQLite store"):
            async with SQLiteStore(path):
                pass
    # aiosqlite's connection thread is gone before the error is raised: no thread is left
    # to report to a closed loop later.
    assert connection_threads() <= before


async def test_two_stores_on_one_file_claim_each_execution_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    job, executions = _job_with(300)
    claimed: list[str] = []
    async with SQLiteStore(path) as first, SQLiteStore(path) as second:
        await first.add_job(job, executions)

        async def claimer(store: SQLiteStore, node: str) -> None:
            info = NodeInfo(id=node, host="h", pid=1, started_at=T0, heartbeat_at=T0)
            while claims := await store.claim(info, 7, T0):
                claimed.extend(c.execution.id for c in claims)

        async with anyio.create_task_group() as tg:
            tg.start_soon(claimer, first, "a")
            tg.start_soon(claimer, second, "b")
    assert sorted(claimed) == sorted(e.id for e in executions)


async def test_writes_that_arrive_together_share_a_commit_and_fail_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "group.db"
    groups: list[int] = []
    commit_group = SQLiteStore._commit_group

    def counting(
        self: SQLiteStore, conn: sqlite3.Connection, work: list[tuple[Any, tuple[Any, ...]]]
    ) -> list[tuple[bool, Any]]:
        groups.append(len(work))
        return commit_group(self, conn, work)

    monkeypatch.setattr(SQLiteStore, "_commit_group", counting)
    good = [_job_with(2) for _ in range(40)]
    # Writes its job row and first execution, then fails on the second: a duplicate id.
    bad_job, (first, second) = _job_with(2)
    duplicate = [first, dataclasses.replace(second, id=first.id)]
    missing = JobId(new_id())
    async with SQLiteStore(path) as store:
        outcomes = await asyncio.gather(
            *(store.add_job(job, executions) for job, executions in good[:20]),
            store.add_job(bad_job, duplicate),
            store.add_executions(missing, _job_with(1)[1], T0),
            *(store.add_job(job, executions) for job, executions in good[20:]),
            return_exceptions=True,
        )
    assert max(groups) > 1 and len(groups) < len(outcomes)  # commits were shared
    assert isinstance(outcomes[20], StoreError) and "UNIQUE" in str(outcomes[20])
    assert isinstance(outcomes[21], JobNotFound) and missing in str(outcomes[21])
    assert not any(isinstance(o, BaseException) for o in outcomes[:20] + outcomes[22:])
    async with SQLiteStore(path) as store:  # what the file holds, read afresh
        assert await store.count_jobs(JobQuery()) == 40
        assert await store.count_executions(ExecutionQuery()) == 80
        with pytest.raises(JobNotFound):
            await store.get_job(bad_job.id)
        # One 'queued' event per execution, numbered without a gap: the failed write's
        # event rows, and the sequence numbers they took, were undone with it.
        assert await store.last_seq() == 80


async def test_a_category_is_remembered_only_once_committed(tmp_path: Path) -> None:
    """The store skips the category insert for categories it committed: a failed write's
    category is not one of them, and the next job in it still makes it."""
    bad_job, (first, second) = _job_with(2)
    bad_job = dataclasses.replace(bad_job, category="lost/child")
    duplicate = [first, dataclasses.replace(second, id=first.id)]
    async with SQLiteStore(tmp_path / "categories.db") as store:
        with pytest.raises(StoreError, match="UNIQUE"):
            await store.add_job(bad_job, duplicate)
        assert await store.list_categories() == []
        for _ in range(2):  # the second skips the insert, and still counts
            job, executions = _job_with(1)
            await store.add_job(dataclasses.replace(job, category="lost/child"), executions)
        cats = {c.name: c.jobs for c in await store.list_categories()}
    assert cats == {"lost": 0, "lost/child": 2}


async def test_a_write_cancelled_before_its_group_is_sent_is_not_made(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "cancel.db") as store:
        tasks = [asyncio.create_task(store.add_job(*_job_with(1))) for _ in range(10)]
        await asyncio.sleep(0)  # each has queued its write; the first one's is on the thread
        for task in tasks[5:]:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert not any(isinstance(o, BaseException) for o in outcomes[:5])
        assert all(isinstance(o, asyncio.CancelledError) for o in outcomes[5:])
        assert await store.count_jobs(JobQuery()) == 5
        await store.add_job(*_job_with(1))  # the store goes on writing
        assert await store.count_jobs(JobQuery()) == 6


def _hold_write_lock(path: Path) -> tuple[threading.Event, threading.Event, threading.Thread]:
    """Another connection takes the write lock and keeps it until ``release`` is set."""
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        release.wait(10)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=holder)
    thread.start()
    return held, release, thread


async def test_a_write_waits_for_another_writer_then_gives_up_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "locked.db"
    async with SQLiteStore(path) as store:
        held, release, thread = _hold_write_lock(path)
        await anyio.to_thread.run_sync(held.wait)
        timer = threading.Timer(0.2, release.set)
        timer.start()
        start = time.monotonic()
        await store.add_job(*_job_with(1))  # waits for the lock, then writes
        assert time.monotonic() - start >= 0.15
        await anyio.to_thread.run_sync(thread.join)
        # Held past the wait (shortened here) and every retry: an error that names the file.
        monkeypatch.setattr(sqlite_store, "_BUSY_SECONDS", 0.02)
        monkeypatch.setattr(sqlite_store, "_BUSY_RETRIES", 2)
        held, release, thread = _hold_write_lock(path)
        await anyio.to_thread.run_sync(held.wait)
        try:
            with pytest.raises(StoreError, match=r"locked\.db stayed locked by another process"):
                await store.add_job(*_job_with(1))
        finally:
            release.set()
            await anyio.to_thread.run_sync(thread.join)
        assert len((await store.list_jobs(JobQuery())).items) == 1  # the refused one is not in


CLAIMER = """
import sys, anyio
from asyncjobs.stores import NodeInfo
from asyncjobs.stores import sqlite as sqlite_store
from asyncjobs.stores.sqlite import SCHEMA_VERSION, SQLiteStore

async def main(path):
    node = NodeInfo(id="child", host="h", pid=2, started_at=0.0, heartbeat_at=0.0)
    async with SQLiteStore(path) as store:
        print("ready", flush=True)
        seen = False
        with anyio.fail_after(20):
            while True:
                claims = await store.claim(node, 5, 1_700_000_000.0)
                if not claims and seen:
                    break
                seen = seen or bool(claims)
                for claim in claims:
                    print(claim.execution.id, flush=True)
                await anyio.sleep(0.001)  # SQLite's lock is not fair: let the parent in too

anyio.run(main, sys.argv[1])
"""


async def test_another_process_on_the_same_file_never_double_claims(tmp_path: Path) -> None:
    path = tmp_path / "processes.db"
    job, executions = _job_with(400)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "runner")])}
    mine: list[str] = []
    async with SQLiteStore(path) as store:
        await store.add_job(_job_with(0)[0], [])  # the schema exists before the child starts
        async with await anyio.open_process(
            [sys.executable, "-c", CLAIMER, str(path)], env=env, stderr=None
        ) as child:
            assert child.stdout is not None
            buffered = BufferedByteReceiveStream(child.stdout)
            assert await buffered.receive_until(b"\n", 100) == b"ready"
            await store.add_job(job, executions)  # now both race for them
            node = NodeInfo(id="parent", host="h", pid=1, started_at=T0, heartbeat_at=T0)
            while await store.count_executions(ExecutionQuery(status=ExecutionStatus.QUEUED)):
                claims = await store.claim(node, 5, T0)
                mine.extend(c.execution.id for c in claims)
                await anyio.sleep(0.001)
            theirs = []
            with anyio.fail_after(30):
                while True:
                    try:
                        theirs.append((await buffered.receive_until(b"\n", 200)).decode())
                    except (anyio.EndOfStream, anyio.IncompleteRead):
                        break
            await child.wait()
    assert child.returncode == 0
    assert sorted(mine + theirs) == sorted(e.id for e in executions)
    assert not set(mine) & set(theirs)
    assert mine and theirs  # both took part


async def test_another_stores_commit_is_told_again_later_then_no_more(tmp_path: Path) -> None:
    # A commit is visible only after its fsync, and nothing is written to the -wal file
    # then: the first wake-up may come too early, so the watcher tells again, later each time.
    path = tmp_path / "told.db"
    heard: list[float] = []
    async with SQLiteStore(path) as watching, SQLiteStore(path) as other:
        await watching.watch(lambda keys: heard.append(time.monotonic()))
        await anyio.sleep(0.05)
        job, executions = _job_with(1)
        start = time.monotonic()
        await other.add_job(job, executions)
        await anyio.sleep(sum(sqlite_store.WATCH_SETTLE) + 0.3)
        told = len(heard)
        assert told >= 1 + len(sqlite_store.WATCH_SETTLE), heard
        assert heard[-1] - start >= sum(sqlite_store.WATCH_SETTLE)
        await anyio.sleep(0.3)
        assert len(heard) == told  # and then quiet: no wake-ups without writes


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
async def test_a_stores_own_commits_neither_tell_its_watchers_nor_wake_its_watch(
    tmp_path: Path,
) -> None:
    # Its commits are recorded (not another process's), and the watch is muted while they
    # are written: the watch thread is not woken to take the GIL from the writer.
    heard: list[frozenset[str]] = []
    woken: list[bool] = []
    async with SQLiteStore(tmp_path / "own.db") as store:
        await store.watch(heard.append)
        writes = store._watch_writes
        assert writes is not None and writes.precise
        wait = writes.wait

        def counted(timeout: float) -> bool:
            written = wait(timeout)
            woken.append(written)
            return written

        writes.wait = counted  # type: ignore[method-assign]
        await anyio.sleep(0.05)  # the watch thread is in its (counted) wait
        for _ in range(20):
            await store.add_job(*_job_with(1))
        await anyio.sleep(0.1)
    assert heard == []
    assert woken and True not in woken  # it woke only at its timeouts
