"""The tasks that the CLI tests' worker runs: ``asyncjobs worker tests.cli.tasks``."""

from __future__ import annotations

import os

import anyio

import asyncjobs as aj

rt = aj.Runtime(workers=4, process_workers=2, shutdown_timeout=20, poll_interval=0.05)


@rt.task(name="add")
async def add(ctx: aj.Context, a: int, b: int) -> int:
    ctx.log.info("adding %d and %d", a, b)
    return a + b


@rt.task(name="slow")
async def slow(ctx: aj.Context, seconds: float, steps: int = 4) -> str:
    for step in range(steps):
        ctx.progress(100 * step / steps, f"step {step + 1} of {steps}")
        ctx.log.info("step %d", step + 1)
        await anyio.sleep(seconds / steps)
    ctx.log.warning("almost done")
    return "slept"


@rt.task(name="fail", retries=1, backoff=0.05)
async def fail(ctx: aj.Context, message: str) -> None:
    ctx.log.error("failing on attempt %d", ctx.attempt)
    raise ValueError(message)


@rt.task(name="pid", mode="process")
def pid(ctx: aj.Context, tag: str) -> dict[str, object]:
    ctx.progress(50, "in a child")
    return {"tag": tag, "pid": os.getpid()}
