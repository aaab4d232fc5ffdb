"""arq on Redis; see ``_harness``.

Runs in arq's own virtualenv; each run flushes the Redis database. The worker polls every
10 ms (``poll_delay=0.01``) rather than arq's default 0.5 s, which caps it near 500 jobs/s and
puts its start latency in the hundreds of milliseconds: the peer gets its faster setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from contextlib import asynccontextmanager
from importlib.metadata import version

import _harness
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker, func

logging.getLogger("arq").setLevel(logging.ERROR)


async def noop(ctx, i):
    _harness.started(i)


class ArqPeer:
    cross_process = True

    def __init__(self, url: str, workdir: str) -> None:
        self.version = version("arq")
        self.location = url
        self.settings = RedisSettings.from_dsn(url)
        self.pool = None

    async def attach(self, location: str) -> None:
        self.location = location
        self.settings = RedisSettings.from_dsn(location)
        self.pool = await create_pool(self.settings)

    async def reset(self) -> None:
        if self.pool is None:
            await self.attach(self.location)
        await self.pool.flushdb()

    async def enqueue(self, i: int) -> None:
        await self.pool.enqueue_job("noop", i)

    @asynccontextmanager
    async def worker(self, concurrency: int):
        worker = Worker(
            functions=[func(noop, name="noop")],
            redis_settings=self.settings,
            max_jobs=concurrency,
            poll_delay=0.01,
            handle_signals=False,
        )
        task = asyncio.create_task(worker.async_run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(asyncio.CancelledError):  # its cancelled job tasks
                await worker.close()

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.aclose()
            self.pool = None


if __name__ == "__main__":
    _harness.main(ArqPeer, [sys.executable, __file__])
