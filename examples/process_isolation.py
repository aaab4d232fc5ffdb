"""Process isolation: a CPU-bound task and a crashing task, beside healthy ones.

What it shows: tasks with ``mode="process"`` run in their own ``asyncjobs run`` child
process. A CPU-bound one does not stall the event loop (coroutine tasks keep running beside
it), and one that dies of a segmentation fault fails alone, with a clear error: the runtime
and every other execution carry on.

Run it (from the repository root; the store is in memory)::

    python examples/process_isolation.py

What you will see: the prime count from the child (and its pid, not ours), the crash as an
error, how many quick coroutine tasks completed meanwhile, and the longest the event loop
was blocked. You should see::

    crunch: completed, 17984 primes below 200000
    crash: failed, ProcessExited: the child was killed by SIGSEGV before sending a result
    ping: 20 of 20 completed while the children ran
    the runtime is still healthy: hello from after the crash
"""

from __future__ import annotations

import os
import signal
import time

import anyio

import asyncjobs as aj

# A child process imports this file to find its task (as "path/to/process_isolation.py:crunch"),
# so everything at the top level must be cheap and free of side effects: the work is in main().
rt = aj.Runtime("memory://", system_jobs=False, poll_interval=0.05)


@rt.task(mode="process", timeout=60)
def crunch(ctx: aj.Context, limit: int) -> dict[str, int]:
    """Count primes the slow way: pure CPU, which in a thread would hold the GIL."""
    count = 0
    for n in range(2, limit):
        if all(n % d for d in range(2, int(n**0.5) + 1)):
            count += 1
        if n % 20_000 == 0:
            ctx.progress(100 * n / limit, f"{n} checked")
    return {"primes": count, "pid": os.getpid()}


@rt.task(mode="process")
def crash(ctx: aj.Context) -> None:
    """Die the way a buggy C extension does: a segmentation fault."""
    ctx.log.info("about to crash")
    os.kill(os.getpid(), signal.SIGSEGV)


@rt.task
async def ping(ctx: aj.Context, n: int) -> int:
    """A quick coroutine task, run in this process beside the children."""
    await anyio.sleep(0.01)
    return n


async def longest_stall(stop: anyio.Event) -> float:
    """Measure how late a 10 ms sleep wakes up: the loop's worst stall, in seconds."""
    worst = 0.0
    while not stop.is_set():
        before = time.monotonic()
        await anyio.sleep(0.01)
        worst = max(worst, time.monotonic() - before - 0.01)
    return worst


async def main() -> None:
    async with rt:
        stop = anyio.Event()
        stalls: list[float] = []

        async def watch_loop() -> None:
            stalls.append(await longest_stall(stop))

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_loop)
            heavy = await rt.once(crunch, 200_000)
            doomed = await rt.once(crash)
            pings = [await rt.once(ping, n) for n in range(20)]

            heavy_run, crash_run = await heavy.wait(), await doomed.wait()
            ping_runs = [await job.wait() for job in pings]
            stop.set()

        result = heavy_run.result
        assert isinstance(result, dict)
        print(f"crunch: {heavy_run.status.value}, {result['primes']} primes below 200000")
        print(f"  (computed in child pid {result['pid']}; this process is {os.getpid()})")
        assert crash_run.error is not None
        print(f"crash: {crash_run.status.value}, {crash_run.error.type}: {crash_run.error.message}")
        done = sum(run.status == aj.ExecutionStatus.COMPLETED for run in ping_runs)
        print(f"ping: {done} of {len(ping_runs)} completed while the children ran")
        print(f"  (the event loop was never blocked for more than {stalls[0] * 1000:.0f} ms)")

        @rt.task
        async def hello() -> str:
            return "hello from after the crash"

        print(f"the runtime is still healthy: {await (await rt.once(hello)).result()}")


if __name__ == "__main__":
    anyio.run(main)
