"""Ceilings: the same no-op job loops with no framework, on aiosqlite and on asyncpg.

* ``aiosqlite_loop``: the SQLite job loop done by hand, with the rows asyncjobs writes (a job
  row, an execution row and a state event per enqueue; a claim that marks a batch running
  with its events; a completion that ends the batch's executions and jobs with their
  events), WAL and ``synchronous=FULL`` like the store's default, and the best batching
  aiosqlite allows: one hop to its thread per transaction (its ``_execute``, as the store
  does), a claim of up to ``concurrency`` at a time and one completion write per batch.
  Each job is inserted by its own awaited call, as ``rt.once`` does.
* ``asyncpg_claim_loop``: ``n`` rows inserted up front (``executemany``, not timed), then
  ``claimers`` connections each loop on ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP
  LOCKED LIMIT b) RETURNING id``, run the batch's no-ops and mark them done with one
  ``UPDATE ... WHERE id = ANY($1)``; timed from the first claim to the last completion.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import orjson

if TYPE_CHECKING:
    import sqlite3
    from pathlib import Path

_SQLITE_SCHEMA = """
CREATE TABLE jobs (id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL,
    steps TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE executions (id TEXT PRIMARY KEY, job_id TEXT NOT NULL REFERENCES jobs (id),
    task TEXT NOT NULL, spec TEXT NOT NULL, status TEXT NOT NULL, priority INTEGER NOT NULL,
    run INTEGER NOT NULL DEFAULT 0, result TEXT, created_at REAL NOT NULL,
    scheduled_for REAL NOT NULL, started_at REAL, ended_at REAL, node TEXT);
CREATE INDEX executions_claim ON executions (priority, scheduled_for, id)
    WHERE status = 'queued';
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL,
    kind TEXT NOT NULL, job_id TEXT NOT NULL, execution_id TEXT NOT NULL, status TEXT);
"""


def _insert(conn: sqlite3.Connection, i: int) -> None:
    now = time.time()
    job, execution = uuid.uuid4().hex, uuid.uuid4().hex
    spec = orjson.dumps({"task": "noop", "args": [i], "mode": "coroutine"}).decode()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO jobs VALUES (?, 'noop', 'active', ?, ?, ?)", (job, spec, now, now))
    conn.execute(
        "INSERT INTO executions (id, job_id, task, spec, status, priority, created_at, "
        "scheduled_for) VALUES (?, ?, 'noop', ?, 'queued', 0, ?, ?)",
        (execution, job, spec, now, now),
    )
    conn.execute(
        "INSERT INTO events (at, kind, job_id, execution_id, status) "
        "VALUES (?, 'state', ?, ?, 'queued')",
        (now, job, execution),
    )
    conn.execute("COMMIT")


def _claim(conn: sqlite3.Connection, limit: int) -> list[tuple[str, str, str]]:
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    rows: list[tuple[str, str, str]] = conn.execute(
        "UPDATE executions SET status = 'running', run = run + 1, started_at = ?, node = 'n' "
        "WHERE id IN (SELECT id FROM executions WHERE status = 'queued' "
        "ORDER BY priority, scheduled_for, id LIMIT ?) RETURNING id, job_id, spec",
        (now, limit),
    ).fetchall()
    conn.executemany(
        "INSERT INTO events (at, kind, job_id, execution_id, status) "
        "VALUES (?, 'state', ?, ?, 'running')",
        [(now, job, execution) for execution, job, _ in rows],
    )
    conn.execute("COMMIT")
    return rows


def _complete(conn: sqlite3.Connection, rows: list[tuple[str, str, str]]) -> None:
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "UPDATE executions SET status = 'succeeded', result = 'null', ended_at = ? "
        "WHERE id = ? AND status = 'running'",
        [(now, execution) for execution, _, _ in rows],
    )
    conn.executemany(
        "UPDATE jobs SET status = 'completed', updated_at = ? WHERE id = ?",
        [(now, job) for _, job, _ in rows],
    )
    conn.executemany(
        "INSERT INTO events (at, kind, job_id, execution_id, status) "
        "VALUES (?, 'state', ?, ?, 'succeeded')",
        [(now, job, execution) for execution, job, _ in rows],
    )
    conn.execute("COMMIT")


async def aiosqlite_loop(path: Path, n: int, concurrency: int) -> tuple[float, float]:
    """Return ``(enqueue seconds, drain seconds)`` of the hand-written SQLite job loop."""
    import aiosqlite

    db = await aiosqlite.connect(path, isolation_level=None, check_same_thread=False)
    conn = db._conn

    async def hop(fn: Any, *args: Any) -> Any:
        # One hop per transaction, as the SQLite store does (aiosqlite has no public API).
        return await db._execute(fn, conn, *args)  # type: ignore[no-untyped-call]

    try:
        await db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;" + _SQLITE_SCHEMA)
        start = time.monotonic()
        for i in range(n):
            await hop(_insert, i)
        enqueued = time.monotonic()
        done = 0

        async def noop(spec: str) -> None:
            orjson.loads(spec)
            await anyio.lowlevel.checkpoint()

        while done < n:
            rows = await hop(_claim, concurrency)
            async with anyio.create_task_group() as tg:
                for _, _, spec in rows:
                    tg.start_soon(noop, spec)
            await hop(_complete, rows)
            done += len(rows)
        return enqueued - start, time.monotonic() - enqueued
    finally:
        await db.close()


async def asyncpg_claim_loop(dsn: str, n: int, concurrency: int, claimers: int) -> float:
    """Return the drain seconds of ``n`` queued rows by ``claimers`` SKIP LOCKED loops."""
    import asyncpg

    table = f"q_{uuid.uuid4().hex[:12]}"
    setup = await asyncpg.connect(dsn)
    try:
        await setup.execute(
            f"CREATE TABLE {table} (id bigserial PRIMARY KEY, task text NOT NULL, "
            "args jsonb NOT NULL, status text NOT NULL, priority int NOT NULL DEFAULT 0, "
            "created_at timestamptz NOT NULL DEFAULT now(), started_at timestamptz, "
            "ended_at timestamptz)"
        )
        await setup.execute(
            f"CREATE INDEX {table}_claim ON {table} (priority, id) WHERE status = 'queued'"
        )
        await setup.executemany(
            f"INSERT INTO {table} (task, args, status) VALUES ('noop', $1, 'queued')",
            [(orjson.dumps([i]).decode(),) for i in range(n)],
        )
        await setup.execute(f"ANALYZE {table}")
        batch = max(1, concurrency // claimers)
        claim = (
            f"UPDATE {table} SET status = 'running', started_at = now() WHERE id IN "
            f"(SELECT id FROM {table} WHERE status = 'queued' ORDER BY priority, id "
            "FOR UPDATE SKIP LOCKED LIMIT $1) RETURNING id, args"
        )
        complete = f"UPDATE {table} SET status = 'succeeded', ended_at = now() WHERE id = ANY($1)"
        connections = [await asyncpg.connect(dsn) for _ in range(claimers)]

        async def noop(args: str) -> None:
            orjson.loads(args)
            await anyio.lowlevel.checkpoint()

        async def loop(conn: Any) -> None:
            while rows := await conn.fetch(claim, batch):
                async with anyio.create_task_group() as tg:
                    for row in rows:
                        tg.start_soon(noop, row["args"])
                await conn.execute(complete, [row["id"] for row in rows])

        try:
            start = time.monotonic()
            async with anyio.create_task_group() as tg:
                for conn in connections:
                    tg.start_soon(loop, conn)
            return time.monotonic() - start
        finally:
            for conn in connections:
                await conn.close()
    finally:
        await setup.execute(f"DROP TABLE IF EXISTS {table}")
        await setup.close()
