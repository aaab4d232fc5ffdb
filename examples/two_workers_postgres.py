"""Two worker processes sharing one PostgreSQL database: each job runs once, on either.

What it shows: a module that registers tasks (this file), two ``asyncjobs worker`` processes
started on it against one PostgreSQL store, jobs enqueued by a third runtime that runs
nothing (``workers=0``), the work split between the two workers, and a graceful stop
(SIGTERM drains each worker). Add machines the same way: point them at the same database.
Needs the ``asyncjobs[postgres]`` extra and a PostgreSQL server you can create tables in
(asyncjobs keeps them in their own schema, ``asyncjobs`` unless the URL says
``?schema=...``).

Run it (from the repository root)::

    python examples/two_workers_postgres.py postgresql://user@localhost/mydb

What you will see: 20 jobs enqueued, then how many each worker ran. You should see::

    each of the 20 jobs ran exactly once, on 2 workers
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from pathlib import Path

import anyio

import asyncjobs as aj

# The workers import this module and find `rt`; `asyncjobs worker --store URL` points it at
# the database. Short heartbeats: a worker that dies is noticed within `node_timeout`.
rt = aj.Runtime(workers=2, poll_interval=1.0, heartbeat_interval=1.0, node_timeout=10)


@rt.task(name="resize")
async def resize(ctx: aj.Context, image: int) -> dict[str, int]:
    ctx.progress(50, f"resizing image {image}")
    await anyio.sleep(0.1)  # the real work would go here
    return {"image": image, "worker_pid": os.getpid()}


async def main(url: str) -> None:
    command = [sys.executable, "-m", "asyncjobs", "worker", __file__, "--store", url]
    workers = [await anyio.open_process(command, stdout=None, stderr=None) for _ in range(2)]
    try:
        enqueuer = aj.Runtime(url, workers=0, system_jobs=False)
        enqueuer.task(name="resize")(resize)
        async with enqueuer:
            with anyio.fail_after(30):  # both workers are up (they register as nodes)
                pids = {worker.pid for worker in workers}
                while pids - {node.pid for node in await enqueuer.store.list_nodes()}:  # noqa: ASYNC110
                    await anyio.sleep(0.1)
            jobs = [await enqueuer.once("resize", image) for image in range(20)]
            print(f"enqueued {len(jobs)} jobs")
            results = [await job.result(timeout=60) for job in jobs]
            runs = [await job.executions() for job in jobs]
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)  # drains: running executions finish first
        for worker in workers:
            await worker.wait()
    by_worker = Counter(result["worker_pid"] for result in results)  # type: ignore[index,call-overload]
    for pid, count in sorted(by_worker.items()):
        print(f"worker {pid} ran {count} jobs")
    assert all(len(executions) == 1 and executions[0].attempt == 1 for executions in runs)
    print(f"each of the {len(jobs)} jobs ran exactly once, on {len(by_worker)} workers")


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].startswith(("postgresql://", "postgres://")):
        sys.exit(f"usage: python {Path(__file__).name} postgresql://user@host/db")
    anyio.run(main, sys.argv[1])
