"""taskiq's in-memory broker, the in-process reference; see ``_harness``.

Runs in taskiq's own virtualenv. ``InMemoryBroker.kiq`` starts the task as an asyncio task
at once: there is no queue and no separate worker, so "drain" is whatever is left to run
when the enqueue loop ends, and no worker can run in another process.
"""

from __future__ import annotations

import sys
from contextlib import asynccontextmanager
from importlib.metadata import version

import _harness
from taskiq import InMemoryBroker


class TaskiqPeer:
    cross_process = False

    def __init__(self, url: str, workdir: str) -> None:
        self.version = version("taskiq")
        self.location = "memory"
        self.broker = None

    async def attach(self, location: str) -> None:
        raise RuntimeError("the in-memory broker has no worker in another process")

    async def reset(self) -> None:
        await self.close()
        self.broker = InMemoryBroker()

        @self.broker.task(task_name="noop")
        async def noop(i: int) -> None:
            _harness.started(i)

        self.noop = noop
        await self.broker.startup()

    async def enqueue(self, i: int) -> None:
        await self.noop.kiq(i)

    @asynccontextmanager
    async def worker(self, concurrency: int):
        yield  # the broker runs each task as it is kicked

    async def close(self) -> None:
        if self.broker is not None:
            await self.broker.shutdown()
            self.broker = None


if __name__ == "__main__":
    _harness.main(TaskiqPeer, [sys.executable, __file__])
