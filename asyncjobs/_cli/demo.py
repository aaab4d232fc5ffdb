"""``asyncjobs demo``: a few jobs, live progress, a retry, a failure, and a summary."""

from __future__ import annotations

import sys
import time

import anyio

import asyncjobs as aj


def build_runtime(store: str | None) -> aj.Runtime:
    rt = aj.Runtime(store, workers=4, shutdown_timeout=5)

    @rt.task(name="demo.download", category="demo/io")
    async def download(ctx: aj.Context, name: str, size_mb: int) -> dict[str, object]:
        for done in range(size_mb + 1):
            ctx.progress(100 * done / size_mb, f"{done}/{size_mb} MB")
            await anyio.sleep(0.05)
        ctx.log.info("downloaded %s", name, size_mb=size_mb)
        return {"file": name, "bytes": size_mb * 1_000_000}

    @rt.task(name="demo.checksum", category="demo/cpu")
    def checksum(ctx: aj.Context, rounds: int) -> int:
        # A plain function: it runs in a worker thread and still reports progress.
        value = 0
        for i in range(rounds):
            value = (value * 31 + i) % 1_000_003
            if i % (rounds // 20) == 0:
                ctx.progress(100 * i / rounds, "hashing")
                time.sleep(0.02)
        return value

    @rt.task(name="demo.flaky", retries=2, backoff=aj.Backoff.fixed(0.3), category="demo")
    async def flaky(ctx: aj.Context) -> str:
        ctx.progress(50, f"attempt {ctx.attempt}")
        await anyio.sleep(0.2)
        if ctx.attempt < 3:
            raise ConnectionError(f"upstream timed out (attempt {ctx.attempt})")
        return "third time lucky"

    @rt.task(name="demo.broken", category="demo")
    async def broken(ctx: aj.Context, path: str) -> None:
        ctx.log.warning("about to read %s", path)
        await anyio.sleep(0.3)
        raise FileNotFoundError(f"no such file: {path}")

    return rt


async def _demo(store: str | None) -> int:
    rt = build_runtime(store)
    out = sys.stdout
    live = out.isatty()
    async with rt:
        print(f"asyncjobs demo on {rt.store.url}\n")
        jobs = [
            await rt.once("demo.download", "dataset.csv", 12, name="download dataset.csv"),
            await rt.once("demo.download", "model.bin", 20, name="download model.bin", priority=-1),
            await rt.once("demo.checksum", 400_000, name="checksum (thread)"),
            await rt.once("demo.flaky", name="flaky upstream"),
            await rt.once("demo.broken", "/etc/missing.conf", name="read missing file"),
        ]
        names = {job.id: job.name for job in jobs}
        progress = {job.id: (0.0, "queued") for job in jobs}

        def draw(final: bool = False) -> None:
            lines = []
            for job_id, (pct, message) in progress.items():
                bar = "#" * int(pct / 5)
                lines.append(f"  {names[job_id]:<22} [{bar:<20}] {pct:5.1f}%  {message[:30]:<30}")
            if live:
                out.write(f"\x1b[{len(lines)}A" if draw.drawn else "")  # type: ignore[attr-defined]
                out.write("\n".join(lines) + "\n")
                draw.drawn = True  # type: ignore[attr-defined]
            elif final:
                out.write("\n".join(lines) + "\n")
            out.flush()

        draw.drawn = False  # type: ignore[attr-defined]
        remaining = set(names)

        async def follow() -> None:
            async for event in rt.events():
                if event.job_id not in progress:
                    continue
                pct, _message = progress[event.job_id]
                if isinstance(event, aj.ProgressReported):
                    progress[event.job_id] = (event.progress, event.message)
                elif isinstance(event, aj.StateChanged):
                    done = event.status == aj.ExecutionStatus.COMPLETED
                    progress[event.job_id] = (100.0 if done else pct, event.status.value)
                    if event.status in (
                        aj.ExecutionStatus.COMPLETED,
                        aj.ExecutionStatus.FAILED,
                        aj.ExecutionStatus.CANCELLED,
                    ):
                        remaining.discard(event.job_id)
                    elif not live:
                        print(f"  {names[event.job_id]}: {event.status.value}")
                draw()
                if not remaining:
                    return

        with anyio.fail_after(60):
            await follow()
        draw(final=True)
        print("\nsummary:")
        for job in jobs:
            execution = await job.wait()
            history = " -> ".join(t.status.value for t in await rt.executions.history(execution.id))
            outcome = (
                f"result {execution.result!r}"
                if execution.error is None
                else f"{execution.error.type}: {execution.error.message}"
            )
            print(f"  {job.name:<22} attempt {execution.attempt}  {outcome}")
            print(f"  {'':<22} {history}")
        failed = await rt.executions.count(status="failed")
        completed = await rt.executions.count(status="completed")
        print(f"\n{completed} completed, {failed} failed in this store so far.")
        print("Every state, progress value and log line above is stored: try it again,")
        print("or query it with rt.executions.list() / rt.logs.list().")
    return 0


def run_demo(store: str | None) -> int:
    """Run the demo; return the exit code."""
    return anyio.run(_demo, store)
