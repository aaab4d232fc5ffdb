"""Process mode against real children: ``asyncjobs run`` over protocol v1, and commands."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

import asyncjobs as aj
from asyncjobs import ExecutionStatus as S
from asyncjobs._engine.process import process_started
from tests.process import tasks

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]

FAST = aj.ProcessLimits(kill_grace=0.5, term_grace=0.5, max_log_lines=10_000)


def runtime(store_url: str, **options: object) -> aj.Runtime:
    options.setdefault("workers", 8)
    options.setdefault("process_limits", FAST)
    rt = aj.Runtime(store_url, system_jobs=False, poll_interval=0.05, **options)  # type: ignore[arg-type]
    for fn in (
        tasks.add, tasks.double, tasks.env_report, tasks.boom, tasks.sleepy, tasks.invalid_json,
        tasks.huge_line, tasks.flood, tasks.exit_quietly, tasks.segfault, tasks.stubborn,
        tasks.with_grandchild, tasks.not_json, tasks.deaf,
    ):  # fmt: skip
        rt.task(mode="process")(fn)

    @rt.task(name="beside")
    async def beside() -> str:
        return "fine"

    return rt


async def processes_with(marker: str) -> list[int]:
    return await anyio.to_thread.run_sync(_scan_processes_with, marker)


async def zombie_children() -> list[int]:
    return await anyio.to_thread.run_sync(_scan_zombie_children)


async def outcome(job: aj.Job, timeout: float = 30) -> aj.Execution:
    with anyio.fail_after(timeout):
        return await job.wait()


def _scan_processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _scan_zombie_children() -> list[int]:
    zombies = []
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and fields[1] == me:
            zombies.append(int(entry))
    return zombies


async def test_a_sync_task_reports_progress_logs_shared_and_result(store_url: str) -> None:
    async with runtime(store_url) as rt:
        job = await rt.once(tasks.add, 2, 3, shared={"before": True})
        assert await job.result(timeout=30) == 5
        ex = await job.wait()
        assert ex.progress == 50 and ex.progress_message == "half way"
        logs = {(r.level, r.message) for r in (await rt.logs.list(execution_id=ex.id)).items}
        assert logs == {
            (aj.LogLevel.INFO, "hello from print"),
            (aj.LogLevel.WARN, "careful: 2"),
            (aj.LogLevel.INFO, "adding"),
        }
        await job.refresh()
        assert job.shared == {"before": True, "sum": 5}
        assert ex.pid is not None


async def test_an_async_task_gets_its_context_and_shared_data(store_url: str) -> None:
    async with runtime(store_url) as rt:
        job = await rt.once(tasks.double, 21, shared={"k": "v"})
        result = await job.result(timeout=30)
        assert result == {"n": 42, "attempt": 1, "job": job.id, "shared": {"k": "v"}}


async def test_the_child_gets_job_variables_and_no_secrets(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    async with runtime(store_url) as rt:
        job = await rt.once(tasks.env_report, shared={"cursor": 7, "name": "x y"})
        env = await job.result(timeout=30)
    assert isinstance(env, dict)
    assert "SECRET_TOKEN" not in env
    ex_id = env["JOB_EXECUTION_ID"]
    assert env["JOB_ID"] == job.id and ex_id and env["JOB_ATTEMPT"] == "1"
    assert env["JOB_SHARED_CURSOR"] == "7" and env["JOB_SHARED_NAME"] == "x y"
    assert env["JOB_SHARED"] == '{"cursor":7,"name":"x y"}'


async def test_tasks_a_child_cannot_import_are_refused_at_creation() -> None:
    rt = aj.Runtime("memory://", system_jobs=False)
    with pytest.raises(aj.InvalidArguments, match="lambda"):
        rt.task(mode="process", name="l")(lambda: None)

    def nested() -> None: ...

    with pytest.raises(aj.InvalidArguments, match="defined inside a function"):
        rt.task(mode="process")(nested)
    rt.task(nested)
    async with rt:
        with pytest.raises(aj.InvalidArguments, match="move it to the top level"):
            await rt.once(nested, mode="process")
        assert await rt.jobs.count() == 0


async def test_commands_log_their_output_and_fail_with_code_and_stderr(
    store_url: str, tmp_path: Path
) -> None:
    async with runtime(store_url) as rt:
        ok = await rt.command(
            ["sh", "-c", 'echo "$GREETING $JOB_NAME"; echo \'{"type":"progress","progress":70}\''],
            env={"GREETING": "hi"},
            cwd=str(tmp_path),
        )
        ex = await outcome(ok)
        assert ex.status == S.COMPLETED and ex.progress == 70
        logs = [(r.level, r.message) for r in (await rt.logs.list(execution_id=ex.id)).items]
        assert logs == [(aj.LogLevel.INFO, "hi command:sh")]
        bad = await rt.command(["sh", "-c", "echo out; echo 'disk full' >&2; exit 3"])
        with pytest.raises(aj.ExecutionFailed, match="exited with code 3") as info:
            await bad.result(timeout=30)
        assert info.value.error is not None and "disk full" in info.value.error.message
        ex = await bad.wait()
        levels = {(r.level, r.message) for r in (await rt.logs.list(execution_id=ex.id)).items}
        assert levels == {(aj.LogLevel.INFO, "out"), (aj.LogLevel.ERROR, "disk full")}
        with pytest.raises(ValueError, match="no shell"):
            await rt.command("rm -rf /")  # type: ignore[arg-type]
        missing = await rt.command(["/no/such/program"])
        ex = await outcome(missing)
        assert ex.status == S.FAILED


@pytest.mark.parametrize(("task", "args", "status", "error"), [
    ("invalid_json", [], S.COMPLETED, None),
    ("huge_line", [50], S.FAILED, "max_line_bytes"),
    ("flood", [1_000_000], S.FAILED, "max_log_lines"),
    ("exit_quietly", [0], S.COMPLETED, None),
    ("exit_quietly", [3], S.FAILED, "exited with code 3"),
    ("segfault", [], S.FAILED, "killed by SIGSEGV"),
    ("boom", [], S.FAILED, "'nope'"),
    ("not_json", [], S.FAILED, "set is not JSON"),
])  # fmt: skip
async def test_bad_children_end_in_a_defined_state_and_harm_nothing(
    task: str, args: list[object], status: S, error: str | None
) -> None:
    async with runtime("memory://") as rt:
        bad = await rt.once(getattr(tasks, task), *args)
        beside = await rt.once("beside")
        ex = await outcome(bad, timeout=60)
        assert ex.status == status, ex.error
        if error is None:
            assert ex.error is None
        else:
            assert ex.error is not None and error in ex.error.message, ex.error
        assert await beside.result(timeout=10) == "fine"
        with anyio.fail_after(5):  # the slot is freed just after the outcome is written
            while rt.statistics().running:
                await anyio.sleep(0.01)
    assert await zombie_children() == []


async def test_a_command_that_closes_stdout_and_lingers_is_stopped(anyio_backend: object) -> None:
    if anyio_backend == ("asyncio", {"use_uvloop": True}):
        pytest.skip("uvloop reports a child's stdout closed only when the child exits")
    async with runtime("memory://") as rt:
        job = await rt.command(["sh", "-c", "exec >&-; sleep 600"])
        with pytest.raises(aj.ExecutionFailed, match="closed its stdout but kept running"):
            await job.result(timeout=30)


async def test_cancel_runs_the_ladder_and_leaves_no_orphan(tmp_path: Path) -> None:
    marker = f"asyncjobs-test-marker-{os.getpid()}-{tmp_path.name}"
    async with runtime("memory://") as rt:
        job = await rt.once(tasks.with_grandchild, marker)
        with anyio.fail_after(20):
            while len(await processes_with(f"{marker}-grandchild")) < 1:
                await anyio.sleep(0.05)
        (ex,) = await job.executions()
        cancelled = await rt.executions.cancel(ex.id)
        assert cancelled.status == S.CANCELLED
        stubborn = await rt.once(tasks.stubborn)
        with anyio.fail_after(20):
            while (await stubborn.executions())[0].status != S.RUNNING:
                await anyio.sleep(0.05)
        (ex,) = await stubborn.executions()
        assert (await rt.executions.cancel(ex.id)).status == S.CANCELLED
    with anyio.fail_after(5):
        while await processes_with(f"{marker}-grandchild"):
            await anyio.sleep(0.05)
    assert await zombie_children() == []


async def test_a_timeout_kills_the_child_and_fails_with_execution_timeout() -> None:
    async with runtime("memory://") as rt:
        job = await rt.once(tasks.sleepy, 60, timeout=0.5)
        with pytest.raises(aj.ExecutionTimeout, match=r"timeout of 0\.5s"):
            await job.result(timeout=30)


async def test_process_workers_bound_the_children_running_at_once() -> None:
    async with runtime("memory://", process_workers=2) as rt:
        jobs = [await rt.once(tasks.sleepy, 0.5) for _ in range(4)]
        peak = 0
        with anyio.fail_after(30):
            while await rt.jobs.count(status="finished") < len(jobs):
                children = len(await processes_with("asyncjobs_runner"))
                peak = max(peak, children)
                await anyio.sleep(0.02)
    assert 1 <= peak <= 2


def test_the_child_imports_no_heavy_module_for_a_sync_task() -> None:
    import subprocess

    code = (
        "import sys, json, os\n"
        "sys.argv = ['asyncjobs', 'run', 'tests.process.tasks:env_report']\n"
        "from asyncjobs._cli import main\n"
        "import asyncjobs_runner._child as c\n"
        "import tests.process.tasks\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stderr  # fmt: skip
    loaded = set(__import__("json").loads(out))
    assert not loaded & {"asyncio", "anyio", "aiosqlite", "asyncpg", "croniter", "orjson"}


async def test_children_and_grandchildren_die_with_a_sigkilled_worker(tmp_path: Path) -> None:
    import signal

    marker = f"asyncjobs-orphan-marker-{os.getpid()}-{tmp_path.name}"
    root = ROOT
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "runner")])}
    worker = await anyio.open_process(
        [
            sys.executable,
            "-m",
            "tests.process.orphan_child",
            f"sqlite:///{tmp_path}/o.db",
            marker,
            "task",
        ],
        cwd=root,
        env=env,
        stdin=None,
        stdout=None,
        stderr=None,
    )
    try:
        with anyio.fail_after(30):
            while not await processes_with(f"{marker}-grandchild"):
                await anyio.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        await worker.wait()
    # The runner notices its stdin closing and takes its whole process group down.
    with anyio.fail_after(5):
        while await processes_with(f"{marker}-grandchild"):
            await anyio.sleep(0.05)


async def test_too_large_shared_data_fails_before_spawning_with_a_clear_error() -> None:
    async with runtime("memory://") as rt:
        job = await rt.once(tasks.env_report, shared={"blob": "x" * 200_000})
        with pytest.raises(aj.ExecutionFailed, match=r"JOB_SHARED.* bytes, more than exec accepts"):
            await job.result(timeout=30)


async def test_a_restarted_worker_kills_the_command_its_dead_predecessor_left(
    tmp_path: Path,
) -> None:
    import signal

    marker = f"asyncjobs-leftover-marker-{os.getpid()}-{tmp_path.name}"
    url = f"sqlite:///{tmp_path}/left.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "runner")])}
    worker = await anyio.open_process(
        [sys.executable, "-m", "tests.process.orphan_child", url, marker, "command"],
        cwd=ROOT,
        env=env,
        stdin=None,
        stdout=None,
        stderr=None,
    )
    try:
        with anyio.fail_after(30):
            while not await processes_with(f"{marker}-grandchild"):
                await anyio.sleep(0.05)
            async with aj.Runtime(url, workers=0, system_jobs=False) as observer:
                # The child is recorded once it runs.
                while not await observer.store.node_children(
                    (await observer.executions.list(status="running")).items[0].node or ""
                ):
                    await anyio.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        await worker.wait()
    leftover = set(await processes_with(f"{marker}-grandchild"))
    assert leftover  # the command outlived its worker
    async with aj.Runtime(url, workers=1, system_jobs=False) as rt:
        with anyio.fail_after(10):
            while leftover & set(await processes_with(f"{marker}-grandchild")):
                await anyio.sleep(0.05)
        (ex,) = (await rt.executions.list()).items
        await rt.jobs.stop(ex.job_id)  # it was re-queued (at-least-once) and may run again


async def ready_pid(ready: Path) -> int:
    with anyio.fail_after(20):
        while not await anyio.Path(ready).exists():
            await anyio.sleep(0.05)
    return int(await anyio.Path(ready).read_text())


async def started_at(pid: int) -> str | None:
    """When ``pid`` started, or None once it is gone (reaped, not a zombie)."""
    return await anyio.to_thread.run_sync(process_started, pid)


def execution_tasks() -> list[asyncio.Task[Any]]:
    return [
        t
        for t in asyncio.all_tasks()
        if t.get_name().startswith("asyncjobs execution ") and not t.done()
    ]


# A ladder longer than the 10 s a stop used to wait for it, whatever its limits.
DEAF = aj.ProcessLimits(kill_grace=0.5, term_grace=10)


@pytest.mark.slow  # the ladder's 10.5 s, which is the point
@pytest.mark.parametrize("anyio_backend", [("asyncio", {"use_uvloop": False})])
async def test_stop_waits_out_the_ladder_of_a_child_that_ignores_cancel_and_sigterm(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/stop.db"
    ready = tmp_path / "ready"
    rt = runtime(url, process_limits=DEAF, shutdown_timeout=0.1)
    pid: int | None = None
    await rt.start()
    try:
        job = await rt.once(tasks.deaf, str(ready))
        pid = await ready_pid(ready)
        started = await started_at(pid)
        begun = anyio.current_time()
        await rt.stop()
        took = anyio.current_time() - begun
    finally:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # without the fix it is still there
        with anyio.CancelScope(shield=True):
            await rt.stop()
    # The ladder ran to its SIGKILL, and no longer than its graces (plus the drain).
    assert await started_at(pid) != started  # gone: neither alive nor a zombie
    assert took < 0.1 + DEAF.kill_grace + DEAF.term_grace + 3
    assert execution_tasks() == []
    async with aj.Runtime(url, workers=0, system_jobs=False) as observer:
        assert await observer.executions.count(status="running") == 0
        (ex,) = (await observer.executions.list(job_id=job.id)).items
        # Released as any execution a stop cuts short: the same attempt runs again.
        assert ex.status in (S.QUEUED, S.RETRYING) and ex.attempt == 1


async def test_a_native_cancel_that_cuts_the_ladder_short_still_kills_the_child(
    tmp_path: Path,
) -> None:
    ready = tmp_path / "ready"
    async with runtime("memory://", process_limits=DEAF) as rt:
        job = await rt.once(tasks.deaf, str(ready))
        pid = await ready_pid(ready)
        started = await started_at(pid)
        (ex,) = await job.executions()
        (task,) = execution_tasks()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(rt.executions.cancel, ex.id)  # the ladder begins, shielded
                with anyio.fail_after(10):
                    while not await anyio.Path(f"{ready}.cancel").exists():
                        await anyio.sleep(0.05)
                # What a stop does to an execution that outlives it: a native cancel, which
                # no anyio shield holds back.
                task.cancel()
                with anyio.fail_after(5):
                    await asyncio.wait({task})
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # without the fix it is still there
        assert await started_at(pid) != started  # gone: neither alive nor a zombie
    assert await zombie_children() == []
