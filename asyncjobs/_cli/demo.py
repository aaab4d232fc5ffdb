"""``asyncjobs demo``: the first thing a new user runs, so it shows what the product is.

In about ten seconds, on the embedded SQLite store: coroutine, thread and process
executions with live progress, a job that fails twice and then succeeds on retry, one that
fails for good, an interval job whose runs share data, a cron job's next fire time, and a
summary of every execution's history, followed by the commands that query it all again.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

import asyncjobs as aj

from . import demo_tasks, store_url
from .render import LiveBars, duration, outcome, paint, table, when

if TYPE_CHECKING:
    import argparse


def build_runtime(store: str) -> aj.Runtime:
    """The demo's runtime, with the tasks of :mod:`.demo_tasks` and their options."""
    rt = aj.Runtime(store, workers=8, process_workers=2, shutdown_timeout=5, poll_interval=0.1)
    rt.task(name="demo.download", category="demo/io")(demo_tasks.download)
    rt.task(name="demo.checksum", category="demo/cpu")(demo_tasks.checksum)
    rt.task(name="demo.render", mode="process", timeout=60, category="demo/cpu")(demo_tasks.render)
    rt.task(name="demo.flaky", retries=2, backoff=aj.Backoff.fixed(0.5), category="demo")(
        demo_tasks.flaky
    )
    rt.task(name="demo.broken", category="demo")(demo_tasks.broken)
    rt.task(name="demo.heartbeat", category="demo")(demo_tasks.heartbeat)
    rt.task(name="demo.report", category="demo")(demo_tasks.report)
    return rt


@dataclass
class _Tracked:
    job: aj.Job
    kind: str
    ended: bool = False
    runs: int = 0
    executions: list[str] = field(default_factory=list)


def command_demo(args: argparse.Namespace) -> int:
    """Run ``asyncjobs demo``; return the exit code."""
    return anyio.run(_demo, store_url(args))


async def _demo(store: str) -> int:
    out = sys.stdout
    rt = build_runtime(store)
    async with rt:
        stats = rt.statistics()
        print(
            f"asyncjobs demo: a runtime with {stats.workers} coroutine workers and 2 process "
            f"workers (pid {os.getpid()}), on {rt.store.url}\n",
            file=out,
        )
        cursor = await rt.store.last_seq()
        tracked = [
            _Tracked(
                await rt.once("demo.download", "dataset.csv", 30, name="download dataset.csv"),
                "coroutine",
            ),
            _Tracked(
                await rt.once("demo.download", "model.bin", 45, name="download model.bin"),
                "coroutine",
            ),
            _Tracked(await rt.once("demo.checksum", 2000, name="checksum"), "thread"),
            _Tracked(await rt.once("demo.render", 1, 40, name="render frames 1-40"), "process"),
            _Tracked(await rt.once("demo.render", 41, 80, name="render frames 41-80"), "process"),
            _Tracked(await rt.once("demo.flaky", name="call a flaky upstream"), "retries=2"),
            _Tracked(
                await rt.once("demo.broken", "/etc/missing.conf", name="read a missing file"),
                "fails",
            ),
            _Tracked(
                await rt.every(1, "demo.heartbeat", name="heartbeat", shared={"beats": 0}),
                "every 1s",
            ),
        ]
        nightly = await rt.cron("0 3 * * *", "demo.report", name="nightly report", tz="UTC")
        by_job = {t.job.id: t for t in tracked}
        bars = LiveBars(out, label_width=22)
        for t in tracked:
            bars.add(t.job.id, t.job.name, kind=t.kind, status="queued")
        bars.draw(force=True)
        heartbeat = tracked[-1]
        one_offs = tracked[:-1]

        async def follow() -> None:
            async for event in rt.events(after=cursor):
                t = by_job.get(event.job_id)
                if t is None:
                    continue
                if event.execution_id not in t.executions:
                    t.executions.append(event.execution_id)
                if isinstance(event, aj.ProgressReported):
                    bars.update(t.job.id, progress=event.progress, message=event.message)
                elif isinstance(event, aj.StateChanged):
                    status = event.status
                    if t is heartbeat:
                        if status == aj.ExecutionStatus.COMPLETED:
                            t.runs += 1
                            bars.update(t.job.id, message=f"{t.runs} runs, every second")
                        if bars.is_live or t.runs == 0:
                            # Off a terminal, one line for its first run, not one per run.
                            bars.update(t.job.id, status=status.value)
                        continue
                    if status == aj.ExecutionStatus.RETRYING:
                        bars.update(t.job.id, status=status.value, message="retrying in 0.5s")
                    else:
                        bars.update(t.job.id, status=status.value)
                    t.ended = status in (
                        aj.ExecutionStatus.COMPLETED,
                        aj.ExecutionStatus.FAILED,
                        aj.ExecutionStatus.CANCELLED,
                    )
                    if all(o.ended for o in one_offs) and heartbeat.runs >= 3:
                        return
                if heartbeat.runs >= 3 and all(o.ended for o in one_offs):
                    return

        with anyio.fail_after(50):
            await follow()
        # The scheduled jobs would outlive the demo in this store: stop them.
        await rt.jobs.stop(heartbeat.job.id)
        await rt.jobs.stop(nightly.id)
        bars.update(heartbeat.job.id, status="stopped", progress=100.0)
        bars.close()
        await _summary(rt, one_offs, heartbeat, nightly)
    return 0


async def _summary(
    rt: aj.Runtime, one_offs: list[_Tracked], heartbeat: _Tracked, nightly: aj.Job
) -> None:
    out = sys.stdout
    colour = LiveBars(out).is_live and "NO_COLOR" not in os.environ
    print("\nWhat happened (every line below is read back from the store):\n", file=out)
    rows = []
    retried: list[str] = []
    for t in one_offs:
        execution = await t.job.wait()
        history = await rt.executions.history(execution.id)
        first_run = next((at for s, at in history if s == aj.ExecutionStatus.RUNNING), None)
        if execution.attempt > 1:
            path = " -> ".join(s.value for s, _ in history)
            retried.append(f"  {t.job.name} went {path}")
        rows.append(
            [
                t.job.name,
                t.kind,
                execution.status.value,
                str(execution.attempt),
                duration(first_run, execution.ended_at),
                outcome(execution),
            ]
        )
    table(
        ["JOB", "KIND", "STATUS", "ATTEMPTS", "TOOK", "RESULT OR ERROR"],
        rows,
        out,
        status_column=2,
    )
    print("", *retried, sep="\n", file=out)
    await heartbeat.job.refresh()
    print(
        f"  heartbeat ran {heartbeat.runs} times, every second; its runs share data: "
        f"{json.dumps(heartbeat.job.shared)}",
        file=out,
    )
    print(
        f"  nightly report, cron '0 3 * * *' (UTC), would next fire at "
        f"{when(nightly.record.next_fire_at)}; both scheduled jobs are now stopped",
        file=out,
    )
    flaky = await one_offs[5].job.wait()
    broken = await one_offs[6].job.wait()
    completed = await rt.executions.count(status="completed")
    failed = await rt.executions.count(status="failed")
    print(
        f"\n{paint(str(completed), 'completed', bool(colour))} completed and "
        f"{paint(str(failed), 'failed', bool(colour))} failed executions in this store so far.",
        file=out,
    )
    flag = "" if rt.store.url == "sqlite:///asyncjobs.db" else f" --store {rt.store.url}"
    print(
        "\nAsk the store yourself:\n"
        f"  asyncjobs executions list{flag}\n"
        f"  asyncjobs logs {flaky.id}{flag}\n"
        f"  asyncjobs executions get {broken.id}{flag}\n"
        "Run your own tasks: asyncjobs worker --help",
        file=out,
    )
