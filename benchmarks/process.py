"""Process mode: the wall time of one no-op process execution against a bare interpreter.

* ``baseline``: spawn and reap ``python -c "import orjson"`` (a child that does nothing but
  start Python and import one small library), one at a time;
* ``process execution``: one no-op task with ``mode="process"``, enqueued and awaited one at
  a time on a memory store, so the figure is the whole cost: claim, spawn, protocol, reap,
  outcome;
* executions per second with ``process_workers`` 2 and 8 (enqueue all, then drain).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import anyio

import asyncjobs as aj
from benchmarks import tasks


def baseline_spawn(n: int) -> float:
    """Return the median seconds to spawn and reap ``python -c "import orjson"``."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import orjson"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _runtime(process_workers: int) -> aj.Runtime:
    rt = aj.Runtime("memory://", workers=64, process_workers=process_workers, system_jobs=False)
    rt.task(mode="process")(tasks.noop)
    return rt


async def sequential(n: int) -> float:
    """Return the median seconds of one no-op process execution, enqueued and awaited."""
    times = []
    async with _runtime(1) as rt:
        for _ in range(n):
            start = time.perf_counter()
            await (await rt.once(tasks.noop)).wait()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


async def throughput(n: int, process_workers: int) -> float:
    """Return no-op process executions per second with ``process_workers`` children."""
    async with _runtime(process_workers) as rt:
        start = time.perf_counter()
        jobs = [await rt.once(tasks.noop) for _ in range(n)]
        for job in jobs:
            await job.wait()
        return n / (time.perf_counter() - start)


def run(n: int) -> list[tuple[str, float, str]]:
    """Return ``(name, value, unit)`` rows."""
    base = baseline_spawn(n)
    per = anyio.run(sequential, n)
    rows = [
        ('spawn+reap python -c "import orjson" (baseline)', base * 1000, "ms"),
        ("no-op process execution, end to end", per * 1000, "ms"),
        ("ratio execution / baseline (target <= 1.5)", per / base, "x"),
    ]
    for workers in (2, 8):
        rate = anyio.run(throughput, n * 2, workers)
        rows.append((f"executions/s, process_workers={workers}", rate, "/s"))
    return rows
