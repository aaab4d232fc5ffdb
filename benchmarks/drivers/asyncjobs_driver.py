"""asyncjobs through the same workloads as its peers (see ``_harness``).

Run as ``python -m benchmarks.drivers.asyncjobs_driver --url memory://|sqlite|postgresql://...``
from the repository root, in the project's own environment. ``--url sqlite`` makes a new
file in ``--dir`` per run (``sqlite?synchronous=normal``: with that option); a
``postgresql://`` URL gets a new schema per run.

The runtimes are built as a user would: ``aj.Runtime(url, workers=c)`` with the default poll
interval and no system jobs. Enqueues go through ``rt.once``; while a worker runs in this
process they go through that same runtime (as an application would enqueue), otherwise
through a runtime with ``workers=0``.
"""

from __future__ import annotations

import sys
import uuid
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import asyncjobs as aj
from asyncjobs.stores.memory import MemoryStore
from benchmarks.drivers import _harness

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from asyncjobs.stores.base import Store


def runtime(store: str | Store, workers: int) -> aj.Runtime:
    """A runtime with the benchmark's one task, ``noop(i)``."""
    rt = aj.Runtime(store, workers=workers, system_jobs=False)

    @rt.task(name="noop")
    async def noop(i: int) -> None:
        _harness.started(i)

    return rt


class AsyncjobsPeer:
    """asyncjobs on one store kind: ``memory://``, ``sqlite`` or a PostgreSQL URL."""

    def __init__(self, url: str, workdir: str) -> None:
        self.version = version("asyncjobs")
        self.kind = url
        self.cross_process = url != "memory://"
        self.workdir = Path(workdir)
        self.location = ""
        self._memory: MemoryStore | None = None
        self._rt: aj.Runtime | None = None  # enqueues go here
        self._producer: aj.Runtime | None = None

    def _store(self) -> str | Store:
        return self._memory if self._memory is not None else self.location

    async def reset(self) -> None:
        await self.close()
        tag = uuid.uuid4().hex[:12]
        if self.kind == "memory://":
            self._memory = MemoryStore()
            self.location = "memory://"
        elif self.kind.startswith("sqlite"):  # "sqlite" or "sqlite?synchronous=normal"
            _, _, options = self.kind.partition("?")
            self.location = f"sqlite:///{self.workdir / f'asyncjobs-{tag}.db'}"
            self.location += f"?{options}" if options else ""
        else:
            separator = "&" if "?" in self.kind else "?"
            self.location = f"{self.kind}{separator}schema=b_{tag}"
        await self._open_producer()

    async def _open_producer(self) -> None:
        self._producer = runtime(self._store(), 0)
        await self._producer.start()
        self._rt = self._producer

    async def attach(self, location: str) -> None:
        self.location = location

    async def enqueue(self, i: int) -> None:
        assert self._rt is not None
        await self._rt.once("noop", i)

    @asynccontextmanager
    async def worker(self, concurrency: int) -> AsyncIterator[None]:
        producer, self._producer = self._producer, None
        if producer is not None:  # one runtime at a time on a memory store's object
            await producer.stop()
        rt = runtime(self._store(), concurrency)
        await rt.start()
        self._rt = rt
        try:
            yield
        finally:
            self._rt = None
            await rt.stop()
            if producer is not None:
                await self._open_producer()

    async def close(self) -> None:
        producer, self._producer, self._rt = self._producer, None, None
        if producer is not None:
            await producer.stop()


if __name__ == "__main__":
    _harness.main(AsyncjobsPeer, [sys.executable, "-m", "benchmarks.drivers.asyncjobs_driver"])
