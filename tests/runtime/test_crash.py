from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import asyncjobs as aj
from asyncjobs import ExecutionStatus as S
from tests.runtime.crash_child import build

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
COUNT = 6


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "runner")])
    return env


@pytest.mark.parametrize("policy", ["retry", "fail"])
async def test_sigkilled_runtime_is_recovered_per_policy(tmp_path: Path, policy: str) -> None:
    url = f"sqlite:///{tmp_path}/crash.db"
    child = await anyio.open_process(
        [sys.executable, "-m", "tests.runtime.crash_child", url, policy, str(COUNT)],
        cwd=ROOT,
        env=_child_env(),
        stdin=None,
        stdout=None,
        stderr=None,
    )
    try:
        observer = aj.Runtime(url, workers=0)
        async with observer:
            with anyio.fail_after(20):
                # Wait until every execution runs and has its log line on disk.
                while (
                    await observer.executions.count(status="running") < COUNT
                    or (await observer.logs.list()).total < COUNT
                ):
                    assert child.returncode is None, "the child runtime exited early"
                    await anyio.sleep(0.02)
            logs_before = [(r.execution_id, r.message) for r in (await observer.logs.list()).items]
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()

    sys.argv.append("--after-crash")
    try:
        rt = build(url, policy)
        async with rt:
            jobs = (await rt.jobs.list(page_size=100, name="slow")).items
            assert len(jobs) == COUNT
            with anyio.fail_after(10):
                executions = [await job.wait() for job in jobs]
            logs_after = [(r.execution_id, r.message) for r in (await rt.logs.list()).items]
            nothing_running = await rt.executions.count(status="running")
    finally:
        sys.argv.remove("--after-crash")

    assert nothing_running == 0
    assert set(logs_before) <= set(logs_after)
    for ex in executions:
        if policy == "retry":
            assert ex.status == S.COMPLETED, ex
            assert ex.attempt == 2
            assert ex.result == ex.args[0]
        else:
            assert ex.status == S.FAILED
            assert ex.error is not None and ex.error.type == "WorkerLost"
            assert "died" in ex.error.message


ENQUEUE_CHILD = """
import sys, anyio, asyncjobs as aj
rt = aj.Runtime(sys.argv[1], workers=0)
@rt.task(name="noop")
async def noop(i: int) -> None: ...
async def main() -> None:
    async with rt:
        i = 0
        while True:
            job = await rt.once("noop", i, after=3600)
            print(job.id, flush=True)
            i += 1
anyio.run(main)
"""


def _enqueue_then_kill(url: str, count: int) -> list[str]:
    """Read ``count`` acknowledged job ids from an enqueuing child, then SIGKILL it."""
    with subprocess.Popen(
        [sys.executable, "-c", ENQUEUE_CHILD, url],
        cwd=ROOT,
        env=_child_env(),
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        acknowledged = [child.stdout.readline().strip() for _ in range(count)]
        child.send_signal(signal.SIGKILL)
    return acknowledged


async def test_a_job_survives_sigkill_once_enqueue_returned(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/durable.db"
    acknowledged = await anyio.to_thread.run_sync(_enqueue_then_kill, url, 50)
    assert len(acknowledged) == 50 and all(acknowledged)
    async with aj.Runtime(url, workers=0) as rt:
        for job_id in acknowledged:
            assert (await rt.jobs.get(job_id)).id == job_id
