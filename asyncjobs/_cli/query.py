"""``asyncjobs jobs|executions|logs|enqueue|wait``: the query API from a shell.

Each command opens the store through a :class:`asyncjobs.Runtime` with no workers and no
system jobs: it runs nothing and reconfigures nothing, it reads and writes jobs the way an
application would, and the worker that serves the store does the rest.
"""

from __future__ import annotations

import json
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio

from asyncjobs import (
    ExecutionNotFound,
    ExecutionStatus,
    Job,
    JobNotFound,
    LogWritten,
    ProgressReported,
    Runtime,
    StateChanged,
)
from asyncjobs._runtime import HEALTH_TASK, RETENTION_TASK
from asyncjobs._states import TERMINAL, LogLevel

from . import CommandError, check_sqlite_path, store_url
from .render import LiveBars, dump, duration, log_line, outcome, paint, table, when

if TYPE_CHECKING:
    import argparse
    from collections.abc import AsyncIterator, Awaitable, Callable

    from asyncjobs import Execution, LogRecord

_out = sys.stdout


def _run(
    function: Callable[[Runtime, argparse.Namespace], Awaitable[int]],
) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        url = store_url(args)
        check_client_store(url, must_exist=function is not _enqueue)

        async def main() -> int:
            async with client(url) as rt:
                return await function(rt, args)

        return anyio.run(main)

    return command


def check_client_store(url: str, *, must_exist: bool = True) -> None:
    """Refuse a store that a command cannot share with a worker, before opening it.

    :raises CommandError: if the store lives only in one process (``memory://``), or is a
        SQLite file that does not exist (and ``must_exist``) or has no directory
    """
    if url.startswith("memory:"):
        raise CommandError(
            "memory:// lives inside one process and a command cannot reach it; "
            "use a store that the worker shares, like sqlite:///path.db"
        )
    # Before the store opens: an asked-for file that does not exist would be created empty.
    check_sqlite_path(url, must_exist=must_exist)


@asynccontextmanager
async def client(url: str) -> AsyncIterator[Runtime]:
    """Open the store at ``url`` as a runtime that runs nothing and reconfigures nothing."""
    rt = Runtime(url, workers=0, process_workers=0, system_jobs=False, poll_interval=0.1)
    async with rt:
        yield rt


# -- jobs ------------------------------------------------------------------------------


def _schedule(schedule: dict[str, Any]) -> str:
    kind = schedule.get("kind", "?")
    if kind == "cron":
        tz = schedule.get("tz", "UTC")
        return f"cron {schedule.get('expr')}" + ("" if tz == "UTC" else f" {tz}")
    if kind == "every":
        return f"every {schedule.get('interval'):g}s"
    return str(kind)


async def _jobs_list(rt: Runtime, args: argparse.Namespace) -> int:
    page = await rt.jobs.list(
        status=args.status,
        category=args.category,
        name=args.name,
        page=args.page,
        page_size=args.page_size,
    )
    if args.json:
        dump(page, _out)
        return 0
    rows = [
        [
            job.id,
            job.status.value,
            _schedule(job.record.schedule),
            job.category,
            when(job.record.next_fire_at),
            when(job.created_at),
            job.name,
        ]
        for job in page.items
    ]
    headers = ["ID", "STATUS", "SCHEDULE", "CATEGORY", "NEXT FIRE", "CREATED", "NAME"]
    table(headers, rows, _out, status_column=1)
    print(f"page {page.page} of {page.pages}, {page.total} jobs", file=_out)
    return 0


async def _jobs_get(rt: Runtime, args: argparse.Namespace) -> int:
    job = await rt.jobs.get(args.job_id)
    if args.json:
        dump(job, _out)
        return 0
    record = job.record
    fields = [
        ("id", job.id),
        ("name", job.name),
        ("status", paint(job.status.value, job.status.value, _colour())),
        ("schedule", _schedule(record.schedule)),
        ("category", job.category),
        ("priority", str(job.priority)),
        ("key", job.key or "-"),
        ("created", when(record.created_at)),
        ("last fire", when(record.last_fire_at)),
        ("next fire", when(record.next_fire_at)),
        ("shared", json.dumps(record.shared)),
    ]
    for index, step in enumerate(record.steps):
        what = " ".join(step.command) if step.command else f"{step.task}{_call(step)}"
        fields.append((f"step {index}", f"{what} ({step.mode})"))
    _fields(fields)
    recent = await rt.executions.list(job_id=job.id, page_size=10)
    if recent.items:
        print(f"\nlatest executions ({recent.total} in all):", file=_out)
        _executions_table(recent.items)
    return 0


def _call(step: Any) -> str:
    parts = [json.dumps(a) for a in step.args]
    parts += [f"{k}={json.dumps(v)}" for k, v in step.kwargs.items()]
    return f"({', '.join(parts)})"


async def _jobs_set(rt: Runtime, args: argparse.Namespace) -> int:
    action = getattr(rt.jobs, args.action)
    job: Job = await action(args.job_id)
    if args.json:
        dump(job, _out)
    else:
        print(f"job {job.id} ({job.name}): {job.status.value}", file=_out)
    return 0


# -- executions ------------------------------------------------------------------------


def _executions_table(items: tuple[Execution, ...]) -> None:
    rows = [
        [
            e.id,
            e.status.value,
            e.task,
            str(e.attempt),
            "100%" if e.status == ExecutionStatus.COMPLETED else f"{e.progress:.0f}%",
            when(e.started_at),
            duration(e.started_at, e.ended_at),
            outcome(e),
        ]
        for e in items
    ]
    headers = ["ID", "STATUS", "TASK", "ATTEMPT", "PROGRESS", "STARTED", "TOOK", "OUTCOME"]
    table(headers, rows, _out, status_column=1)


async def _executions_list(rt: Runtime, args: argparse.Namespace) -> int:
    page = await rt.executions.list(
        job_id=args.job,
        status=args.status,
        task=args.task,
        page=args.page,
        page_size=args.page_size,
    )
    if args.json:
        dump(page, _out)
        return 0
    _executions_table(page.items)
    print(f"page {page.page} of {page.pages}, {page.total} executions", file=_out)
    return 0


async def _executions_get(rt: Runtime, args: argparse.Namespace) -> int:
    execution = await rt.executions.get(args.execution_id)
    history = await rt.executions.history(execution.id)
    if args.json:
        from .render import jsonable

        dump({**jsonable(execution), "history": jsonable(history)}, _out)
        return 0
    e = execution
    fields = [
        ("id", e.id),
        ("job", e.job_id),
        ("task", f"{e.task}{_call(e)}"),
        ("status", paint(e.status.value, e.status.value, _colour())),
        ("attempt", str(e.attempt)),
        ("progress", f"{e.progress:g}%" + (f" {e.progress_message}" if e.progress_message else "")),
        ("scheduled", when(e.scheduled_for)),
        ("started", when(e.started_at)),
        ("ended", when(e.ended_at)),
        ("took", duration(e.started_at, e.ended_at)),
        ("node", f"{e.node or '-'} (pid {e.pid})" if e.pid else (e.node or "-")),
    ]
    if e.status == ExecutionStatus.COMPLETED:
        fields.append(("result", json.dumps(e.result)))
    if e.error is not None:
        fields.append(("error", f"{e.error.type}: {e.error.message}"))
    fields.append(("history", " -> ".join(t.status.value for t in history)))
    _fields(fields)
    if e.error is not None and e.error.traceback:
        print("\n" + e.error.traceback.rstrip(), file=_out)
    return 0


async def _executions_cancel(rt: Runtime, args: argparse.Namespace) -> int:
    execution = await rt.executions.cancel(args.execution_id)
    if args.json:
        dump(execution, _out)
    elif execution.status in TERMINAL:
        print(f"execution {execution.id}: {execution.status.value}", file=_out)
    else:
        print(
            f"execution {execution.id}: cancel requested; the node running it stops it "
            "within about a second",
            file=_out,
        )
    return 0


# -- logs ------------------------------------------------------------------------------


async def _logs(rt: Runtime, args: argparse.Namespace) -> int:
    level = None if args.level is None else LogLevel.parse(args.level)
    execution = await rt.executions.get(args.execution_id)
    if not args.follow:
        records: list[LogRecord] = []
        page_number = 1
        while True:
            page = await rt.logs.list(
                execution_id=execution.id, level=level, page=page_number, page_size=1000
            )
            records.extend(page.items)
            if page_number >= page.pages:
                break
            page_number += 1
        if args.json:
            dump(records, _out)
        else:
            for record in records:
                print(log_line(record, _out), file=_out)
        return 0
    # Logs are events: replay this execution's from the start, then go on live until it
    # ends. One cursor, so no line is printed twice or missed between the two.
    async for event in rt.events(execution_id=execution.id, after=0):
        if isinstance(event, LogWritten) and (level is None or event.level >= level):
            if args.json:
                dump(event, _out, line=True)
            else:
                print(log_line(event, _out), file=_out, flush=True)
    return 0


# -- enqueue ---------------------------------------------------------------------------


def _json_argument(text: str, option: str, expected: type) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{option} is not valid JSON ({exc.msg}): {text!r}") from None
    if not isinstance(value, expected):
        shape = "array like '[1, \"a\"]'" if expected is list else "object like '{\"n\": 1}'"
        raise CommandError(f"{option} must be a JSON {shape}, got {text!r}")
    return value


async def _enqueue(rt: Runtime, args: argparse.Namespace) -> int:
    if args.task in (RETENTION_TASK, HEALTH_TASK):
        raise CommandError(f"{args.task!r} is a system task: the runtime schedules it itself")
    positional = _json_argument(args.args, "--args", list)
    keywords = _json_argument(args.kwargs, "--kwargs", dict)
    if args.module:
        from .worker import load_runtime

        # The worker's own definitions: the arguments are checked now, and the step gets
        # the task's mode, target, retries and timeout.
        rt._registry = load_runtime(args.module)._registry
        rt.get_task(args.task)  # UnknownTask, naming the registered ones
    else:
        from asyncjobs._tasks import stand_in

        # Only the worker knows the task: it binds the arguments and applies its options.
        rt._registry.add(stand_in(args.task))
    job = await rt.once(
        args.task,
        *positional,
        kwargs=keywords,
        after=args.after,
        priority=args.priority,
        key=args.key,
        name=args.name,
        category=args.category,
    )
    executions = await job.executions()
    if args.json:
        dump({"job": job, "execution": executions[0] if executions else None}, _out)
        return 0
    ids = ", ".join(e.id for e in executions) or "(none yet)"
    print(f"enqueued job {job.id} ({job.name}); execution {ids}", file=_out)
    return 0


# -- wait ------------------------------------------------------------------------------


async def _wait(rt: Runtime, args: argparse.Namespace) -> int:
    bars = LiveBars(sys.stderr)
    try:
        execution = await rt.executions.get(args.target)
    except ExecutionNotFound:
        try:
            job = await rt.jobs.get(args.target)
        except JobNotFound:
            raise CommandError(f"no execution or job with id {args.target!r}") from None
        final = await _wait_job(rt, job, bars)
    else:
        final = await _wait_execution(rt, execution, bars)
    bars.close()
    if args.json:
        dump(final, _out)
    else:
        text = paint(final.status.value, final.status.value, _colour())
        print(f"execution {final.id} {text}: {outcome(final)}", file=_out)
    return 0 if final.status == ExecutionStatus.COMPLETED else 1


def _label(execution: Execution) -> str:
    return f"{execution.task} {execution.id[-8:]}"


def _add_bar(bars: LiveBars, execution: Execution) -> None:
    done = execution.status == ExecutionStatus.COMPLETED
    bars.add(
        execution.id,
        _label(execution),
        status=execution.status.value,
        progress=100.0 if done else execution.progress,
    )


async def _wait_execution(rt: Runtime, execution: Execution, bars: LiveBars) -> Execution:
    if execution.status in TERMINAL:
        _add_bar(bars, execution)
    else:
        # Drawn by the replay of its events from the first one: it fast-forwards to now.
        bars.add(execution.id, _label(execution))
        # From the first event on: one cursor, so the end cannot slip between a read of
        # the status and the start of the stream.
        async for event in rt.events(execution_id=execution.id, after=0):
            _show(bars, event)
    return await rt.executions.get(execution.id)


async def _wait_job(rt: Runtime, job: Job, bars: LiveBars) -> Execution:
    async with anyio.create_task_group() as tg:

        async def show() -> None:
            for execution in await job.executions():
                _add_bar(bars, execution)
            async for event in rt.events(job_id=job.id):
                if event.execution_id not in bars:
                    _add_bar(bars, await rt.executions.get(event.execution_id))
                _show(bars, event)

        tg.start_soon(show)
        final = await job.wait()
        tg.cancel_scope.cancel()
    for execution in await job.executions():
        done = execution.status == ExecutionStatus.COMPLETED
        bars.update(
            execution.id,
            status=execution.status.value,
            progress=100.0 if done else execution.progress,
        )
    return final


def _show(bars: LiveBars, event: object) -> None:
    if isinstance(event, ProgressReported):
        bars.update(event.execution_id, progress=event.progress, message=event.message)
    elif isinstance(event, StateChanged):
        bars.update(event.execution_id, status=event.status.value)


# -- helpers ---------------------------------------------------------------------------


def _colour() -> bool:
    from .render import colour_enabled

    return colour_enabled(_out)


def _fields(fields: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        print(f"{name + ':':<{width + 1}} {value}", file=_out)


jobs_list = _run(_jobs_list)
jobs_get = _run(_jobs_get)
jobs_set = _run(_jobs_set)
executions_list = _run(_executions_list)
executions_get = _run(_executions_get)
executions_cancel = _run(_executions_cancel)
logs = _run(_logs)
enqueue = _run(_enqueue)
wait = _run(_wait)
