"""The writer: buffers logs, progress and outcomes, and writes them in group commits."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio

from asyncjobs_runner._convert import storable_text

from .._errors import StoreError
from ..stores.base import Finish, NewLog, ProgressUpdate, WriteBatch
from .changes import Changes, Wakeup

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from .._clock import Clock
    from .._states import LogLevel
    from .._types import JSON, ExecutionId, JobId

    # How a batch is written: write(batch, freed), ``freed`` being the slots its finishes
    # give up once it is written (the engine may claim as many in the same transaction).
    WriteFn = Callable[[WriteBatch, int], Awaitable[list[bool]]]

logger = logging.getLogger("asyncjobs.writer")

MAX_LOG_BATCH = 5000


class _Pending:
    __slots__ = ("applied", "error", "finish", "frees_slot", "job_id")

    def __init__(self, finish: Finish, job_id: JobId, frees_slot: bool) -> None:
        self.finish = finish
        self.job_id = job_id
        self.frees_slot = frees_slot
        self.applied = False
        self.error: BaseException | None = None


class Writer:
    """Group commit for everything executions report.

    Whatever arrives while a write is in flight goes into the next one, so under load one
    transaction carries many executions' logs, progress and outcomes, and when idle a write
    starts at once. Progress alone is flushed at most every ``progress_interval`` seconds,
    latest value per execution; an outcome always carries the final progress.
    """

    def __init__(
        self, changes: Changes, *, write: WriteFn, progress_interval: float, clock: Clock
    ) -> None:
        self._clock = clock
        self._write = write
        self._changes = changes
        self._progress_interval = progress_interval
        self._logs: list[NewLog] = []
        self._progress: dict[ExecutionId, ProgressUpdate] = {}
        self._finishes: list[_Pending] = []
        self._written = anyio.Event()  # set when the write holding ``_finishes`` is done
        self._wake = Wakeup()
        self._last_progress_flush = 0.0
        self._closed = False

    # -- the Sink side: called from tasks, maybe from worker threads ----------------------

    def progress(self, execution_id: ExecutionId, run: int, value: float, message: str) -> None:
        # A dict assignment is atomic under the GIL: the latest value wins, nothing piles up.
        self._progress[execution_id] = ProgressUpdate(
            execution_id=execution_id,
            run=run,
            progress=value,
            message=message,
            at=self._clock.time(),
        )
        self._wake.set()

    def log(
        self,
        execution_id: ExecutionId,
        job_id: JobId,
        level: LogLevel,
        message: str,
        data: dict[str, JSON],
    ) -> None:
        self._logs.append(
            NewLog(
                execution_id=execution_id,
                job_id=job_id,
                at=self._clock.time(),
                level=level,
                message=storable_text(message),
                data=data,
            )
        )
        self._wake.set()

    # -- the engine side -----------------------------------------------------------------

    async def finish(self, finish: Finish, job_id: JobId, *, frees_slot: bool = False) -> bool:
        """Write ``finish`` with the next group commit; return whether it applied.

        ``frees_slot``: its execution gives up its slot as soon as this returns (it has
        nothing left to run), so the write may hand the slot to the next execution.

        :raises StoreError: if the store failed the write
        """
        pending = _Pending(finish, job_id, frees_slot)
        self._finishes.append(pending)
        written = self._written  # one event per write, not per outcome
        self._wake.set()
        await written.wait()
        if pending.error is not None:
            raise pending.error
        return pending.applied

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            await self._wake.wait()
            if not self._finishes and not self._logs:
                # Only progress: keep to the bounded rate.
                wait = self._last_progress_flush + self._progress_interval - time.monotonic()
                if wait > 0:
                    await self._wake.wait(wait)
            await self.flush()

    async def flush(self) -> None:
        """Write everything buffered now (the final flush at shutdown calls this too)."""
        while self._logs or self._progress or self._finishes:
            logs, self._logs = self._logs[:MAX_LOG_BATCH], self._logs[MAX_LOG_BATCH:]
            progress, self._progress = self._progress, {}
            finishes, self._finishes = self._finishes, []
            written, self._written = self._written, anyio.Event()
            if progress:
                self._last_progress_flush = time.monotonic()
            batch = WriteBatch(
                logs=logs,
                progress=list(progress.values()),
                finishes=[p.finish for p in finishes],
            )
            try:
                with anyio.CancelScope(shield=True):
                    # Shielded: a batch holds outcomes other tasks wait on; leaving it half
                    # sent would strand them.
                    applied = await self._write(batch, sum(p.frees_slot for p in finishes))
            except StoreError as exc:
                logger.exception("asyncjobs could not write %d outcomes", len(finishes))
                for pending in finishes:
                    pending.error = exc
                written.set()
                continue
            except Exception:
                # Not the store, which answers: something in the batch it cannot take (a
                # value only the store refuses). Each item alone, so that one fails and the
                # others are written.
                with anyio.CancelScope(shield=True):
                    applied = await self._one_by_one(logs, batch.progress, finishes)
            keys: set[str] = {log.job_id for log in logs}
            for pending, ok in zip(finishes, applied, strict=True):
                pending.applied = ok
                keys.add(pending.job_id)
                keys.add(pending.finish.execution_id)
            written.set()
            self._changes.notify(keys)

    async def _one_by_one(
        self, logs: list[NewLog], progress: Sequence[ProgressUpdate], finishes: list[_Pending]
    ) -> list[bool]:
        """Write each item of a batch the store refused in a transaction of its own: a log
        line or a progress update it refuses is dropped (with a warning), an outcome it
        refuses goes back to its execution as the error. Return each outcome's applied."""
        items: list[NewLog | ProgressUpdate] = [*logs, *progress]
        for item in items:
            single = WriteBatch(
                logs=[item] if isinstance(item, NewLog) else [],
                progress=[item] if isinstance(item, ProgressUpdate) else [],
                finishes=[],
            )
            try:
                await self._write(single, 0)
            except Exception as exc:
                logger.warning(
                    "execution %s: a %s could not be stored and was dropped: %s",
                    item.execution_id,
                    "log line" if isinstance(item, NewLog) else "progress update",
                    exc,
                )
        applied: list[bool] = []
        for pending in finishes:
            single = WriteBatch(logs=[], progress=[], finishes=[pending.finish])
            try:
                (ok,) = await self._write(single, int(pending.frees_slot))
            except Exception as exc:
                pending.error = exc
                ok = False
            applied.append(ok)
        return applied
