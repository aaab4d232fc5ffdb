"""Quickstart: a task, a job, and everything asyncjobs records about its run.

What it shows: registering an async task and a sync one, running them as one-off jobs,
awaiting a result, a job that fails and is retried, and reading back an execution's status
history, progress and logs.

Run it (from the repository root, nothing to set up; the store is in memory)::

    python examples/quickstart.py

What you will see: the result of each job, the status history of the retried one and its
log lines. You should see, as the last line::

    done: resized 3 images, checksum 1785, flaky succeeded on attempt 3
"""

from __future__ import annotations

import anyio

import asyncjobs as aj

rt = aj.Runtime("memory://", system_jobs=False)  # memory: for examples and notebooks


@rt.task
async def resize(ctx: aj.Context, images: list[str], width: int = 640) -> list[str]:
    """An async task: runs in the runtime's pool, on the event loop."""
    for done, image in enumerate(images, start=1):
        await anyio.sleep(0.01)  # the real work would go here
        ctx.progress(100 * done / len(images), f"{image} -> {width}px")
        ctx.log.info("resized %s", image, width=width)
    return [f"{image.rsplit('.', 1)[0]}-{width}.png" for image in images]


@rt.task
def checksum(ctx: aj.Context, n: int) -> int:
    """A sync task: runs in a worker thread, so it never blocks the loop."""
    ctx.progress(100, "summed")
    return sum(i * i for i in range(n))


@rt.task(retries=3, backoff=aj.Backoff.fixed(0.05))
async def flaky(ctx: aj.Context) -> str:
    """Fails on its first two attempts; ``retries=3`` lets the third one succeed."""
    if ctx.attempt < 3:
        ctx.log.warning("attempt %d: the server said 503", ctx.attempt)
        raise ConnectionError("503 Service Unavailable")
    return f"ok on attempt {ctx.attempt}"


async def main() -> None:
    async with rt:  # opens the store, starts the pool; drains gracefully on exit
        job = await rt.once(resize, ["a.jpg", "b.jpg", "c.jpg"], kwargs={"width": 320})
        resized = await job.result()  # waits for the execution; raises if it failed
        assert isinstance(resized, list)  # results are JSON values
        print(f"resize  -> {resized}")

        total = await (await rt.once(checksum, 18)).result()
        print(f"checksum -> {total}")

        retried = await rt.once(flaky)
        print(f"flaky   -> {await retried.result()}")
        last = await retried.wait()  # the execution that ended the job
        history = await rt.executions.history(last.id)
        print("flaky's history:", " -> ".join(status.value for status, _at in history))
        logs = await rt.logs.list(job_id=retried.id)
        for record in logs.items:
            print(f"  [{record.level.name.lower()}] {record.message}")

        print(
            f"done: resized {len(resized)} images, checksum {total}, "
            f"flaky succeeded on attempt {last.attempt}"
        )


if __name__ == "__main__":
    anyio.run(main)
