"""No-op coroutine executions per second: asyncjobs stores against a bare anyio ceiling.

Each figure is the median of ``--runs`` runs of ``--n`` no-op executions at concurrency
``--concurrency``:

* ``drain``: the executions are enqueued first (by a runtime with no workers), then one
  runtime runs them all; timed from its start to the last completion;
* ``e2e``: one runtime enqueues them one awaited call at a time while it runs them; timed
  from the first enqueue to the last completion;
* ``enqueue, one at a time`` and ``enqueue, all at once``: a runtime with no workers stores
  them, one awaited call after the other, or from ``n`` tasks started together (a burst of
  requests in a web app); timed until the last call returns. On SQLite, calls that wait
  while a commit is on the way share the next one (group commit).

The ceiling is the same loop with no framework: ``n`` no-op coroutines started in one anyio
task group, at most ``concurrency`` at a time.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

import asyncjobs as aj
from asyncjobs.stores.memory import MemoryStore

if TYPE_CHECKING:
    from collections.abc import Callable

    from asyncjobs.stores import Store


async def bare_anyio(n: int, concurrency: int) -> float:
    """Run ``n`` no-op coroutines in a task group, ``concurrency`` at a time; return seconds."""
    limiter = anyio.Semaphore(concurrency)

    async def noop() -> None:
        async with limiter:
            await anyio.lowlevel.checkpoint()

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            await limiter.acquire()
            limiter.release()
            tg.start_soon(noop)
    return time.perf_counter() - start


def _runtime(store: str | Store, concurrency: int, done: Callable[[], None]) -> aj.Runtime:
    rt = aj.Runtime(
        store,
        workers=concurrency,
        on_complete=lambda execution, result: done(),
        poll_interval=0.5,
    )

    @rt.task(name="noop")
    async def noop(i: int) -> None:
        return None

    return rt


class _Counter:
    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.finished = anyio.Event()

    def __call__(self) -> None:
        self.count += 1
        if self.count == self.n:
            self.finished.set()


async def asyncjobs_drain(store: Callable[[], str | Store], n: int, concurrency: int) -> float:
    """Enqueue ``n`` no-ops with no worker running, then time one runtime draining them."""
    shared = store()
    async with _runtime(shared, 0, lambda: None) as producer:
        for i in range(n):
            await producer.once("noop", i)
    counter = _Counter(n)
    rt = _runtime(shared, concurrency, counter)
    start = time.perf_counter()
    async with rt:
        await counter.finished.wait()
        elapsed = time.perf_counter() - start
    return elapsed


async def asyncjobs_e2e(store: Callable[[], str | Store], n: int, concurrency: int) -> float:
    """Time one runtime enqueueing ``n`` no-ops (one awaited call each) while it runs them."""
    counter = _Counter(n)
    rt = _runtime(store(), concurrency, counter)
    async with rt:
        start = time.perf_counter()
        for i in range(n):
            await rt.once("noop", i)
        await counter.finished.wait()
        elapsed = time.perf_counter() - start
    return elapsed


async def asyncjobs_enqueue(store: Callable[[], str | Store], n: int, concurrency: int) -> float:
    """Time a runtime with no workers storing ``n`` no-ops, one awaited call at a time."""
    async with _runtime(store(), 0, lambda: None) as rt:
        start = time.perf_counter()
        for i in range(n):
            await rt.once("noop", i)
        return time.perf_counter() - start


async def asyncjobs_burst(store: Callable[[], str | Store], n: int, concurrency: int) -> float:
    """Time a runtime with no workers storing ``n`` no-ops from ``n`` tasks at once."""
    async with _runtime(store(), 0, lambda: None) as rt:
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(rt.once, "noop", i)
        return time.perf_counter() - start


async def run(n: int, concurrency: int, runs: int) -> list[tuple[str, float]]:
    """Return ``(name, executions per second)`` rows, the ceiling first."""
    folder = Path(tempfile.mkdtemp(prefix="asyncjobs-bench-"))
    counter = 0

    def sqlite_url() -> str:
        nonlocal counter
        counter += 1
        return f"sqlite:///{folder}/bench-{counter}.db"

    def sqlite_normal_url() -> str:
        return sqlite_url() + "?synchronous=normal"

    times = [await bare_anyio(n, concurrency) for _ in range(runs)]
    rows = [("bare anyio task group (ceiling)", n / statistics.median(times))]
    factories: list[tuple[str, Callable[[], str | Store]]] = [
        ("memory", MemoryStore),
        ("sqlite (synchronous=full)", sqlite_url),
        ("sqlite (synchronous=normal)", sqlite_normal_url),
    ]
    try:
        for label, factory in factories:
            for kind, measure in (
                ("drain", asyncjobs_drain),
                ("e2e", asyncjobs_e2e),
                ("enqueue, one at a time", asyncjobs_enqueue),
                ("enqueue, all at once", asyncjobs_burst),
            ):
                times = [await measure(factory, n, concurrency) for _ in range(runs)]
                rows.append((f"asyncjobs {label}, {kind}", n / statistics.median(times)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows
