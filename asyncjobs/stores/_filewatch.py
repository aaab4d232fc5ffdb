"""Blocking waits for writes to one file: Linux inotify where there is one, else a timed sleep.

For a thread that watches a file written by other processes (the SQLite store's ``-wal``):
:meth:`FileWrites.wait` returns as soon as the file is written, instead of at the next tick
of a poll. Where inotify is missing (not Linux, or no watch could be added), ``precise`` is
false and :meth:`~FileWrites.wait` only sleeps: the caller then polls at its own pace.

The folder is watched, not the file: the file may not exist yet, or be replaced. Only the
events that name the file end a wait.

A writer that knows its own writes can :meth:`~FileWrites.mute` the watch around them: the
waiting thread is then not woken a few times per commit only to learn that nothing foreign
happened (each wake-up takes the GIL from the writer, mid-commit).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import struct
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

_IN_MODIFY = 0x002
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name
_BUFFER = 65536
_LARGEST = _EVENT.size + 256  # an event with the longest name (NAME_MAX, its NUL, padding)


class FileWrites:
    """Waits until ``path`` is written; one thread waits, any thread may :meth:`wake` it."""

    def __init__(self, path: Path) -> None:
        self._name = os.fsencode(path.name)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)  # wake() never blocks (the event loop calls it)
        self._inotify = _watch_folder(os.fsencode(path.parent))
        self.precise = self._inotify >= 0
        # epoll where inotify is (both are Linux's): a writer can take the inotify descriptor
        # out of a wait in progress, and put it back (mute, unmute).
        self._poll = select.epoll() if self.precise else None
        if self._poll is not None:
            self._poll.register(self._wake_r, select.EPOLLIN)
            self._poll.register(self._inotify, select.EPOLLIN)
        self._muted = False

    def wait(self, timeout: float) -> bool:
        """Return ``True`` once the file was written, ``False`` after ``timeout`` seconds or
        when woken."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if self._poll is None:
                ready, _, _ = select.select([self._wake_r], [], [], left)
            else:
                ready = [fd for fd, _ in self._poll.poll(left)]
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
                return False
            if self._inotify in ready and self._ours(self._read_events()):
                return True
        return False

    def mute(self) -> None:
        """Until :meth:`unmute`, writes do not end a :meth:`wait` (nor wake its thread)."""
        if self._poll is not None and not self._muted:
            self._muted = True
            self._poll.unregister(self._inotify)

    def unmute(self) -> None:
        """Forget the writes made while muted; from now on a write ends a wait again.

        Call it before the writer records the file's state: a write landing between the two
        is then either in that record or reported to the wait, never lost to both."""
        if self._poll is not None and self._muted:
            self._read_events()
            self._poll.register(self._inotify, select.EPOLLIN)
            self._muted = False

    def _read_events(self) -> bytes:
        """Everything the inotify descriptor holds (it never blocks: O_NONBLOCK)."""
        chunks = []
        with contextlib.suppress(BlockingIOError):
            # A read returns as many whole events as fit: one that leaves room for another
            # took them all. (Not reading until the error saves a failed read and its
            # exception at every commit: 3 of the 5 us a mute and unmute cost.)
            while True:
                chunks.append(os.read(self._inotify, _BUFFER))
                if len(chunks[-1]) <= _BUFFER - _LARGEST:
                    break
        return b"".join(chunks)

    def _ours(self, buffer: bytes) -> bool:
        offset, found = 0, False
        while offset + _EVENT.size <= len(buffer):
            _, _, _, length = _EVENT.unpack_from(buffer, offset)
            start = offset + _EVENT.size
            found = found or buffer[start : start + length].rstrip(b"\0") == self._name
            offset = start + length
        return found

    def wake(self) -> None:
        """End the current (or next) :meth:`wait` early; from any thread."""
        with contextlib.suppress(OSError):  # closed, or full: a wake-up is pending anyway
            os.write(self._wake_w, b"x")

    def close(self) -> None:
        """Release the descriptors, once the waiting thread is done and nothing will
        :meth:`wake`, :meth:`mute` or :meth:`unmute` it any more (a closed descriptor's number
        is soon another file's)."""
        if self._poll is not None:
            self._poll.close()
        for fd in (self._wake_r, self._wake_w, self._inotify):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = self._inotify = -1


def _watch_folder(folder: bytes) -> int:
    """Return an inotify descriptor watching ``folder`` for writes, or -1 where there is none."""
    if not sys.platform.startswith("linux"):
        return -1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
    except (OSError, AttributeError):
        return -1
    if fd < 0:
        return -1
    if libc.inotify_add_watch(fd, folder or b".", _IN_MODIFY | _IN_CREATE | _IN_MOVED_TO) < 0:
        os.close(fd)
        return -1
    return fd
