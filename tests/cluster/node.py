"""A worker node of a test cluster: it runs until killed, recording every run in a ledger.

Run as: python -m tests.cluster.node STORE_URL LEDGER_PATH

The ledger is a SQLite file apart from the store, written by the tasks themselves: a row per
run of a task body, with the pid of the node that ran it, so a test can prove that every
execution ran once (or, after a SIGKILL, at most once more on another node).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time

import anyio

import asyncjobs as aj

LEDGER_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS runs (execution_id TEXT, job_id TEXT, arg INTEGER, "
    "attempt INTEGER, pid INTEGER, at REAL)"
)


def record(ledger: str, ctx: aj.Context, arg: int) -> None:
    with sqlite3.connect(ledger, timeout=60) as conn:
        conn.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?)",
            (ctx.execution_id, ctx.job_id, arg, ctx.attempt, os.getpid(), time.time()),
        )
    conn.close()


def build(url: str, ledger: str, *, workers: int = 8) -> aj.Runtime:
    """The cluster's runtime: short heartbeats, so that a dead node is noticed in ~2 s."""
    rt = aj.Runtime(
        url,
        workers=workers,
        poll_interval=0.05,
        heartbeat_interval=0.25,
        node_timeout=2.0,
        system_jobs=False,
        shutdown_timeout=5,
    )

    @rt.task(name="work")
    def work(ctx: aj.Context, i: int, seconds: float = 0.0) -> int:
        time.sleep(seconds)
        record(ledger, ctx, i)
        return i

    @rt.task(name="tick")
    def tick(ctx: aj.Context) -> None:
        record(ledger, ctx, 0)

    @rt.task(name="forever")
    async def forever(ctx: aj.Context) -> None:
        await anyio.to_thread.run_sync(record, ledger, ctx, 0)
        await anyio.sleep_forever()  # a daemon: it runs until its node dies

    return rt


async def main(url: str, ledger: str) -> None:
    async with build(url, ledger):
        print("ready", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    with sqlite3.connect(sys.argv[2], timeout=60) as c:
        c.execute("PRAGMA journal_mode=WAL")
        c.execute(LEDGER_SCHEMA)
    c.close()
    anyio.run(main, sys.argv[1], sys.argv[2], backend_options={"use_uvloop": True})
