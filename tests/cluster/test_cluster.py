"""Several real worker processes on one store: each execution once, each tick once.

Every node is a real ``python -m tests.cluster.node`` process; the tasks write each run into
a ledger apart from the store, so what ran is proved by the tasks themselves, not by the
store's own bookkeeping.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
from collections import Counter
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

import asyncjobs as aj
from asyncjobs import ExecutionStatus as S
from tests.cluster.node import build

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.abc import Process

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
JOBS = 3000


@pytest.fixture
def anyio_backend() -> object:
    return "asyncio"  # the nodes run on uvloop; the test drives them from plain asyncio


@asynccontextmanager
async def cluster(url: str, ledger: Path, size: int) -> AsyncIterator[list[Process]]:
    """Start ``size`` nodes and wait until each is ready; terminate them on exit."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "runner")])}
    nodes: list[Process] = []
    try:
        for _ in range(size):
            node = await anyio.open_process(
                [sys.executable, "-m", "tests.cluster.node", url, str(ledger)],
                cwd=ROOT,
                env=env,
                stdin=None,
                stderr=None,
            )
            nodes.append(node)
            assert node.stdout is not None
            with anyio.fail_after(30):
                line = await BufferedByteReceiveStream(node.stdout).receive_until(b"\n", 100)
            assert line == b"ready"
        yield nodes
    finally:
        for node in nodes:
            if node.returncode is None:
                node.send_signal(signal.SIGKILL)
            await node.aclose()


def read_ledger(ledger: Path) -> list[tuple[str, str, int, int, int, float]]:
    with sqlite3.connect(ledger, timeout=60) as conn:
        rows = conn.execute("SELECT * FROM runs").fetchall()
    conn.close()
    return rows


async def ledger_rows(ledger: Path) -> list[tuple[str, str, int, int, int, float]]:
    return await anyio.to_thread.run_sync(read_ledger, ledger)


async def wait_completed(rt: aj.Runtime, count: int, timeout: float) -> None:
    with anyio.fail_after(timeout):
        while await rt.executions.count(status="completed") < count:
            await anyio.sleep(0.1)


async def test_three_nodes_share_the_jobs_and_run_each_once(
    cluster_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.db"
    observer = build(cluster_url, str(ledger), workers=0)
    async with observer, cluster(cluster_url, ledger, 3) as nodes:
        for i in range(JOBS):
            await observer.once("work", i)
        await wait_completed(observer, JOBS, 120)
        assert await observer.executions.count(status="running") == 0
        assert await observer.executions.count() == JOBS
    rows = await ledger_rows(ledger)
    runs = Counter(execution_id for execution_id, *_ in rows)
    assert len(runs) == JOBS and set(runs.values()) == {1}  # each ran exactly once
    assert sorted(arg for _, _, arg, *_ in rows) == list(range(JOBS))
    by_node = Counter(pid for *_, pid, _ in rows)
    assert set(by_node) == {node.pid for node in nodes}, by_node  # all three took part


async def test_a_sigkilled_node_is_recovered_by_the_others(
    cluster_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.db"
    observer = build(cluster_url, str(ledger), workers=0)
    async with observer, cluster(cluster_url, ledger, 3) as nodes:
        for i in range(JOBS):
            await observer.once("work", i, 0.01)
        by_pid = {node.pid: node for node in nodes}
        with anyio.fail_after(60):
            while await observer.executions.count(status="completed") < JOBS // 4:
                await anyio.sleep(0.02)
            # The victim is a node with executions in hand (tasks last 10 ms: some will be).
            while True:
                running = await observer.executions.list(status="running", page_size=100)
                where = {node.id: node.pid for node in await observer.store.list_nodes()}
                busy = [where.get(ex.node or "") for ex in running.items]
                if any(pid in by_pid for pid in busy):
                    break
                await anyio.sleep(0.005)
        victim = next(by_pid[pid] for pid in busy if pid is not None and pid in by_pid)
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        # Its executions are recovered within the lease (node_timeout=2 s) plus a heartbeat.
        await wait_completed(observer, JOBS, 120)
        executions: list[aj.Execution] = []
        for page in range(1, JOBS // 1000 + 2):
            executions.extend((await observer.executions.list(page=page, page_size=1000)).items)
    assert running.items  # the victim had work in hand
    assert len(executions) == JOBS
    assert {ex.status for ex in executions} == {S.COMPLETED}
    retried = {ex.id for ex in executions if ex.attempt > 1}
    assert retried, "the victim's running executions were recovered as new attempts"
    rows = await ledger_rows(ledger)
    runs = Counter(execution_id for execution_id, *_ in rows)
    assert set(runs) == {ex.id for ex in executions}  # none lost
    for execution_id, count in runs.items():
        if count > 1:  # ran again only if the victim had it when it died
            assert execution_id in retried
            pids = [pid for ex_id, _, _, _, pid, _ in rows if ex_id == execution_id]
            assert victim.pid in pids and len(pids) == 2
    survivors = {node.pid for node in nodes} - {victim.pid}
    assert {pid for ex_id, _, _, attempt, pid, _ in rows if attempt > 1} <= survivors


@pytest.mark.slow
async def test_a_cron_every_second_fires_each_tick_once_across_three_nodes(
    cluster_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.db"
    observer = build(cluster_url, str(ledger), workers=0)
    async with observer, cluster(cluster_url, ledger, 3):
        job = await observer.cron("* * * * * *", "tick")
        await anyio.sleep(30)
        await observer.jobs.stop(job.id)
        # A tick that ran as the job stopped may still be writing its outcome: wait for it.
        with anyio.fail_after(30):
            while await observer.executions.count(job_id=job.id, status="running"):
                await anyio.sleep(0.05)
        executions = (await observer.executions.list(job_id=job.id, page_size=1000)).items
    ticks = Counter(ex.scheduled_for for ex in executions)
    assert set(ticks.values()) == {1}, [t for t, n in ticks.items() if n > 1]
    seconds = sorted(int(t.timestamp()) for t in ticks)
    assert len(seconds) >= 28, seconds
    assert seconds == list(range(seconds[0], seconds[0] + len(seconds)))  # no tick lost
    rows = await ledger_rows(ledger)
    runs = Counter(execution_id for execution_id, *_ in rows)
    completed = {ex.id for ex in executions if ex.status == S.COMPLETED}
    assert set(runs) == completed and set(runs.values()) == {1}


async def test_a_node_paused_past_its_lease_cannot_overwrite_the_rescued_outcome(
    cluster_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.db"
    observer = build(cluster_url, str(ledger), workers=0)
    async with observer, cluster(cluster_url, ledger, 1) as (paused,):
        job = await observer.once("work", 7, 2.0)
        with anyio.fail_after(30):
            while (await observer.executions.count(status="running")) == 0:
                await anyio.sleep(0.02)
        paused.send_signal(signal.SIGSTOP)
        try:
            async with cluster(cluster_url, ledger, 1) as (rescuer,):
                rescued = await job.wait(timeout=60)  # recovered after the lease, run again
                assert rescued.status == S.COMPLETED and rescued.attempt == 2
                paused.send_signal(signal.SIGCONT)
                with anyio.fail_after(30):  # the paused node finishes its stale run too...
                    while len(await ledger_rows(ledger)) < 2:
                        await anyio.sleep(0.05)
                await anyio.sleep(1.5)  # ...and tries to write it (the writer flushes by then)
                after = await observer.executions.get(rescued.id)
                history = await observer.executions.history(rescued.id)
        finally:
            paused.send_signal(signal.SIGCONT)
    assert after == rescued  # its late outcome was fenced off
    assert [status for status, _ in history].count(S.COMPLETED) == 1
    pids = {pid: attempt for _, _, _, attempt, pid, _ in await ledger_rows(ledger)}
    assert pids == {paused.pid: 1, rescuer.pid: 2}


ENQUEUE_ONE_KEY = """
import sys, anyio, asyncjobs as aj
rt = aj.Runtime(sys.argv[1], workers=0, system_jobs=False)
rt.task(name="work")(lambda i: i)
async def main() -> None:
    async with rt:
        ids = set()
        async def add() -> None:
            ids.add((await rt.once("work", 0, key="only-one", after=3600)).id)
        async with anyio.create_task_group() as tg:
            for _ in range(int(sys.argv[2])):
                tg.start_soon(add)
        print(" ".join(sorted(ids)))
anyio.run(main)
"""


async def test_one_key_enqueued_a_thousand_times_from_four_processes_makes_one_job(
    cluster_url: str,
) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "runner")])}
    async with aj.Runtime(cluster_url, workers=0, system_jobs=False):
        pass  # the schema exists before the processes race
    argv = [sys.executable, "-c", ENQUEUE_ONE_KEY, cluster_url, "250"]
    results: list[bytes] = []

    async def enqueue() -> None:
        done = await anyio.run_process(argv, cwd=ROOT, env=env, stderr=None)
        results.append(done.stdout)

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(enqueue)
    ids = {job_id for out in results for job_id in out.decode().split()}
    async with aj.Runtime(cluster_url, workers=0, system_jobs=False) as rt:
        assert await rt.jobs.count() == 1
        (job,) = (await rt.jobs.list()).items
    assert ids == {job.id}


async def test_a_daemon_runs_once_across_nodes_and_moves_when_its_node_dies(
    cluster_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.db"
    observer = build(cluster_url, str(ledger), workers=0)
    async with observer, cluster(cluster_url, ledger, 3) as nodes:
        job = await observer.daemon("forever")
        by_pid = {node.pid: node for node in nodes}
        peak = 0

        async def runners() -> list[int]:
            nonlocal peak
            running = (await observer.executions.list(job_id=job.id, status="running")).items
            peak = max(peak, len(running))
            where = {node.id: node.pid for node in await observer.store.list_nodes()}
            return [where[ex.node] for ex in running if ex.node in where]

        with anyio.fail_after(30):
            while not (first := await runners()):
                await anyio.sleep(0.05)
        await anyio.sleep(1)  # the other nodes leave it alone
        assert await runners() == first
        victim = by_pid[first[0]]
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        with anyio.fail_after(60):  # recovered after the lease, restarted on a survivor
            while not (now := await runners()) or now == first:
                await anyio.sleep(0.05)
        await anyio.sleep(1)
        assert await runners() == now
        await observer.jobs.stop(job.id)
    assert peak == 1
    starts = [pid for *_, pid, _ in await ledger_rows(ledger)]
    assert len(starts) == 2 and starts[0] == victim.pid and starts[1] != victim.pid
