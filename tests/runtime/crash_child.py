"""A runtime that a test kills with SIGKILL while its executions run.

Run as: python -m tests.runtime.crash_child URL POLICY COUNT
"""

from __future__ import annotations

import sys

import anyio

import asyncjobs as aj


def build(url: str, policy: str) -> aj.Runtime:
    rt = aj.Runtime(url, workers=16, poll_interval=0.05)

    @rt.task(name="slow", on_worker_lost=policy)
    async def slow(ctx: aj.Context, i: int) -> int:
        ctx.log.info("started %d", i)
        ctx.progress(10, "sleeping")
        if "--after-crash" not in sys.argv:
            await anyio.sleep(3600)
        return i

    return rt


async def main(url: str, policy: str, count: int) -> None:
    rt = build(url, policy)
    async with rt:
        for i in range(count):
            await rt.once("slow", i)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
