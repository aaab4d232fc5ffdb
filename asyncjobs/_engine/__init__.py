"""The running machinery of a runtime, imported by :meth:`Runtime.start` and never before.

Three loops run in one task group, each a named task that says when it is ready:

* the **writer** (:mod:`.writer`) group-commits what executions report;
* the **dispatcher** claims due executions from the store as pool slots free up and starts
  one task per claim; it never holds more executions than it has free slots, so 100,000
  queued executions stay in the store, not in memory. An execution's task is a plain asyncio
  task, not one of the task group's: it gets its own copy of the context (what one job sets
  in a context variable does not leak into the next), and costs half of what the task
  group's ``start_soon`` does, which decides the in-memory throughput. The engine keeps
  them in ``_running`` and cancels what is left of them when it stops. A job this runtime
  pushes while it has free slots is claimed in the push's own transaction
  (:meth:`Engine.add_job`); slots promised to claims in flight count as taken. While work
  is queued, the write that ends executions claims their successors in its own transaction
  (:meth:`Engine._write`): the slots pass on with no claim transaction between;
* the **maintenance** loop heartbeats this node, picks up cancel requests made elsewhere, and
  recovers the executions of nodes that died.

They talk to each other only through the store and wake-ups, so several runtimes (or
processes) on one store stay correct.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import math
import os
import socket
import sys
import time
import traceback
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import anyio

from asyncjobs_runner._convert import to_json

from .._backoff import DEFAULT_BACKOFF, Backoff
from .._context import CaptureHandler, Context, current_context
from .._errors import InvalidArguments, StoreError, UnknownTask
from .._models import ErrorInfo, Execution
from .._schedules import Daemon, schedule_from_json
from .._states import ExecutionStatus, LogLevel
from .._tasks import resolve_step
from .._types import new_id
from ..stores.base import EVERYTHING, SCHEDULE, WORK, Claim, Finish, JobUpdate, NodeInfo
from .changes import Changes, Wakeup
from .process import kill_leftover, run_child
from .scheduler import Scheduler
from .writer import Writer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from anyio.abc import TaskGroup, TaskStatus

    from .._models import Job
    from .._runtime import Runtime
    from .._tasks import TaskDef
    from ..stores.base import NewExecution, NewJob, Store, WriteBatch

logger = logging.getLogger("asyncjobs.engine")

_S = ExecutionStatus
MAX_CLAIM_BATCH = 256
CLAIM_WAIT = 10.0  # seconds a claim may finish after its caller was cancelled
CancelReason = Literal["cancel", "shutdown"]
_UNSTORABLE = "UnstorableOutcome"


@dataclass(slots=True)
class _Running:
    claim: Claim
    scope: anyio.CancelScope
    """Cancelled by a cancel or a stop (which set ``reason`` first) or by the timeout (its
    deadline, ``reason`` left None)."""
    reason: CancelReason | None = None
    task: asyncio.Task[None] | None = None


class Engine:
    """Runs a runtime's executions on one store, as one node."""

    def __init__(self, runtime: Runtime, store: Store, changes: Changes) -> None:
        self._rt = runtime
        self._store = store
        self._changes = changes
        now = time.time()
        self.node = NodeInfo(
            id=new_id(),
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=now,
            heartbeat_at=now,
        )
        self._workers = runtime._workers
        self._clock = runtime._clock
        # By (execution id, run): a run can start (a retry due at once, claimed by the write
        # that ends the run before it) while the one before finishes its bookkeeping.
        self._running: dict[tuple[str, int], _Running] = {}
        self._claiming = 0  # slots promised to claims in flight (the dispatcher's, a push's)
        self._slot_freed = Wakeup()
        self._work_added = Wakeup()
        self._work_generation = 0  # +1 whenever work may have been added
        self._drained_at: int | None = None  # the generation a claim last came back short at
        self._looking: anyio.Event | None = None  # set when the dispatcher's look ends
        self._stopping = False
        self._releasing = False
        self._dispatch_scope = anyio.CancelScope()
        self._drain_scope = anyio.CancelScope()
        # An execution's scope is made by the running backend's own class, found once here:
        # anyio.CancelScope() looks the backend up at every call, about half of a scope's cost.
        self._new_scope: Callable[[], anyio.CancelScope] = type(self._dispatch_scope)
        self._aborted = False
        self._next_due: float | None = None
        self._last_poll = -math.inf
        self._schedule_changed = Wakeup()
        self._watched: anyio.Event | None = None  # set once the store watch runs
        self.scheduler = Scheduler(store, runtime._clock)
        self._process_slots = anyio.CapacityLimiter(max(1, runtime._process_workers))
        self._tg: TaskGroup | None = None
        self._stack = AsyncExitStack()
        self.writer = Writer(
            changes,
            write=self._write,
            progress_interval=runtime._progress_interval,
            clock=runtime._clock,
        )
        self.completed = 0
        self.failed = 0

    # -- lifetime ------------------------------------------------------------------------

    async def start(self) -> None:
        """Register the node, recover dead nodes' work, and start the loops."""
        # Importing croniter calls platform.architecture(), which runs `file` in a subprocess:
        # do it in a thread now rather than in the loop at the first rt.cron() or cron tick.
        await anyio.to_thread.run_sync(importlib.import_module, "croniter")
        await self._store.register_node(self.node)
        if self._workers > 0:
            await self.watch_store()
        await self.recover_dead_nodes()
        handler = CaptureHandler()
        logging.getLogger().addHandler(handler)
        self._stack.callback(logging.getLogger().removeHandler, handler)
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        await self._tg.start(self.writer.run, name="asyncjobs writer")
        await self._tg.start(self._maintenance_loop, name="asyncjobs maintenance")
        await self._tg.start(self._schedule_loop, name="asyncjobs scheduler")
        # Started even with no workers: it claims nothing until rt.resize() gives it slots.
        await self._tg.start(self._dispatch_loop, name="asyncjobs dispatcher")

    async def stop(self, timeout: float) -> None:
        """Stop claiming, let running executions finish for ``timeout`` seconds, then release
        the rest back to the queue (without using up an attempt) and close."""
        self._stopping = True
        self._dispatch_scope.cancel()
        for running in self._running.values():
            if running.claim.schedule.get("kind") == "daemon":
                # A daemon never finishes by itself: waiting for it only delays the stop.
                running.reason = "shutdown"
                running.scope.cancel()
        with anyio.move_on_after(0 if self._aborted else timeout) as self._drain_scope:
            while self._running or self._claiming:  # a push's claim starts what it took
                await self._slot_freed.wait()
        self._releasing = True  # what a write in flight claims now is put back at once
        for running in list(self._running.values()):
            running.reason = running.reason or "shutdown"
            running.scope.cancel()
        limits = self._rt._process_limits
        with anyio.move_on_after(limits.kill_grace + limits.term_grace + 10, shield=True):
            # Shielded: the released rows must leave 'running', or another node would have
            # to wait for this node's heartbeat to go stale before it could run them. Long
            # enough for a child's cancel ladder to reach its SIGKILL: what outlives this
            # wait is cancelled natively below, with no outcome written.
            while self._running or self._claiming:
                await self._slot_freed.wait()
            await self.writer.flush()
        await _cancel_tasks([r.task for r in self._running.values() if r.task is not None])
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._stack.aclose()
        with anyio.move_on_after(5, shield=True):
            if not self._running:
                await self._store.recover_node(self.node.id, time.time())

    def abort(self) -> None:
        """Cut the graceful drain short (a second stop or signal)."""
        self._aborted = True
        self._drain_scope.cancel()

    # -- what the runtime asks ------------------------------------------------------------

    async def add_job(
        self, job: NewJob, executions: Sequence[NewExecution], *, due: float | None
    ) -> Job:
        """Store a pushed job and wake who must act on it (``due``: its first fire time).

        When its executions are due now and this node has free slots, claim in the same
        transaction and start what it took: the runtime that enqueues a task it runs itself
        needs no dispatcher round trip to start it."""
        now = self._clock.time()
        due_now = bool(executions) and executions[0].scheduled_for <= now
        free = self._free_slots()
        if due_now and free <= 0 and self._looking is not None and not self._stopping:
            # The dispatcher holds the free slots for a look at an empty queue: wait for it
            # (a round trip this push would mostly queue behind anyway) rather than leave the
            # job to its next claim, which would hold the slots against the next push again.
            await self._looking.wait()
            free = self._free_slots()
        if self._stopping or free <= 0 or not due_now:
            record, _ = await self._store.add_job(job, executions)
            # A schedule's first firing is the scheduler's; executions, the dispatcher's.
            self.wake(due, schedule=not executions)
            return record
        with self._promised(min(free, len(executions))) as limit:
            record, _, claims = await self._store.add_job_and_claim(
                job, executions, self.node, limit, now, tasks=self._rt._registry.names()
            )
        for claim in claims:
            self._start(claim)
        claimed = {claim.execution.id for claim in claims}
        if any(new.id not in claimed for new in executions):
            self.wake()  # left queued (another was next in line): the dispatcher's turn
        return record

    @property
    def watching(self) -> bool:
        """Whether the store tells this node of other processes' changes."""
        return self._watched is not None and self._watched.is_set()

    async def watch_store(self) -> bool:
        """Have the store tell this node of other processes' changes from now on; return
        whether it did not until now (then what changed before is untold: read it again).

        A node with workers watches from its start. One without (a process that only
        enqueues, a web app say) begins when something first waits for a change, or when
        it is given workers: until then its commits skip the watch's part, which on SQLite
        is about a fifth of an enqueue (the watcher must tell its own commits from others').
        Meanwhile its scheduler learns of other processes' schedules at each poll."""
        started = self._watched
        if started is not None and started.is_set():
            return False
        if started is None:
            self._watched = started = anyio.Event()
            try:
                await self._store.watch(self._on_store_changed)
            except BaseException:
                self._watched = None  # the next wait tries again
                raise
            finally:
                started.set()
        else:
            await started.wait()
        return True

    def _free_slots(self) -> int:
        return self._workers - len(self._running) - self._claiming

    @contextmanager
    def _promised(self, slots: int) -> Iterator[int]:
        """Hold ``slots`` free slots for a claim in flight, so that two claims (the
        dispatcher's, a push's) never take more than the pool; a stop waits for them.

        The claim is shielded from its caller's cancellation (a push's timeout, a stop) for
        up to :data:`CLAIM_WAIT` seconds: once committed, what it took is 'running' on this
        node and only this node would start it. Cut short, it would sit there until the
        stop's recovery counted it as crashed. What it took is started, then the cancel
        lands at the caller's next checkpoint."""
        self._claiming += slots
        try:
            with anyio.move_on_after(CLAIM_WAIT, shield=True) as claim:
                yield slots
            if claim.cancelled_caught:
                raise StoreError(f"the store did not answer a claim within {CLAIM_WAIT:g}s")
        finally:
            self._claiming -= slots
            self._slot_freed.set()

    def wake(self, due: float | None = None, *, schedule: bool = False) -> None:
        """Tell the dispatcher that work was added, due at ``due`` (default: now); with
        ``schedule``, tell the scheduler too (a job's next fire time was set)."""
        # Only future work moves the next due time: work due now is found by the next claim.
        if (
            due is not None
            and due > self._clock.time()
            and (self._next_due is None or due < self._next_due)
        ):
            self._next_due = due
        self._work_generation += 1
        self._work_added.set()
        if schedule:
            # Not for plain work: a push would cost the scheduler two store reads each.
            self._schedule_changed.set()

    def _on_store_changed(self, keys: frozenset[str]) -> None:
        """Another process changed the store: wake whoever waits for what changed, now rather
        than at the next poll (which stays, for notifications that get lost)."""
        everything = EVERYTHING in keys
        if everything or WORK in keys:
            self._last_poll = -math.inf  # its next due time may have moved: re-read it
            self._work_generation += 1
            self._work_added.set()
        if everything or SCHEDULE in keys:
            self._schedule_changed.set()
        if everything:
            self._changes.notify_all()
        else:
            self._changes.notify(keys - {WORK, SCHEDULE})

    def resize(self, workers: int) -> None:
        self._workers = workers
        self._slot_freed.set()

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def workers(self) -> int:
        return self._workers

    async def cancel_local(self, execution_id: str) -> bool:
        """Cancel the execution if it runs here; return once its outcome is written."""
        running = max(
            (r for (eid, _), r in self._running.items() if eid == execution_id),
            key=lambda r: r.claim.run,
            default=None,
        )
        if running is None:
            return False
        running.reason = running.reason or "cancel"
        running.scope.cancel()
        if running.task is not None and running.task is not asyncio.current_task():
            await asyncio.wait({running.task}, timeout=10)
        return True

    # -- the loops -----------------------------------------------------------------------

    async def _dispatch_loop(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        poll = self._rt._poll_interval
        self._last_poll = -math.inf  # read the store's next due time at once
        with self._dispatch_scope:
            while True:
                try:
                    await self._dispatch_once(poll)
                except Exception:
                    # A store that fails (disk full, locked too long) must not kill the
                    # node: log it, wait a poll, and try again.
                    logger.exception("asyncjobs dispatcher failed; retrying")
                    await anyio.sleep(poll)

    async def _dispatch_once(self, poll: float) -> None:
        """Claim what fits in the free slots, or wait until something may be due."""
        free = self._free_slots()
        if free <= 0:
            await self._slot_freed.wait()
            return
        if not self.watching:  # given workers by rt.resize(): others' work must wake it
            await self.watch_store()
        # Claim at most the free slots: a claimed execution is 'running' on this node, and
        # one waiting here for a slot would be delayed for every node.
        generation = self._work_generation
        # After a short claim, the queue was empty: this one looks for what came since.
        looking = anyio.Event() if self._drained_at is not None else None
        self._looking = looking
        try:
            with self._promised(min(free, MAX_CLAIM_BATCH)) as limit:
                claims = await self._store.claim(
                    self.node, limit, self._clock.time(), tasks=self._rt._registry.names()
                )
        finally:
            if looking is not None:
                self._looking = None
                looking.set()
        self._claimed(claims, limit, generation)
        if len(claims) == limit:
            await anyio.lowlevel.checkpoint()
            return
        # What is due next is known from our own pushes, and re-read from the store at each
        # poll (other processes add work too) and once what was due is claimed; not after
        # every wake-up, which would cost a store round trip per enqueued job, and after the
        # claim, not before it: work another process just added starts one round trip sooner.
        now = self._clock.time()
        expired = time.monotonic() - self._last_poll >= poll
        if expired or (self._next_due is not None and self._next_due <= now):
            self._last_poll = time.monotonic()
            self._next_due = await self._store.next_due()
        due = self._next_due
        await self._work_added.wait(poll if due is None else min(poll, due - now))

    async def _schedule_loop(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        poll = self._rt._poll_interval
        while True:
            try:
                created, more = await self.scheduler.fire_due()
                if created:
                    self.wake()
                if more:
                    continue
                upcoming = await self._store.next_fire()
            except Exception:
                logger.exception("asyncjobs scheduler failed; retrying")
                upcoming = None
            now = self._clock.time()
            deadline = now + poll if upcoming is None else min(upcoming, now + poll)
            # Sleep on the clock (a test's clock may jump a month), but wake at once when a
            # job is pushed or an execution ends, and at least every poll in real time.
            with anyio.move_on_after(poll):
                async with anyio.create_task_group() as tg:

                    async def until_deadline(deadline: float = deadline) -> None:
                        await self._clock.sleep_until(deadline)
                        tg.cancel_scope.cancel()

                    async def until_changed() -> None:
                        await self._schedule_changed.wait()
                        tg.cancel_scope.cancel()

                    tg.start_soon(until_deadline)
                    tg.start_soon(until_changed)

    def _start(self, claim: Claim) -> None:
        assert self._tg is not None
        if claim.spec.stand_in:
            # Enqueued by name only: this node knows the task (it claims no other) and runs
            # the step with the options of its own definition.
            task = self._rt._registry.get(claim.spec.task)
            claim = replace(claim, spec=resolve_step(task, claim.spec))
        running = _Running(claim=claim, scope=self._new_scope())
        if self._releasing:
            running.reason = "shutdown"
            running.scope.cancel()
        self._running[claim.execution.id, claim.run] = running
        # A plain task, not the task group's (see the module docstring).
        running.task = asyncio.get_running_loop().create_task(
            self._execute(running), name=f"asyncjobs execution {claim.execution.id}"
        )

    def _claimed(self, claims: list[Claim], limit: int, generation: int) -> None:
        """Start what a claim of ``limit`` took, made when the work generation was
        ``generation``; a short claim means the queue is empty until work is added."""
        self._drained_at = generation if len(claims) < limit else None
        for claim in claims:
            self._start(claim)

    async def _write(self, batch: WriteBatch, freed: int) -> list[bool]:
        """The writer's write. Its finishes free ``freed`` slots once it is written: while
        work may be queued, claim as many in the same transaction, and start them before
        the finished executions give their slots up (the pool never runs more than it
        holds). When the last claim came back short and nothing was added since, the
        queue is empty: the write claims nothing and costs no claim."""
        limit = min(freed, self._free_slots() + freed)
        if self._stopping or limit <= 0 or self._drained_at == self._work_generation:
            return await self._store.write(batch)
        generation = self._work_generation
        applied, claims = await self._store.write_and_claim(
            batch, self.node, limit, self._clock.time(), tasks=self._rt._registry.names()
        )
        self._claimed(claims, limit, generation)
        return applied

    async def _maintenance_loop(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        interval = self._rt._heartbeat_interval
        last_beat = time.monotonic()
        while True:
            await anyio.sleep(min(1.0, interval))
            try:
                for execution_id, run in await self._store.cancel_requests(self.node.id):
                    running = self._running.get((execution_id, run))
                    if running is not None:
                        running.reason = running.reason or "cancel"
                        running.scope.cancel()
                if time.monotonic() - last_beat >= interval:
                    last_beat = time.monotonic()
                    if not await self._store.heartbeat(self.node.id, time.time()):
                        # Our row was removed: someone judged us dead and took our work back.
                        # Re-register; our late writes are fenced and will not apply.
                        logger.warning("node %s was declared dead; re-registering", self.node.id)
                        await self._store.register_node(self.node)
                    await self.recover_dead_nodes()
            except Exception:
                logger.exception("asyncjobs maintenance failed; retrying")

    async def recover_dead_nodes(self) -> list[Execution]:
        """Recover the running executions of every node found dead; return them."""
        now = time.time()
        found: list[Execution] = []
        for node in await self._store.list_nodes():
            if node.id == self.node.id or not self._is_dead(node, now):
                continue
            if node.host == self.node.host:
                # Children that outlived their node (a command does not watch its stdin)
                # are stopped, but only if they are still the processes that were recorded.
                for pid, started in await self._store.node_children(node.id):
                    if await anyio.to_thread.run_sync(kill_leftover, pid, started):
                        logger.warning(
                            "killed the leftover process group %d of node %s", pid, node.id
                        )
            recovered = await self._store.recover_node(node.id, now)
            found.extend(recovered)
            if recovered:
                logger.warning(
                    "recovered %d executions of dead node %s (pid %d)",
                    len(recovered),
                    node.id,
                    node.pid,
                )
                self._changes.notify({e.job_id for e in recovered})
            self.wake(schedule=True)
        return found

    def _is_dead(self, node: NodeInfo, now: float) -> bool:
        if now - node.heartbeat_at > self._rt._node_timeout:
            return True
        if node.host == self.node.host and node.pid != self.node.pid:
            try:
                os.kill(node.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False

    # -- one execution -------------------------------------------------------------------

    async def _execute(self, running: _Running) -> None:
        claim = running.claim
        execution = claim.execution
        try:
            task = self._rt._registry.get(claim.spec.task)
        except UnknownTask:
            task = None  # a command, or a task this node lost: no task hooks
        try:
            # Hooks are looked up once, before any await: most executions have none.
            state_hooks = self._hooks(task, "on_state_change")
            if state_hooks:
                await self._call_hooks(claim, state_hooks, "on_state_change", execution, _S.RUNNING)
            finish = await self._run(running)
            if claim.schedule.get("kind") == "daemon" and finish.status != _S.RETRYING:
                finish = replace(finish, job=self._daemon_next(claim, finish))
            completed = finish.status == _S.COMPLETED
            complete_hooks = self._hooks(task, "on_complete") if completed else []
            # With no hook left to run, the slot can pass to the next execution as the
            # outcome is written.
            frees_slot = not state_hooks and not complete_hooks
            written = await self._record(finish, execution.job_id, frees_slot)
            if written is not None:
                # What was written: an outcome the store refused is written as a failure.
                finish = written
                if finish.status == _S.COMPLETED:
                    self.completed += 1
                elif finish.status == _S.FAILED:
                    self.failed += 1
                if state_hooks:
                    await self._call_hooks(
                        claim, state_hooks, "on_state_change", execution, finish.status
                    )
                if complete_hooks and finish.status == _S.COMPLETED:
                    await self._call_hooks(
                        claim, complete_hooks, "on_complete", execution, finish.result
                    )
            else:
                logger.warning(
                    "execution %s run %d ended after it was taken over; its outcome was dropped",
                    execution.id,
                    claim.run,
                )
            if finish.status == _S.RETRYING:
                self.wake(finish.retry_at)
            elif finish.job is not None:
                self.wake(finish.job.next_fire_at, schedule=True)
            elif claim.schedule.get("overlap") == "queue":
                self._schedule_changed.set()  # this job's next tick may be waiting for it
            if claim.spec.concurrency is not None:
                self.wake()  # its task's slot is free: what waits for it may start
        except Exception:
            logger.exception("asyncjobs could not record the end of execution %s", execution.id)
        finally:
            del self._running[execution.id, claim.run]
            self._slot_freed.set()

    async def _record(self, finish: Finish, job_id: str, frees_slot: bool) -> Finish | None:
        """Write the outcome, retrying a failing store for a while: an outcome that is never
        written leaves the execution 'running' under a live node, which nothing recovers.
        Return the outcome written, or None if it did not apply (the run was taken over)."""
        for attempt in range(8):
            try:
                applied = await self.writer.finish(
                    finish,
                    job_id,  # type: ignore[arg-type]
                    frees_slot=frees_slot,
                )
                return finish if applied else None
            except StoreError:
                if attempt == 7:
                    raise
                await anyio.sleep(0.05 * 2**attempt)
            except Exception as exc:
                if finish.error is not None and finish.error.type == _UNSTORABLE:
                    raise
                # The store refused what the execution left (a result, shared data or a
                # progress message it cannot hold): it fails, saying so, without them.
                finish = Finish(
                    execution_id=finish.execution_id,
                    run=finish.run,
                    status=_S.FAILED,
                    at=finish.at,
                    error=ErrorInfo(
                        type=_UNSTORABLE,
                        message=f"the execution's outcome could not be stored: {exc}",
                    ),
                    job=finish.job,
                )
        raise AssertionError("unreachable")

    async def _run(self, running: _Running) -> Finish:
        """Run the task and decide the outcome (not yet written)."""
        claim = running.claim
        execution = claim.execution
        ctx = Context(
            sink=self.writer,
            job_id=execution.job_id,
            execution_id=execution.id,
            run=claim.run,
            attempt=execution.attempt,
            task=claim.spec.task,
            shared=dict(claim.shared),
        )
        task: TaskDef | None = None
        error: BaseException | None = None
        result: object = None
        spec = claim.spec
        in_child = spec.command is not None or spec.mode == "process"
        scope = running.scope
        if scope.cancel_called:
            # Cancelled before it began (a stop's release, a cancel that came with the
            # claim): the body never starts.
            return self._cancelled(running, ctx)
        if spec.timeout is not None:
            # One scope for cancel and timeout; a cancel names its reason, the deadline not.
            scope.deadline = anyio.current_time() + spec.timeout
        try:
            if spec.command is None:
                task = self._rt._registry.get(spec.task)
            with scope:
                if in_child:
                    # The child binds and converts the arguments itself.
                    result = await self._call_child(claim, ctx)
                else:
                    assert task is not None
                    args, kwargs = task.bind(spec.args, spec.kwargs, ctx)
                    result = await self._call(task, ctx, args, kwargs)
        except Exception as exc:
            error = exc
        timed_out = scope.cancelled_caught and running.reason is None
        if scope.cancelled_caught and not timed_out:
            return self._cancelled(running, ctx)
        if timed_out:
            error = _Timeout(f"execution ran past its timeout of {claim.spec.timeout:g}s")
        value: Any = None
        if error is None:
            try:
                value = to_json(result, path="result")
            except TypeError as exc:
                error = TypeError(f"the task's result is not JSON: {exc}")
        if task is not None:
            error = await self._terminate_hooks(task, claim, execution, error)
        progress = ctx.last_progress
        common: dict[str, Any] = {
            "execution_id": execution.id,
            "run": claim.run,
            "at": self._clock.time(),
            "shared": ctx.shared.written or None,
            "progress": progress[0] if progress else None,
            "progress_message": progress[1] if progress else None,
        }
        if error is None:
            return Finish(status=_S.COMPLETED, result=value, **common)
        info = _error_info(error)
        retryable = not isinstance(error, InvalidArguments | UnknownTask) and info.type not in (
            "BindError",
            "TargetError",
        )
        if retryable and execution.attempt <= claim.spec.retries:
            delay = self._backoff(task, claim).delay(execution.attempt)
            ctx.log.warning(
                "attempt %d failed (%s: %s); retrying in %.3gs",
                execution.attempt,
                info.type,
                info.message,
                delay,
            )
            await anyio.lowlevel.checkpoint()
            common["at"] = self._clock.time()
            return Finish(status=_S.RETRYING, error=info, retry_at=common["at"] + delay, **common)
        return Finish(status=_S.FAILED, error=info, **common)

    def _daemon_next(self, claim: Claim, finish: Finish) -> JobUpdate:
        """Decide whether and when a daemon's ended execution is restarted."""
        daemon = schedule_from_json(claim.schedule)
        assert isinstance(daemon, Daemon)
        state = dict(claim.job_state)
        restarts = int(state.get("restarts", 0) or 0)  # type: ignore[arg-type]
        quick = int(state.get("quick", 0) or 0)  # type: ignore[arg-type]
        started = claim.execution.started_at
        ran = finish.at - started.timestamp() if started else 0.0
        clean = finish.status == _S.COMPLETED
        execution = claim.execution
        if daemon.restart == "never" or (daemon.restart == "on_failure" and clean):
            why = f"restart={daemon.restart!r}"
        elif daemon.max_restarts is not None and restarts >= daemon.max_restarts:
            why = f"max_restarts={daemon.max_restarts} reached"
        else:
            quick = 0 if ran >= daemon.reset_after else quick + 1
            delay = daemon.policy().delay(quick) if quick else 0.0
            self.writer.log(
                execution.id,
                execution.job_id,
                LogLevel.WARN if not clean else LogLevel.INFO,
                f"daemon exited ({finish.status.value} after {ran:.3g}s); "
                f"restart {restarts + 1} in {delay:.3g}s",
                {"restarts": restarts + 1, "delay": delay},
            )
            return JobUpdate(
                next_fire_at=finish.at + delay,
                state={**state, "restarts": restarts + 1, "quick": quick},
            )
        self.writer.log(
            execution.id,
            execution.job_id,
            LogLevel.INFO,
            f"daemon exited ({finish.status.value}); not restarted: {why}",
            {"restarts": restarts},
        )
        return JobUpdate(finished=True, state=state)

    def _cancelled(self, running: _Running, ctx: Context) -> Finish:
        claim = running.claim
        at = self._clock.time()
        if running.reason == "shutdown":
            # Released, not failed: the same attempt runs again on the next claim.
            ctx.log.warning(
                "the runtime stopped while this execution ran; it was put back in the queue"
            )
            return Finish(
                execution_id=claim.execution.id,
                run=claim.run,
                status=_S.RETRYING,
                at=at,
                retry_at=at,
                new_attempt=False,
            )
        return Finish(
            execution_id=claim.execution.id,
            run=claim.run,
            status=_S.CANCELLED,
            at=at,
            error=ErrorInfo(type="ExecutionCancelled", message="the execution was cancelled"),
            shared=ctx.shared.written or None,
        )

    async def _call(
        self, task: TaskDef, ctx: Context, args: tuple[object, ...], kwargs: dict[str, object]
    ) -> object:
        token = current_context.set(ctx)
        try:
            if task.is_async:
                return await task.fn(*args, **kwargs)
            # A thread cannot be cancelled: on cancel or timeout it is abandoned (its
            # late writes are fenced) and the execution ends at once.
            return await anyio.to_thread.run_sync(
                lambda: task.fn(*args, **kwargs), abandon_on_cancel=True
            )
        finally:
            current_context.reset(token)

    async def _call_child(self, claim: Claim, ctx: Context) -> object:
        """Run the step in a child process; return its result or raise its error."""
        spec = claim.spec
        if spec.command is not None:
            argv, start = list(spec.command), None
        else:
            assert spec.target is not None
            # Our own interpreter, never whatever 'python3' or 'asyncjobs' is first on PATH:
            # a version-manager shim there costs ~140 ms per spawn.
            argv = [sys.executable, "-m", "asyncjobs_runner", "run", spec.target]
            start = {
                "type": "start",
                "target": spec.target,
                "args": list(spec.args),
                "kwargs": spec.kwargs,
            }
        async with self._process_slots:
            outcome = await run_child(
                argv,
                ctx=ctx,
                spec=spec,
                writer=self.writer,
                run=claim.run,
                limits=self._rt._process_limits,
                start=start,
                env=spec.env,
                cwd=spec.cwd,
                on_spawn=lambda pid, started: self._store.record_child(
                    claim.execution.id, claim.run, pid, started
                ),
            )
        if outcome.error is not None:
            raise RemoteError(outcome.error)
        return outcome.result

    def _backoff(self, task: TaskDef | None, claim: Claim) -> Backoff:
        if claim.spec.backoff is not None:
            return Backoff.from_json(claim.spec.backoff)
        if task is not None and task.backoff is not None:
            return task.backoff
        return DEFAULT_BACKOFF

    # -- hooks ---------------------------------------------------------------------------

    def _hooks(self, task: TaskDef | None, name: str) -> list[Callable[..., Any]]:
        hooks = []
        if task is not None and getattr(task, name) is not None:
            hooks.append(getattr(task, name))
        runtime_hook = self._rt._hooks.get(name)
        if runtime_hook is not None:
            hooks.append(runtime_hook)
        return hooks

    async def _terminate_hooks(
        self, task: TaskDef, claim: Claim, execution: Execution, error: BaseException | None
    ) -> BaseException | None:
        for hook in self._hooks(task, "on_terminate"):
            try:
                outcome = await _maybe_await(hook(execution, error))
            except Exception as exc:
                outcome = exc
            if outcome is not None and not isinstance(outcome, BaseException):
                raise TypeError(f"on_terminate must return an exception or None, got {outcome!r}")
            error = outcome
        return error

    async def _call_hooks(
        self, claim: Claim, hooks: list[Callable[..., Any]], name: str, *args: object
    ) -> None:
        for hook in hooks:
            try:
                await _maybe_await(hook(*args))
            except Exception as exc:
                logger.exception("%s hook of task %s failed", name, claim.spec.task)
                self.writer.log(
                    claim.execution.id,
                    claim.execution.job_id,
                    LogLevel.ERROR,
                    f"{name} hook failed: {type(exc).__name__}: {exc}",
                    {},
                )


class _Timeout(Exception):
    pass


async def _cancel_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel executions' tasks that outlived the stop, and give them a second to end."""
    for task in tasks:
        task.cancel()
    if tasks:
        with anyio.CancelScope(shield=True):
            await asyncio.wait(tasks, timeout=1)


class RemoteError(Exception):
    """An error a child reported (or that ended it), recorded as it came."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.info = info


async def _maybe_await(value: object) -> object:
    if inspect.isawaitable(value):
        return await value
    return value


def _error_info(error: BaseException) -> ErrorInfo:
    if isinstance(error, RemoteError):
        return error.info
    name = "ExecutionTimeout" if isinstance(error, _Timeout) else type(error).__name__
    return ErrorInfo(
        type=name,
        message=str(error),
        traceback="".join(traceback.format_exception(error)),
    )
