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

    Waiters still re-read the store after a wake-up and poll at a bounded interval: another
    process sharing the store notifies nobody here.
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

    async def wait(self, key: str, timeout: float) -> None:
        """Return when ``key`` is notified or after ``timeout`` seconds."""
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = anyio.Event()
        with anyio.move_on_after(timeout):
            await event.wait()


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
