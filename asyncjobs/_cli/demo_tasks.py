"""The tasks of ``asyncjobs demo``, in a module of their own so that a process child can
import them by ``asyncjobs._cli.demo_tasks:render`` (a child imports its task by name).

Plain functions: :func:`asyncjobs._cli.demo.build_runtime` registers them with their options.
"""

from __future__ import annotations

import hashlib
import os
import time

import asyncjobs as aj  # noqa: TC001 (resolved at run time: the Context parameter)


async def download(ctx: aj.Context, name: str, size_mb: int) -> dict[str, object]:
    """A coroutine with progress: it runs in the runtime's event loop."""
    import anyio

    for done in range(size_mb + 1):
        ctx.progress(100 * done / size_mb, f"{done}/{size_mb} MB")
        await anyio.sleep(0.09)
    ctx.log.info("downloaded %s", name, size_mb=size_mb)
    return {"file": name, "bytes": size_mb * 1_000_000}


def checksum(ctx: aj.Context, blocks: int) -> str:
    """A plain function: it runs in a worker thread and reports progress all the same."""
    digest = hashlib.sha256()
    for block in range(blocks):
        digest.update(block.to_bytes(8, "big") * 4096)
        if block % (blocks // 25 or 1) == 0:
            ctx.progress(100 * block / blocks, f"block {block}/{blocks}")
            time.sleep(0.06)
    return digest.hexdigest()[:16]


def render(ctx: aj.Context, first: int, last: int) -> dict[str, int]:
    """A process task: it runs in a fresh ``asyncjobs run`` child, with its own pid."""
    frames = last - first + 1
    for i, frame in enumerate(range(first, last + 1)):
        ctx.progress(100 * i / frames, f"frame {frame} in pid {os.getpid()}")
        time.sleep(0.06)
    print(f"rendered frames {first}-{last}")  # a child's print() becomes an info log line
    return {"frames": frames, "pid": os.getpid()}


async def flaky(ctx: aj.Context) -> str:
    """Fails twice, then succeeds: the task retries with a backoff."""
    import anyio

    ctx.progress(30, f"attempt {ctx.attempt}: calling upstream")
    await anyio.sleep(0.4)
    if ctx.attempt < 3:
        raise ConnectionError(f"upstream timed out (attempt {ctx.attempt})")
    return "third time lucky"


async def broken(ctx: aj.Context, path: str) -> None:
    """Fails for good: no retries left, the error and its traceback are stored."""
    import anyio

    ctx.log.warning("about to read %s", path)
    ctx.progress(50, "reading")
    await anyio.sleep(0.8)
    raise FileNotFoundError(f"no such file: {path}")


async def heartbeat(ctx: aj.Context) -> int:
    """A scheduled task: each run reads and bumps a counter in the job's shared data."""
    beats = ctx.shared.get("beats", 0)
    assert isinstance(beats, int)
    ctx.shared["beats"] = beats + 1
    ctx.progress(100, f"beat {beats + 1}")
    return beats + 1


async def report(ctx: aj.Context) -> str:
    """A cron task (the demo shows when it would fire next)."""
    return "report written"
