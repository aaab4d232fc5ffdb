"""The scheduler: turns due schedules into executions (misfire and overlap policies).

Any number of schedulers may run on one store: :meth:`Store.fire` fires a (job, tick) once,
and only for the caller that saw the job's current ``next_fire_at``, so a tick never fires
twice, and a clock set back never fires a tick again (``last_fire_at`` only moves forward).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from .._schedules import Cron, Every, Schedule, schedule_from_json
from .._types import ExecutionId, new_id
from ..stores.base import NewExecution, Tick

if TYPE_CHECKING:
    from .._clock import Clock
    from .._models import Job
    from ..stores.base import Store

logger = logging.getLogger("asyncjobs.scheduler")

DUE_BATCH = 100


def executions_for(job: Job, tick: float, created: float) -> list[NewExecution]:
    """Return one new execution per step of ``job`` for the firing at ``tick``."""
    return [
        NewExecution(
            id=ExecutionId(new_id()),
            job_id=job.id,
            step=index,
            spec=step,
            priority=job.priority,
            scheduled_for=created,
            created_at=created,
        )
        for index, step in enumerate(job.steps)
    ]


def due_ticks(schedule: Cron | Every, first: float, now: float) -> tuple[list[float], float]:
    """Return the ticks to fire now, oldest first, and the next fire time after ``now``.

    ``first`` is the job's ``next_fire_at`` (the oldest tick not fired yet). Ticks later than
    ``misfire_grace`` are missed, and follow ``misfire``: ``skip`` fires none of them,
    ``run_once`` the latest, ``run_all`` each (the latest ``max_catchup``). Of ticks still
    within the grace, only the latest fires: a scheduler that was briefly late catches up
    with one run, not a burst.
    """
    cap = schedule.max_catchup
    ticks: list[float] = []
    if isinstance(schedule, Every):
        step = schedule.seconds
        count = math.floor((now - first) / step) + 1 if now >= first else 0
        # Only the latest `cap` ticks can matter; never walk the whole gap.
        start = max(0, count - cap)
        ticks = [first + i * step for i in range(start, count)]
        following = first + count * step
    else:
        tick = first
        while tick <= now:
            ticks.append(tick)
            if len(ticks) > cap:
                ticks.pop(0)
            if len(ticks) == cap and tick < now - schedule.misfire_grace:
                # Far behind: jump to the latest `cap` ticks instead of walking every one.
                tick = schedule.next_fire(max(tick, now - schedule.misfire_grace - 1))
                continue
            tick = schedule.next_fire(tick)
        following = tick
    on_time = [t for t in ticks if now - t <= schedule.misfire_grace]
    missed = [t for t in ticks if now - t > schedule.misfire_grace]
    chosen: list[float]
    if on_time:
        chosen = on_time[-1:] if schedule.misfire != "run_all" else [*missed, *on_time][-cap:]
    elif schedule.misfire == "run_once":
        chosen = missed[-1:]
    elif schedule.misfire == "run_all":
        chosen = missed[-cap:]
    else:
        chosen = []
    return chosen, following


class Scheduler:
    """Fires the due jobs of one store, as one of possibly many schedulers."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def fire_due(self) -> tuple[int, bool]:
        """Fire every due job once; return how many executions were created and whether
        more jobs may be due (a full batch)."""
        now = self._clock.time()
        jobs = await self._store.due_jobs(now, DUE_BATCH)
        created = 0
        for job in jobs:
            try:
                created += await self._fire(job, now)
            except Exception:
                logger.exception("asyncjobs could not fire job %s", job.id)
        return created, len(jobs) == DUE_BATCH

    async def _fire(self, job: Job, now: float) -> int:
        assert job.next_fire_at is not None
        expected = job.next_fire_at.timestamp()
        schedule: Schedule = schedule_from_json(job.schedule)
        following: float | None
        if isinstance(schedule, Cron | Every):
            chosen, following = due_ticks(schedule, expected, now)
            overlap = schedule.overlap
        else:
            # A daemon's restart or a paused-then-resumed daemon: one start now.
            chosen, following, overlap = [expected], None, "skip"
        ticks = [Tick(at=t, executions=executions_for(job, t, now)) for t in chosen]
        result = await self._store.fire(
            job.id,
            expected=expected,
            ticks=ticks,
            next_fire_at=following,
            overlap=overlap,
            at=now,
        )
        if result.status == "skipped":
            logger.info("job %s: tick skipped, its previous run is still live", job.id)
        return len(result.fired) * len(job.steps)
