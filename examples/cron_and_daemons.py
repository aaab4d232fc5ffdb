"""Cron, intervals and daemons: a simulated day in well under a second.

What it shows: a cron job evaluated in a time zone, an interval job, and a supervised daemon
that crashes twice and is restarted after a backoff each time, then stopped for good. The
runtime reads a :class:`asyncjobs.ManualClock`, which this script moves forward: that is how
a test (or this example) lives through a day of schedules without waiting for it. In an
application, leave ``clock`` out and the real clock drives the same code.

Run it (from the repository root; the store is in memory)::

    python examples/cron_and_daemons.py

What you will see: the times the cron job fired (Paris time), how often the interval job
ran, and each start of the daemon. You should see::

    cron '0 */6 * * *' fired at 06:00, 12:00, 18:00, 00:00 (Europe/Paris)
    every 90 minutes: 16 runs in 24 hours
    daemon start 3 of listener is up after 2 crashes (restarted after 5 s, then 10 s)
    daemon stopped: stopped
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from itertools import pairwise
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import anyio

import asyncjobs as aj

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

PARIS = ZoneInfo("Europe/Paris")
START = datetime(2024, 6, 1, 3, 0, tzinfo=PARIS)  # 03:00 in Paris, a Saturday

clock = aj.ManualClock(START)
rt = aj.Runtime("memory://", clock=clock, poll_interval=0.01, system_jobs=False)
starts: list[float] = []  # when the daemon started, in clock time


@rt.task
async def backup(ctx: aj.Context) -> str:
    ctx.log.info("backing up")
    return "ok"


@rt.task
async def poll_feed(ctx: aj.Context) -> None:
    ctx.progress(100, "no news")


@rt.task
async def listener(ctx: aj.Context) -> None:
    """A long-running service: it crashes on its first two starts, then stays up."""
    starts.append(clock.time())
    ctx.log.info("listening (start %d)", len(starts))
    if len(starts) <= 2:
        raise ConnectionResetError("the broker hung up")
    await anyio.sleep_forever()  # a daemon's work never ends by itself


async def executions(job: aj.Job, status: str | None = None) -> int:
    return await rt.executions.count(job_id=job.id, status=status)


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Let the runtime work until ``condition()`` holds: re-checked at each stored event."""
    cursor = await rt.store.last_seq()  # taken first: no event can slip between check and wait
    with anyio.fail_after(10):
        if await condition():
            return
        async for _event in rt.events(after=cursor):
            if await condition():
                return


async def main() -> None:
    async with rt:
        nightly = await rt.cron("0 */6 * * *", backup, tz="Europe/Paris")
        feed = await rt.every(timedelta(minutes=90), poll_feed)

        # Move through one day, stopping at each next fire time of either job.
        end = clock.time() + 24 * 3600
        while True:
            await nightly.refresh()
            await feed.refresh()
            fire_times = [j.record.next_fire_at for j in (nightly, feed)]
            upcoming = min(t for t in fire_times if t is not None).timestamp()
            if upcoming > end:
                break
            ran = await executions(nightly) + await executions(feed)
            clock.set(upcoming)
            await until(partial(_ended_more_than, ran, nightly, feed))

        fired = [e.scheduled_for.astimezone(PARIS) for e in await nightly.executions()]
        print(
            "cron '0 */6 * * *' fired at",
            ", ".join(t.strftime("%H:%M") for t in fired),
            "(Europe/Paris)",
        )
        print(f"every 90 minutes: {await executions(feed, 'completed')} runs in 24 hours")

        # A daemon: restarted whenever it ends; quick restarts back off 5 s, 10 s, 20 s...
        daemon = await rt.daemon(listener, backoff=aj.Backoff.exponential(5, 60, jitter=0))
        for crash in (1, 2):
            await until(partial(_failed_at_least, daemon, crash))
            clock.advance(5 * crash)  # the backoff is measured on the runtime's clock
        await until(partial(_running, daemon))
        waits = [round(b - a) for a, b in pairwise(starts)]
        print(
            f"daemon start {len(starts)} of listener is up after 2 crashes "
            f"(restarted after {waits[0]} s, then {waits[1]} s)"
        )
        stopped = await rt.jobs.stop(daemon.id)  # ends it for good; pause() would suspend it
        print(f"daemon stopped: {stopped.status.value}")


async def _ended_more_than(count: int, *jobs: aj.Job) -> bool:
    ended = 0
    for job in jobs:
        for status in ("completed", "failed"):
            ended += await executions(job, status)
    return ended > count


async def _failed_at_least(job: aj.Job, count: int) -> bool:
    return await executions(job, "failed") >= count


async def _running(job: aj.Job) -> bool:
    return await executions(job, "running") == 1 and len(starts) == 3


if __name__ == "__main__":
    anyio.run(main)
