"""Commands: run any executable as a job, with live progress, logs and a result.

What it shows: ``rt.command([...])`` runs a program (here the shell script
``report_progress.sh`` beside this file) as a process execution. The script reports its
progress, log lines, shared data and result by printing JSON lines on stdout (protocol v1,
``runner/PROTOCOL.md``); its plain output becomes info logs and its stderr error logs. The
job's ids and shared data reach it as ``JOB_*`` environment variables. A command that exits
non-zero fails, quoting the end of its stderr.

Run it (from the repository root; needs ``sh``; the store is in memory)::

    python examples/commands.py

What you will see: the progress events as they arrive, then the script's log lines by
level, its result, and a failing command. You should see::

    progress 100% file 5 of 5
    result: {'files': 5, 'folder': 'photos'}
    failing command: failed, ProcessExited: the child exited with code 3
"""

from __future__ import annotations

from pathlib import Path

import anyio

import asyncjobs as aj

SCRIPT = Path(__file__).resolve().parent / "report_progress.sh"


async def main() -> None:
    async with aj.Runtime("memory://", system_jobs=False, poll_interval=0.05) as rt:
        job = await rt.command(["sh", str(SCRIPT), "5"], shared={"folder": "photos"})
        (execution,) = await job.executions()

        # Follow the execution live: state changes, progress and log lines, as stored.
        async for event in rt.events(execution_id=execution.id, after=0):
            if isinstance(event, aj.ProgressReported):
                print(f"progress {event.progress:.0f}% {event.message}")
            elif isinstance(event, aj.StateChanged):
                print(f"state    {event.status.value}")

        logs = await rt.logs.list(execution_id=execution.id, page_size=100)
        for record in sorted(logs.items, key=lambda r: r.seq):
            data = f" {record.data}" if record.data else ""
            print(f"log      [{record.level.name.lower():<5}] {record.message}{data}")
        print(f"result: {await job.result()}")
        await job.refresh()
        print(f"shared data after the run: {job.shared}")

        failing = await rt.command(["sh", "-c", "echo 'cannot reach the NAS' >&2; exit 3"])
        ended = await failing.wait()
        assert ended.error is not None
        print(f"failing command: {ended.status.value}, {ended.error.type}: {ended.error.message}")


if __name__ == "__main__":
    anyio.run(main)
