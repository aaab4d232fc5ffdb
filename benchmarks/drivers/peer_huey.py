"""huey with its SQLite storage (``SqliteHuey``), a consumer of 50 threads; see ``_harness``.

Runs in huey's own virtualenv. The consumer keeps huey's documented defaults (its polling
back-off included); a new database file per run.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from contextlib import asynccontextmanager
from importlib.metadata import version

import _harness
from huey import SqliteHuey


class HueyPeer:
    cross_process = True

    def __init__(self, url: str, workdir: str) -> None:
        self.version = version("huey")
        self.workdir = workdir
        self.location = ""
        self.huey: SqliteHuey | None = None
        self.noop = None

    async def attach(self, location: str) -> None:
        self.location = location
        self.huey = SqliteHuey("bench", filename=location)

        @self.huey.task(name="noop")
        def noop(i):
            _harness.started(i)

        self.noop = noop

    async def reset(self) -> None:
        await self.close()
        await self.attach(os.path.join(self.workdir, f"huey-{uuid.uuid4().hex[:12]}.db"))

    async def enqueue(self, i: int) -> None:
        self.noop(i)

    @asynccontextmanager
    async def worker(self, concurrency: int):
        consumer = self.huey.create_consumer(workers=concurrency, periodic=False)
        consumer.start()
        try:
            yield
        finally:
            await asyncio.to_thread(consumer.stop, graceful=True)

    async def close(self) -> None:
        if self.huey is not None:
            self.huey.storage.close()
            self.huey = None


if __name__ == "__main__":
    _harness.main(HueyPeer, [sys.executable, __file__])
