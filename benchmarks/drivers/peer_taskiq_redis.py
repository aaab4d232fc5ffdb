"""taskiq on Redis (taskiq-redis); see ``_harness``. Runs in its own virtualenv.

Set up as taskiq-redis's own usage example: ``RedisStreamBroker`` (a Redis stream read by
a consumer group: the taskiq-redis broker that acknowledges, so a job survives a worker
that dies) with ``RedisAsyncResultBackend`` (results kept). The worker is taskiq's receiver
run in this process as ``taskiq worker`` runs it: a ``Receiver`` listening until its finish
event is set, ``max_async_tasks`` set to the concurrency; the stream is read 100 at a time,
the broker's default. Each run flushes Redis first, then creates the consumer group on the
empty stream.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib.metadata import version

import _harness
from redis.asyncio import Redis
from taskiq.receiver import Receiver
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

logging.getLogger("taskiq").setLevel(logging.CRITICAL)


class TaskiqRedisPeer:
    cross_process = True

    def __init__(self, url: str, workdir: str) -> None:
        self.version = version("taskiq-redis")
        self.location = url
        self.broker: RedisStreamBroker | None = None

    async def attach(self, location: str) -> None:
        await self.close()
        self.location = location
        self.broker = self._broker()
        self.noop = self.broker.find_task("noop")
        await self.broker.startup()  # creates the consumer group (if there is none yet)

    def _broker(self) -> RedisStreamBroker:
        broker = RedisStreamBroker(url=self.location).with_result_backend(
            RedisAsyncResultBackend(redis_url=self.location)
        )

        @broker.task(task_name="noop")
        async def noop(i: int) -> None:
            _harness.started(i)

        return broker

    async def reset(self) -> None:
        await self.close()
        async with Redis.from_url(self.location) as redis:
            await redis.flushdb()
        await self.attach(self.location)

    async def enqueue(self, i: int) -> None:
        await self.noop.kiq(i)

    @asynccontextmanager
    async def worker(self, concurrency: int):
        # The receiver runs on a loop of its own in a daemon thread. Stopping, taskiq 0.13
        # waits for the message its stream read is waiting for: on an idle queue, none
        # comes and the stop never ends (nor would this process's loop, awaiting it).
        ready, stopped = threading.Event(), threading.Event()
        box: dict[str, object] = {}

        def run() -> None:
            async def listen() -> None:
                broker = self._broker()
                broker.is_worker_process = True
                await broker.startup()
                box["loop"], box["finish"] = asyncio.get_running_loop(), asyncio.Event()
                ready.set()
                with ThreadPoolExecutor() as executor:
                    receiver = Receiver(
                        broker, executor, max_async_tasks=concurrency, run_startup=False
                    )
                    await receiver.listen(box["finish"])

            try:
                asyncio.run(listen())
            except Exception:
                if "finish" not in box or not box["finish"].is_set():
                    raise
                # Stopped while its read still waited: the next run's flush ends that read
                # with an error, and the receiver with it.
            finally:
                ready.set()  # also when it failed to start
                stopped.set()

        threading.Thread(target=run, name="taskiq receiver", daemon=True).start()
        await asyncio.get_running_loop().run_in_executor(None, ready.wait, 30)
        if "finish" not in box:
            raise RuntimeError("taskiq's receiver did not start (its error is in the log)")
        try:
            yield
        finally:
            loop, finish = box["loop"], box["finish"]
            loop.call_soon_threadsafe(finish.set)  # what the worker's signal handler does
            # Not until it ends (see above): the next run's flush ends it.
            await asyncio.get_running_loop().run_in_executor(None, stopped.wait, 0.5)

    async def close(self) -> None:
        if self.broker is not None:
            broker, self.broker = self.broker, None
            await broker.shutdown()


if __name__ == "__main__":
    _harness.main(TaskiqRedisPeer, [sys.executable, __file__])
