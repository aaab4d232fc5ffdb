"""In-process wake-ups: who waits for what to change in the store."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Iterable

ANY = "*"
"""The key that is notified on every change (event streams wait on it)."""


class Changes:
    """Per-key wake-ups for waiters in this process (``job.wait()``, ``rt.events()``).

    A waiter *arms* before it reads the store and waits on what it armed after: a change
    notified while it was reading (or yielding what it read) then ends the wait at once
    instead of being lost until the next poll. Waiters still re-read the store after a
    wake-up and poll at a bounded interval, for changes nobody notified.
    """

    def __init__(self) -> None:
        self._events: dict[str, anyio.Event] = {}

    def notify(self, keys: Iterable[str]) -> None:
        """Wake everyone waiting on one of ``keys``, and on :data:`ANY`. Loop thread only."""
        for key in (*keys, ANY):
            event = self._events.pop(key, None)
            if event is not None:
                event.set()

    def notify_all(self) -> None:
        """Wake every waiter (what changed is not known). Loop thread only."""
        self.notify(tuple(self._events))

    def arm(self, key: str) -> anyio.Event:
        """Return the event that the next notification of ``key`` (or :data:`ANY`) sets:
        take it before reading the store, then :meth:`wait` on it."""
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = anyio.Event()
        return event

    @staticmethod
    async def wait(armed: anyio.Event, timeout: float) -> None:
        """Return when ``armed`` is set (at once if it was already) or after ``timeout``."""
        with anyio.move_on_after(timeout):
            await armed.wait()


class Wakeup:
    """An event that threads may set too: the engine's loops sleep on it."""

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._loop_thread = threading.get_ident()
        import asyncio

        self._loop = asyncio.get_running_loop()

    def set(self) -> None:
        if threading.get_ident() == self._loop_thread:
            self._event.set()
        else:
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout: float | None = None) -> None:
        """Wait until set (or ``timeout``), then re-arm; a set before the wait is not lost."""
        if timeout is None:
            await self._event.wait()
        else:
            with anyio.move_on_after(max(0.0, timeout)):
                await self._event.wait()
        if self._event.is_set():
            self._event = anyio.Event()
