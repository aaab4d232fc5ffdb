"""procrastinate on PostgreSQL (psycopg 3 connector, LISTEN/NOTIFY on); see ``_harness``.

Runs in procrastinate's own virtualenv, on its own database of the benchmark's server: each
run drops and re-creates the ``public`` schema and applies procrastinate's schema to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from contextlib import asynccontextmanager
from importlib.metadata import version

import _harness
import procrastinate
import psycopg

logging.getLogger("procrastinate").setLevel(logging.ERROR)


class ProcrastinatePeer:
    cross_process = True

    def __init__(self, url: str, workdir: str) -> None:
        self.version = version("procrastinate")
        self.url = url
        self.location = url
        self.app: procrastinate.App | None = None

    async def attach(self, location: str) -> None:
        self.app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=location))

        @self.app.task(name="noop")
        async def noop(i):
            _harness.started(i)

        self.noop = noop
        await self.app.open_async()

    async def reset(self) -> None:
        await self.close()
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            await conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
            await conn.execute("CREATE SCHEMA public")
        await self.attach(self.url)
        await self.app.schema_manager.apply_schema_async()

    async def enqueue(self, i: int) -> None:
        await self.noop.defer_async(i=i)

    @asynccontextmanager
    async def worker(self, concurrency: int):
        task = asyncio.create_task(
            self.app.run_worker_async(concurrency=concurrency, install_signal_handlers=False)
        )
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        if self.app is not None:
            await self.app.close_async()
            self.app = None


if __name__ == "__main__":
    _harness.main(ProcrastinatePeer, [sys.executable, __file__])
