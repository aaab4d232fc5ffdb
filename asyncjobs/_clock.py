"""The one clock the scheduler and the engine read, replaceable in tests."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Protocol

from ._types import from_datetime


class Clock(Protocol):
    """Wall-clock time (Unix seconds) and a way to wait for it."""

    def time(self) -> float: ...

    async def sleep_until(self, deadline: float) -> None: ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        import anyio

        await anyio.sleep(max(0.0, deadline - time.time()))


class ManualClock:
    """A clock that moves only when a test moves it: a month of cron ticks in milliseconds.

    ``await clock.sleep_until(t)`` returns once :meth:`advance` or :meth:`set` has moved the
    clock to ``t`` or past it. :meth:`set` may also move it back, as a real clock can be.
    """

    def __init__(self, start: float | datetime) -> None:
        self._now = from_datetime(start) if isinstance(start, datetime) else float(start)
        self._waiters: list[tuple[float, object]] = []

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds``; return the new time."""
        if seconds < 0:
            raise ValueError(f"advance() moves forward; got {seconds!r} (use set() to go back)")
        return self.set(self._now + seconds)

    def set(self, when: float | datetime) -> float:
        """Put the clock at ``when`` (forward or back); return it."""
        self._now = from_datetime(when) if isinstance(when, datetime) else float(when)
        remaining = []
        for deadline, event in self._waiters:
            if deadline <= self._now:
                event.set()  # type: ignore[attr-defined]
            else:
                remaining.append((deadline, event))
        self._waiters = remaining
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        import anyio

        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        self._waiters.append((deadline, event))
        await event.wait()


for _cls in (Clock, SystemClock, ManualClock):
    _cls.__module__ = "asyncjobs"
