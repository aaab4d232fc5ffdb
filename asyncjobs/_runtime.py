"""The Runtime facade: configuration, the task registry, and the job API.

This module imports only the standard library and asyncjobs' stdlib-only modules: a process
child imports the user's task module, which builds a ``Runtime``, and must not pay for
anyio, aiosqlite or asyncio. The engine and the store drivers are imported by :meth:`start`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Self, TypeVar, overload

from ._clock import Clock, SystemClock
from ._context import Context  # noqa: TC001 (resolved at run time to inject the context)
from ._errors import InvalidStoreURL
from ._handles import Job
from ._models import Event, StateChanged
from ._queries import CategoriesAPI, ExecutionsAPI, JobsAPI, LogsAPI
from ._schedules import Cron, Daemon, Every, Once, Schedule
from ._states import TERMINAL
from ._tasks import Command, ProcessLimits, Registry, TaskDef, make_task
from ._types import MAX_SECONDS, check_int, duration
from .stores import DEFAULT_URL, check_url

if TYPE_CHECKING:
    import asyncio
    from datetime import datetime

    import anyio
    from starlette.applications import Starlette

    from ._backoff import Backoff
    from ._engine import Engine
    from ._engine.changes import Changes
    from ._models import Job as JobRecord
    from ._types import JSON
    from .stores.base import NewExecution, NewJob, Store

F = TypeVar("F", bound=Callable[..., Any])
RETENTION_TASK = "asyncjobs.retention"
HEALTH_TASK = "asyncjobs.health"


@dataclass(frozen=True, slots=True, kw_only=True)
class Statistics:
    """A snapshot of a runtime's pool (``rt.statistics()``)."""

    node: str | None
    workers: int
    running: int
    completed: int
    failed: int


class Runtime:
    """An asyncjobs runtime: register tasks, schedule jobs, and run them.

    :param store: a store URL (``memory://``, ``sqlite:///path.db``), a store object, or
        ``None`` for ``$ASYNCJOBS_STORE``, else ``sqlite:///asyncjobs.db``
    :param workers: how many coroutine executions run at once (default ``4 x CPUs``);
        ``0`` makes a runtime that only enqueues and queries (it starts following other
        processes' changes only when something first waits for one, which keeps the cost
        of that off its enqueues until then)
    :param process_workers: how many process executions run at once (default: CPUs)
    :param shutdown_timeout: seconds that running executions get to finish when the
        runtime stops, before they are cancelled and put back in the queue
    :param poll_interval: seconds between looks for work that other processes added
    :param heartbeat_interval: seconds between this node's heartbeats
    :param node_timeout: seconds without a heartbeat after which a node is taken for dead
        and its running executions are recovered
    :param progress_interval: seconds between progress writes of one execution (the latest
        value wins; the final value is always written)
    :param on_complete: ``hook(execution, result)`` after any execution completes
    :param on_terminate: ``hook(execution, error) -> error | None`` when any execution ends;
        return ``None`` to record success, or an exception to record as its error
    :param on_state_change: ``hook(execution, status)`` after each status this node records
    :param clock: where the scheduler reads the time (:class:`ManualClock` in tests)
    :param system_jobs: schedule the built-in retention cleanup and health check jobs
        (once per store, category ``system``; they can be paused like any job)
    :param retention: how long ended executions and their logs are kept (default 90 days;
        at most 100 years; ``None`` keeps them for good)
    :param log_retention: how long log lines are kept (default: ``retention``)
    :param health_interval: seconds between health checks, which recover the executions of
        nodes that died
    :param process_limits: bounds on process children's output and their cancel grace
        periods (:class:`ProcessLimits`)
    """

    def __init__(
        self,
        store: str | Store | None = None,
        *,
        workers: int | None = None,
        process_workers: int | None = None,
        shutdown_timeout: float | timedelta = 30.0,
        poll_interval: float | timedelta = 0.5,
        heartbeat_interval: float | timedelta = 5.0,
        node_timeout: float | timedelta = 30.0,
        progress_interval: float | timedelta = 0.25,
        on_complete: Callable[..., Any] | None = None,
        on_terminate: Callable[..., Any] | None = None,
        on_state_change: Callable[..., Any] | None = None,
        clock: Clock | None = None,
        system_jobs: bool = True,
        retention: float | timedelta | None = timedelta(days=90),
        log_retention: float | timedelta | None = None,
        health_interval: float | timedelta = 300.0,
        process_limits: ProcessLimits | None = None,
    ) -> None:
        if store is None:
            store = os.environ.get("ASYNCJOBS_STORE") or DEFAULT_URL
        self._store_spec: str | Store = _store_spec(store)
        cpus = os.cpu_count() or 1
        self._workers = check_int("workers", 4 * cpus if workers is None else workers, minimum=0)
        self._process_workers = check_int(
            "process_workers", cpus if process_workers is None else process_workers, minimum=0
        )
        self._shutdown_timeout = duration(shutdown_timeout, name="shutdown_timeout")
        self._poll_interval = duration(poll_interval, name="poll_interval", allow_zero=False)
        self._heartbeat_interval = duration(
            heartbeat_interval, name="heartbeat_interval", allow_zero=False
        )
        self._node_timeout = duration(node_timeout, name="node_timeout", allow_zero=False)
        if self._node_timeout <= self._heartbeat_interval:
            raise ValueError(
                f"node_timeout ({self._node_timeout:g}s) must be longer than "
                f"heartbeat_interval ({self._heartbeat_interval:g}s)"
            )
        self._progress_interval = duration(progress_interval, name="progress_interval")
        self._hooks: dict[str, Callable[..., Any]] = {}
        for name, hook in (
            ("on_complete", on_complete),
            ("on_terminate", on_terminate),
            ("on_state_change", on_state_change),
        ):
            if hook is not None:
                if not callable(hook):
                    raise ValueError(f"{name} must be a function, got {hook!r}")
                self._hooks[name] = hook
        self._registry = Registry()
        if process_limits is not None and not isinstance(process_limits, ProcessLimits):
            raise ValueError(f"process_limits must be an aj.ProcessLimits, got {process_limits!r}")
        self._process_limits = process_limits or ProcessLimits()
        if clock is not None and not (
            callable(getattr(clock, "time", None)) and callable(getattr(clock, "sleep_until", None))
        ):
            raise ValueError(
                "clock must be an aj.Clock (with time() and sleep_until(), like aj.ManualClock), "
                f"got {clock!r}"
            )
        self._clock: Clock = clock if clock is not None else SystemClock()
        if not isinstance(system_jobs, bool):
            raise ValueError(f"system_jobs must be True or False, got {system_jobs!r}")
        self._system_jobs = system_jobs
        # Keeping for good is keeping for the longest duration accepted: the cleanup job still
        # runs (and log_retention may still be shorter), but never finds anything that old.
        try:
            self._retention = (
                MAX_SECONDS
                if retention is None
                else duration(retention, name="retention", allow_zero=False)
            )
        except ValueError:
            raise ValueError(
                "retention must be seconds > 0 (at most 100 years), a timedelta, or None to "
                f"keep ended executions for good, got {retention!r}"
            ) from None
        self._log_retention = (
            self._retention
            if log_retention is None
            else duration(log_retention, name="log_retention", allow_zero=False)
        )
        self._health_interval = duration(health_interval, name="health_interval", allow_zero=False)
        self._registry.add(make_task(self._retention_task, name=RETENTION_TASK, category="system"))
        self._registry.add(make_task(self._health_task, name=HEALTH_TASK, category="system"))
        self._store: Store | None = None
        self._engine: Engine | None = None
        self._changes: Changes | None = None
        self._host: asyncio.Task[None] | None = None
        self._stop_requested: asyncio.Event | None = None
        self._stopping = False
        self.jobs = JobsAPI(self)
        self.executions = ExecutionsAPI(self)
        self.logs = LogsAPI(self)
        self.categories = CategoriesAPI(self)

    # -- tasks ---------------------------------------------------------------------------

    @overload
    def task(self, fn: F, /) -> F: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        mode: str = "coroutine",
        timeout: float | timedelta | None = None,
        retries: int = 0,
        backoff: Backoff | float | timedelta | Callable[[int], float | timedelta] | None = None,
        priority: int = 0,
        category: str = "default",
        on_worker_lost: str = "retry",
        crash_limit: int = 3,
        concurrency: int | None = None,
        on_complete: Callable[..., Any] | None = None,
        on_terminate: Callable[..., Any] | None = None,
        on_state_change: Callable[..., Any] | None = None,
    ) -> Callable[[F], F]: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        mode: str = "coroutine",
        timeout: float | timedelta | None = None,
        retries: int = 0,
        backoff: Backoff | float | timedelta | Callable[[int], float | timedelta] | None = None,
        priority: int = 0,
        category: str = "default",
        on_worker_lost: str = "retry",
        crash_limit: int = 3,
        concurrency: int | None = None,
        on_complete: Callable[..., Any] | None = None,
        on_terminate: Callable[..., Any] | None = None,
        on_state_change: Callable[..., Any] | None = None,
    ) -> Any:
        """Register a function (async or sync) as a task; use bare or with options.

        The function is returned unchanged, so it can still be called directly. Its name
        defaults to ``module:qualname``. ``timeout`` is in seconds, ``priority`` lower runs
        first, ``on_worker_lost`` is ``"retry"`` (at most ``crash_limit`` times) or ``"fail"``.
        ``concurrency`` caps how many executions of the task run at once across every node
        sharing the store (``None``: no cap).

        :raises ValueError: naming the option, if one is invalid
        """
        options: dict[str, Any] = {
            "name": name,
            "mode": mode,
            "timeout": timeout,
            "retries": retries,
            "backoff": backoff,
            "priority": priority,
            "category": category,
            "on_worker_lost": on_worker_lost,
            "crash_limit": crash_limit,
            "concurrency": concurrency,
            "on_complete": on_complete,
            "on_terminate": on_terminate,
            "on_state_change": on_state_change,
        }

        def register(function: F) -> F:
            self._registry.add(make_task(function, **options))
            return function

        return register if fn is None else register(fn)

    def get_task(self, name: str) -> TaskDef:
        """Return the registered task named ``name``.

        :raises UnknownTask: naming it
        """
        return self._registry.get(name)

    # -- jobs ----------------------------------------------------------------------------

    def job(
        self,
        name: str | None = None,
        *,
        schedule: Schedule | None = None,
        category: str | None = None,
        priority: int | None = None,
        shared: Mapping[str, object] | None = None,
        key: str | None = None,
    ) -> Job:
        """Start building a job: add steps with :meth:`Job.add`, then ``await job.push()``.

        Every firing of the schedule creates one execution per step; the steps of a firing
        are queued together and may run at the same time.
        """
        return Job(
            self,
            name=name,
            schedule=schedule,
            category=category,
            priority=priority,
            shared=shared,
            key=key,
        )

    async def cron(
        self,
        expr: str,
        task: Callable[..., Any] | str,
        /,
        *args: object,
        tz: str = "UTC",
        misfire: str = "skip",
        overlap: str = "skip",
        max_catchup: int = 100,
        **options: Any,
    ) -> Job:
        """Run ``task(*args)`` on a cron expression evaluated in the time zone ``tz``.

        See :class:`Cron` for ``misfire`` and ``overlap``; other options as for :meth:`once`.

        :raises InvalidSchedule: quoting the expression or the zone, if either is invalid
        """
        schedule = Cron(
            expr,
            tz=tz,
            misfire=misfire,  # type: ignore[arg-type]
            overlap=overlap,  # type: ignore[arg-type]
            max_catchup=max_catchup,
        )
        return await self._schedule(schedule, task, args, options)

    async def every(
        self,
        interval: float | timedelta,
        task: Callable[..., Any] | str,
        /,
        *args: object,
        misfire: str = "skip",
        overlap: str = "skip",
        max_catchup: int = 100,
        **options: Any,
    ) -> Job:
        """Run ``task(*args)`` every ``interval`` (seconds or a timedelta), first one interval
        from now; fire times do not drift with run times. Options as for :meth:`cron`.
        """
        schedule = Every(
            interval,
            misfire=misfire,  # type: ignore[arg-type]
            overlap=overlap,  # type: ignore[arg-type]
            max_catchup=max_catchup,
        )
        return await self._schedule(schedule, task, args, options)

    async def daemon(
        self,
        task: Callable[..., Any] | str,
        /,
        *args: object,
        restart: str = "always",
        backoff: Backoff | float | timedelta | None = None,
        max_restarts: int | None = None,
        **options: Any,
    ) -> Job:
        """Start ``task(*args)`` now and restart it whenever it ends, like a supervisor.

        ``restart`` is ``"always"``, ``"on_failure"`` or ``"never"``; quick consecutive
        restarts wait per ``backoff`` (default exponential from 1 s, capped at 60 s).
        ``rt.jobs.stop(job.id)`` ends it for good; ``pause``/``resume`` stop and restart it.
        """
        schedule = Daemon(
            restart=restart,  # type: ignore[arg-type]
            backoff=backoff,
            max_restarts=max_restarts,
        )
        return await self._schedule(schedule, task, args, options)

    async def _schedule(
        self,
        schedule: Schedule,
        task: Callable[..., Any] | str,
        args: tuple[object, ...],
        options: dict[str, Any],
    ) -> Job:
        method = type(schedule).__name__.lower()  # cron, every, daemon: the caller's name
        _check_options(method, options, _JOB_OPTIONS.union(_STEP_OPTIONS))
        step_options = {key: options.pop(key) for key in _STEP_OPTIONS if key in options}
        job = self.job(schedule=schedule, **options)
        job.add(task, *args, **step_options)
        return await job.push()

    async def command(
        self,
        argv: list[str] | tuple[str, ...],
        /,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | timedelta | None = None,
        **options: Any,
    ) -> Job:
        """Run an executable once as a process execution (never through a shell).

        It gets the ``JOB_*`` environment plus ``env``; exit 0 completes, anything else fails
        with the exit code (or signal) and the end of its stderr. Options as for :meth:`once`
        (``at``, ``after``, ``retries``, ``priority``, ``key``...).
        """
        _check_options(
            "command", options, _JOB_OPTIONS.union(("at", "after", "tz", "retries", "backoff"))
        )
        schedule = Once(
            at=options.pop("at", None),
            after=options.pop("after", None),
            tz=options.pop("tz", "UTC"),
        )
        step_options = {k: options.pop(k) for k in ("retries", "backoff") if k in options}
        job = self.job(schedule=schedule, **options)
        job.add(Command(argv, env=env, cwd=cwd, timeout=timeout), **step_options)
        return await job.push()

    async def once(
        self,
        task: Callable[..., Any] | str,
        /,
        *args: object,
        kwargs: Mapping[str, object] | None = None,
        at: datetime | None = None,
        after: float | timedelta | None = None,
        tz: str = "UTC",
        name: str | None = None,
        category: str | None = None,
        priority: int | None = None,
        shared: Mapping[str, object] | None = None,
        key: str | None = None,
        mode: str | None = None,
        timeout: float | timedelta | None = None,
        retries: int | None = None,
        backoff: Backoff | float | timedelta | None = None,
    ) -> Job:
        """Run ``task(*args, **kwargs)`` once: now, ``at`` a time, or ``after`` seconds.

        A naive ``at`` is a wall-clock time in ``tz`` (default UTC); a time in the past runs
        at once.

        Returns once the job is stored (it then survives a crash of this process). With
        ``key``, a live job with the same key is returned instead of a new one.

        :raises UnknownTask: if ``task`` is not registered
        :raises InvalidArguments: naming the parameter, if the arguments do not bind
        """
        now = at is None and after is None and tz == "UTC"
        job = self.job(
            name,
            # Once checks tz even without at=: a misspelt zone is refused, not ignored.
            schedule=_NOW if now else Once(at=at, after=after, tz=tz),
            category=category,
            priority=priority,
            shared=shared,
            key=key,
        )
        job.add(
            task, *args, kwargs=kwargs, mode=mode, timeout=timeout, retries=retries, backoff=backoff
        )
        return await job.push()

    # -- lifetime ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Open the store and start running executions; works inside a running loop (Jupyter).

        :raises StoreError: if the store cannot be opened
        """
        import asyncio

        if self._host is not None:
            raise RuntimeError("this runtime is already started")
        loop = asyncio.get_running_loop()
        # No signal handler is installed here, on purpose: the loop may be Jupyter's, and
        # SIGINT/SIGTERM belong to whoever owns it (asyncjobs worker handles them itself).
        from ._display import register_ipython_formatters

        register_ipython_formatters()  # lists of logs as tables; only if IPython is running
        ready: asyncio.Future[None] = loop.create_future()
        self._stop_requested = asyncio.Event()
        self._stopping = False
        # The one task not owned by a task group, on purpose: the runtime must outlive the
        # task that starts it (a notebook starts it in one cell and stops it in another), and
        # a task group or cancel scope must be exited by the task that entered it.
        self._host = host = loop.create_task(self._serve(ready), name="asyncjobs runtime")
        try:
            await asyncio.shield(ready)
        except BaseException:
            if not ready.done():
                # The caller gave up while the runtime started: what started must not go on
                # running (its loops against a store about to close), nor stay half up.
                self._stopping = True
                self._stop_requested.set()
                await _outlast(host)
            self._host = None
            raise

    async def stop(self) -> None:
        """Stop gracefully: no new claims; running executions get ``shutdown_timeout`` to
        finish, then are cancelled and put back in the queue. A second call aborts at once."""
        import asyncio

        host = self._host
        if host is None:
            return
        if self._stopping and self._engine is not None:
            self._engine.abort()
        self._stopping = True
        assert self._stop_requested is not None
        self._stop_requested.set()
        try:
            await asyncio.shield(host)
        except asyncio.CancelledError:
            # The caller was cancelled (a cancel scope around ``async with rt`` ran out, say):
            # the runtime must not go on running after this returns. The drain is cut short
            # (running executions go back to the queue at once) and the stop waited for.
            if self._engine is not None:
                self._engine.abort()
            await _outlast(host)
            raise
        finally:
            if host.done():
                self._host = None

    async def _serve(self, ready: asyncio.Future[None]) -> None:
        from contextlib import AsyncExitStack

        from ._engine import Engine
        from ._engine.changes import Changes
        from .stores import open_store

        try:
            async with AsyncExitStack() as stack:
                spec = self._store_spec
                store = open_store(spec) if isinstance(spec, str) else spec
                self._store = await stack.enter_async_context(store)
                stack.callback(setattr, self, "_store", None)
                self._changes = Changes()
                engine = Engine(self, self._store, self._changes)
                await engine.start()
                self._engine = engine
                stack.callback(setattr, self, "_engine", None)
                if self._system_jobs:
                    await self._ensure_system_jobs()
                ready.set_result(None)
                assert self._stop_requested is not None
                await self._stop_requested.wait()
                await engine.stop(self._shutdown_timeout)
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
                return
            raise

    async def _ensure_system_jobs(self) -> None:
        """Schedule the built-in jobs once per store; replace them if reconfigured."""
        wanted: tuple[tuple[str, str, float, dict[str, JSON]], ...] = (
            (
                "retention cleanup",
                RETENTION_TASK,
                3600.0,
                {"retention": self._retention, "log_retention": self._log_retention},
            ),
            ("health check", HEALTH_TASK, self._health_interval, {}),
        )
        for name, task, interval, kwargs in wanted:
            key = f"asyncjobs:system:{task}"
            for _ in range(2):
                job = self.job(
                    name,
                    schedule=Every(interval, misfire="run_once"),
                    category="system",
                    key=key,
                ).add(task, kwargs=kwargs)
                await job.push()
                current = job.record
                if (
                    current.schedule.get("interval") == interval
                    and current.steps[0].kwargs == kwargs
                ):
                    break
                # Configured differently than this runtime asks: the newest settings win.
                await self.jobs.stop(current.id)

    async def _retention_task(
        self, ctx: Context, retention: float, log_retention: float
    ) -> dict[str, int]:
        now = self._clock.time()
        executions, logs = await self._require_store().purge(now - retention, now - log_retention)
        ctx.log.info(
            "deleted %d ended executions older than %s and %d log lines older than %s",
            executions,
            timedelta(seconds=retention),
            logs,
            timedelta(seconds=log_retention),
        )
        return {"executions": executions, "logs": logs}

    async def _health_task(self, ctx: Context) -> dict[str, int]:
        recovered = await self._engine.recover_dead_nodes() if self._engine else []
        if recovered:
            for execution in recovered:
                ctx.log.warning(
                    "execution %s of job %s had lost its worker: now %s",
                    execution.id,
                    execution.job_id,
                    execution.status.value,
                )
        else:
            ctx.log.info("no stalled executions")
        return {"recovered": len(recovered)}

    def configure(
        self,
        *,
        store: str | Store | None = None,
        workers: int | None = None,
        process_workers: int | None = None,
    ) -> None:
        """Override the store and pool sizes given to the constructor, before :meth:`start`.

        For whoever runs a runtime that someone else built: ``asyncjobs worker MODULE
        --store URL --workers N`` imports the module's runtime and calls this. ``None``
        keeps a setting as it is.

        :raises RuntimeError: if the runtime is started
        :raises InvalidStoreURL: if ``store`` names no known store
        :raises ValueError: naming the option, if a size is not an integer >= 0
        """
        if self._host is not None:
            raise RuntimeError("configure() is for a runtime that is not started yet")
        if store is not None:
            self._store_spec = check_url(store) if isinstance(store, str) else store
        if workers is not None:
            self._workers = check_int("workers", workers, minimum=0)
        if process_workers is not None:
            self._process_workers = check_int("process_workers", process_workers, minimum=0)

    def resize(self, workers: int) -> None:
        """Change how many coroutine executions run at once, while running."""
        self._workers = check_int("workers", workers, minimum=0)
        if self._engine is not None:
            self._engine.resize(self._workers)

    def statistics(self) -> Statistics:
        """Return a snapshot of the pool."""
        engine = self._engine
        return Statistics(
            node=engine.node.id if engine else None,
            workers=self._workers,
            running=engine.running if engine else 0,
            completed=engine.completed if engine else 0,
            failed=engine.failed if engine else 0,
        )

    @property
    def store(self) -> Store:
        """The open store.

        :raises RuntimeError: if the runtime is not started
        """
        return self._require_store()

    def asgi_app(
        self,
        *,
        token: str | None = None,
        allowed_hosts: Sequence[str] | None = None,
        cors_origins: Sequence[str] | None = None,
    ) -> Starlette:
        """Return this runtime's HTTP API as an ASGI app (needs ``asyncjobs[http]``).

        Served alone, the app's lifespan starts and stops the runtime; mounted in another
        app, that app starts it. See :func:`asyncjobs.http.asgi_app` for the options.

        :raises ValueError: naming the option, if one is invalid
        """
        from .http import asgi_app  # Starlette is imported only when an app is asked for

        return asgi_app(self, token=token, allowed_hosts=allowed_hosts, cors_origins=cors_origins)

    # -- events --------------------------------------------------------------------------

    async def events(
        self,
        *,
        job_id: str | None = None,
        execution_id: str | None = None,
        after: int | None = None,
    ) -> AsyncIterator[Event]:
        """Yield state, progress and log events live, as they are stored.

        Starts after event ``after`` (a ``seq``; default: now). A stream of one execution
        ends after its final state; other streams go on until the caller stops iterating.
        """
        from ._engine.changes import ANY

        if after is not None:
            check_int("after", after, minimum=0, maximum=2**63 - 1)  # an event's seq
        store = self._require_store()
        cursor = await store.last_seq() if after is None else after
        while True:
            armed = self._changes_arm(ANY)
            batch = await store.events_after(
                cursor,
                job_id=job_id,  # type: ignore[arg-type]
                execution_id=execution_id,  # type: ignore[arg-type]
                limit=500,
            )
            for event in batch:
                cursor = event.seq
                yield event
                if (
                    execution_id is not None
                    and isinstance(event, StateChanged)
                    and event.status in TERMINAL
                ):
                    return
            if len(batch) < 500:
                await self._changes_wait(armed)

    # -- for the handles and query objects ------------------------------------------------

    def _require_store(self) -> Store:
        if self._store is None:
            raise RuntimeError(
                "the runtime is not started: use 'async with rt:' or 'await rt.start()'"
            )
        return self._store

    async def _add_job(
        self, job: NewJob, executions: Sequence[NewExecution], *, due: float
    ) -> JobRecord:
        """Store a pushed job, through the engine when it runs (it may start it at once)."""
        if self._engine is not None:
            return await self._engine.add_job(job, executions, due=due)
        record, _ = await self._require_store().add_job(job, executions)
        return record

    def _work_added(self, due: float | None = None, *, schedule: bool = False) -> None:
        if self._engine is not None:
            self._engine.wake(due, schedule=schedule)

    def _notify(self, keys: set[str]) -> None:
        if self._changes is not None:
            self._changes.notify(keys)

    def _changes_arm(self, key: str) -> anyio.Event:
        """Arm a wait for changes of ``key`` (see :class:`Changes`): before reading."""
        if self._changes is None:
            raise RuntimeError("the runtime stopped")
        return self._changes.arm(key)

    async def _changes_wait(self, armed: anyio.Event) -> None:
        """Wait until ``armed`` is set, or for one poll interval; at once if the store did
        not tell this runtime of other processes' changes until now (the caller reads
        again)."""
        from ._engine.changes import Changes

        engine = self._engine
        if engine is not None and not engine.watching and await engine.watch_store():
            return
        await Changes.wait(armed, self._poll_interval)

    async def _cancel_local(self, execution_id: str) -> bool:
        return self._engine is not None and await self._engine.cancel_local(execution_id)


async def _outlast(host: asyncio.Task[None]) -> None:
    """Wait for the runtime's task to end, whatever cancels the caller meanwhile."""
    import asyncio

    import anyio

    with anyio.CancelScope(shield=True):
        await asyncio.wait({host})


_NOW = Once()  # frozen: one instance serves every rt.once(...) without at= or after=
_JOB_OPTIONS = frozenset({"name", "category", "priority", "shared", "key"})
_STEP_OPTIONS = ("kwargs", "mode", "timeout", "retries", "backoff")


def _check_options(method: str, options: Mapping[str, object], allowed: Collection[str]) -> None:
    """Refuse an option ``method`` does not take, naming the method (not the one it calls).

    :raises TypeError: naming the option and the ones ``method`` takes
    """
    for name in options:
        if name not in allowed:
            raise TypeError(
                f"Runtime.{method}() got an unexpected keyword argument {name!r}; "
                f"it takes {', '.join(sorted(allowed))}"
            )


def _store_spec(store: object) -> str | Store:
    """Return a checked store URL, or a store object as it is.

    :raises InvalidStoreURL: naming the value, if it is neither
    """
    if isinstance(store, str):
        return check_url(store)
    # Store is a Protocol that is not runtime-checkable: look for what a runtime uses first.
    if callable(getattr(store, "__aenter__", None)) and callable(getattr(store, "add_job", None)):
        return store  # type: ignore[return-value]
    raise InvalidStoreURL(
        "store must be a store URL like 'sqlite:///jobs.db' or 'memory://', or a store "
        f"object (asyncjobs.stores.Store), got {store!r}"
    )


Runtime.__module__ = "asyncjobs"
Statistics.__module__ = "asyncjobs"
