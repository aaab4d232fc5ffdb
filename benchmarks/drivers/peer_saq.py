"""saq on Redis; see ``_harness``. Runs in saq's own virtualenv; each run flushes Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from contextlib import asynccontextmanager
from importlib.metadata import version

import _harness
from saq import Queue, Worker

logging.getLogger("saq").setLevel(logging.CRITICAL)


async def noop(ctx, *, i):
    _harness.started(i)


class SaqPeer:
    cross_process = True

    def __init__(self, url: str, workdir: str) -> None:
        self.version = version("saq")
        self.location = url
        self.queue = None

    async def attach(self, location: str) -> None:
        self.location = location
        self.queue = Queue.from_url(location)
        await self.queue.connect()

    async def reset(self) -> None:
        if self.queue is None:
            await self.attach(self.location)
        await self.queue.redis.flushdb()

    async def enqueue(self, i: int) -> None:
        await self.queue.enqueue("noop", i=i)

    @asynccontextmanager
    async def worker(self, concurrency: int):
        worker = Worker(Queue.from_url(self.location), functions=[noop], concurrency=concurrency)
        task = asyncio.create_task(worker.start())
        try:
            yield
        finally:
            await worker.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        if self.queue is not None:
            await self.queue.disconnect()
            self.queue = None


if __name__ == "__main__":
    _harness.main(SaqPeer, [sys.executable, __file__])
