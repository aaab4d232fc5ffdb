"""The SQLite watcher's wait for writes: woken by a write to its file, by nothing else."""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest

from asyncjobs.stores._filewatch import FileWrites

if TYPE_CHECKING:
    from pathlib import Path

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


def _write_later(path: Path, delay: float) -> threading.Thread:
    def write() -> None:
        time.sleep(delay)
        with path.open("ab") as f:
            f.write(b"frame")

    thread = threading.Thread(target=write)
    thread.start()
    return thread


@linux
def test_a_write_to_the_file_ends_the_wait_at_once(tmp_path: Path) -> None:
    target = tmp_path / "db-wal"
    writes = FileWrites(target)  # the file need not exist yet
    try:
        assert writes.precise
        writer = _write_later(target, 0.05)
        start = time.monotonic()
        assert writes.wait(10) is True
        assert time.monotonic() - start < 5  # woken by the write, not by the timeout
        writer.join()
    finally:
        writes.close()


@linux
def test_writes_to_other_files_in_the_folder_do_not_end_it(tmp_path: Path) -> None:
    writes = FileWrites(tmp_path / "db-wal")
    try:
        writer = _write_later(tmp_path / "db-wal.txt", 0.01)
        assert writes.wait(0.3) is False  # the whole timeout: no event named our file
        writer.join()
    finally:
        writes.close()


def test_wake_ends_a_wait_from_another_thread_and_timeouts_hold(tmp_path: Path) -> None:
    writes = FileWrites(tmp_path / "db-wal")
    try:
        start = time.monotonic()
        assert writes.wait(0.05) is False
        assert time.monotonic() - start >= 0.05
        waker = threading.Timer(0.05, writes.wake)
        waker.start()
        start = time.monotonic()
        assert writes.wait(10) is False
        assert time.monotonic() - start < 5
        waker.join()
    finally:
        writes.close()
    writes.wake()  # after close: harmless


@linux
def test_writes_while_muted_are_forgotten_and_later_ones_end_a_wait(tmp_path: Path) -> None:
    """The SQLite store mutes the watch around its own commit: the waiting thread is not
    woken by those writes, nor later by what they left behind; the next write wakes it."""
    target = tmp_path / "db-wal"
    writes = FileWrites(target)
    try:
        writes.mute()
        writes.mute()  # twice is harmless
        writer = _write_later(target, 0.01)
        assert writes.wait(0.3) is False  # the whole timeout: muted
        writer.join()
        writes.unmute()
        writes.unmute()
        assert writes.wait(0.2) is False  # the muted write was forgotten
        writer = _write_later(target, 0.05)
        start = time.monotonic()
        assert writes.wait(10) is True
        assert time.monotonic() - start < 5
        writer.join()
    finally:
        writes.close()


@linux
def test_a_wait_in_progress_is_muted_and_unmuted(tmp_path: Path) -> None:
    """Muting takes effect for a thread already waiting; a write made after unmute (and
    before the writer records the file) still ends that same wait."""
    target = tmp_path / "db-wal"
    writes = FileWrites(target)
    results: list[bool] = []
    try:
        waiter = threading.Thread(target=lambda: results.append(writes.wait(10)))
        waiter.start()
        time.sleep(0.05)  # the waiter is in its wait
        writes.mute()
        with target.open("ab") as f:
            f.write(b"ours")
        time.sleep(0.1)
        assert waiter.is_alive()  # not woken by the muted write
        writes.unmute()
        with target.open("ab") as f:
            f.write(b"theirs")
        waiter.join(5)
        assert results == [True]
    finally:
        writes.close()
