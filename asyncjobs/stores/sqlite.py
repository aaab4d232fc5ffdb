"""The SQLite store: one file, nothing to install, shareable by processes on one machine.

How it is built, and why:

* **One transaction per call, run whole on the connection's thread.** aiosqlite gives every
  statement its own hop to its worker thread (about 0.1-0.3 ms each here); a claim or a batch
  of finishes is many statements. So each store method is a plain function over the
  :mod:`sqlite3` connection that :meth:`SQLiteStore._run` (a read) or :meth:`SQLiteStore._tx`
  (a write) sends to aiosqlite's thread as one unit: one hop per transaction, whatever it
  holds.
* **Group commit.** Writes that arrive while a transaction is on the thread go together in
  the next one, each in a savepoint of its own, and share its commit (most of a write's
  cost, with ``synchronous=FULL``'s fsync): a runtime that enqueues while its executions
  finish, or many requests that enqueue at once, pay for one commit, not one each. A write
  that fails is undone alone; each caller returns once the commit that holds its write is
  done.
* **Writes start with** ``BEGIN IMMEDIATE``: the write lock is taken up front, so a
  transaction never fails half-way with ``SQLITE_BUSY_SNAPSHOT``; a write waits for another
  process's lock (:func:`_begin_immediate`), and :meth:`_run` and :meth:`_tx` retry what is
  still busy, so ``database is locked`` never reaches user code.
* **WAL journal**: readers do not block the writer; ``synchronous=FULL`` by default
  (``?synchronous=normal`` in the URL trades the last commits on power loss for speed).
* **Versioned schema**: a meta table holds the schema version; newer-than-code or foreign
  databases are refused untouched.
* **Other processes are noticed in milliseconds.** SQLite has no notifications, but in WAL
  mode every commit, from any process, writes to the ``-wal`` file. A watcher thread wakes
  at each write to it (inotify on Linux; elsewhere it stats the file every
  :data:`WATCH_INTERVAL` seconds) and wakes the engine when its size, time or inode moved.
  After each of its own commits the store records them, so it is not woken by itself (a lock
  keeps the watcher from looking between a commit of ours and that record: it would take our
  commit for another process's, and wake every loop for nothing); while a commit of ours is
  written the inotify watch is muted, so that its thread does not wake a few times per
  commit to take the GIL from the writer (about 0.15 ms of an idle enqueue's latency,
  measured). A commit is visible only once its fsync is done, a moment after its last write:
  the watcher tells again 2, 20 and 200 ms later (:data:`WATCH_SETTLE`). A change it misses
  (two commits in one clock tick that leave the same size) is found by the engine's slow
  poll. The watch is on the folder: never ``open()`` a database's files beside SQLite, since
  closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's
  included, and that corrupts the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
import math
import os
import sqlite3
import threading
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

import aiosqlite
import anyio

from .._errors import ExecutionNotFound, JobNotFound, SchemaVersionError, StoreError
from .._models import (
    Category,
    Event,
    Execution,
    Job,
    LogRecord,
    Page,
    StepSpec,
    Transition,
)
from .._states import TERMINAL, WAITING, ExecutionStatus, JobStatus, LogLevel
from . import _common
from ._common import (
    dt as _dt,
    dumps as _dumps,
    event_from_row as _event,
    execution_from_row as _execution,
    job_from_row as _job,
    loads as _loads,
)
from ._filewatch import FileWrites
from .base import (
    EVERYTHING,
    Claim,
    ExecutionQuery,
    FireResult,
    JobQuery,
    LogQuery,
    NewExecution,
    NewJob,
    NodeInfo,
    Tick,
    WriteBatch,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence

    from .._types import ExecutionId, JobId
    from .base import Finish

T = TypeVar("T")
_S = ExecutionStatus
logger = logging.getLogger("asyncjobs.stores.sqlite")
WATCH_INTERVAL = 0.002
"""Seconds between two looks at the ``-wal`` file without inotify (see the module docstring);
with it, the least time between two wake-ups."""
WATCH_FALLBACK = 0.02
"""Seconds between two looks with inotify, for a write whose event was missed."""
WATCH_SETTLE = (0.002, 0.02, 0.2)
"""After a change, tell again after each of these delays in turn (seconds). A commit writes
its frames to the ``-wal`` file, then fsyncs it, and only then can readers see it; nothing
is written to the file at that moment. A slow fsync (milliseconds, on a busy disk) would
otherwise leave the last word to a wake-up that came too early."""
SCHEMA_VERSION = 3
MIN_SQLITE = (3, 35)
"""The oldest SQLite the store runs on: 3.35 brought ``RETURNING``, 3.33 ``UPDATE ... FROM``."""
_BUSY_RETRIES = 50
_BUSY_MS = 5000  # how long a write, or the setup, waits for another process's lock
_BUSY_SECONDS = _BUSY_MS / 1000
_ROWS_PER_STATEMENT = 500  # a batch's rows per UPDATE ... FROM (VALUES ...): 5,000 parameters

_EXEC_COLUMNS = (
    "id, job_id, step, spec, status, priority, attempt, progress, progress_message, result, "
    "error, created_at, scheduled_for, started_at, ended_at, node, pid"
)
_JOB_COLUMNS = (
    "id, name, category, status, schedule, steps, priority, shared, key, created_at, updated_at, "
    "next_fire_at, last_fire_at, state"
)
_INSERT_JOB = (
    f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({', '.join('?' * (_JOB_COLUMNS.count(',') + 1))})"
)
_EVENT_COLUMNS = "seq, at, kind, job_id, execution_id, status, progress, level, message, data"
_INSERT_STATE = (
    "INSERT INTO events (at, kind, job_id, execution_id, status) VALUES (?, 'state', ?, ?, ?)"
)
_INSERT_LOG = (
    "INSERT INTO events (at, kind, job_id, execution_id, level, message, data) "
    "VALUES (?, 'log', ?, ?, ?, ?, ?)"
)
_WAITING_SQL = "('scheduled', 'queued', 'retrying')"
_TERMINAL_SQL = "('completed', 'failed', 'cancelled')"


_Outcome = tuple[bool, Any]  # (True, result) or (False, the exception raised)


class _Write:
    """A write waiting for its group (see :meth:`SQLiteStore._tx`)."""

    __slots__ = ("args", "fn", "future")

    def __init__(
        self, fn: Callable[..., Any], args: tuple[Any, ...], future: asyncio.Future[Any]
    ) -> None:
        self.fn = fn
        self.args = args
        self.future = future


def _in_tx(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(conn, *args)`` in one write transaction (on the connection's thread)."""
    _begin_immediate(conn)
    try:
        result = fn(conn, *args)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _in_savepoint(
    conn: sqlite3.Connection, fn: Callable[..., Any], args: tuple[Any, ...]
) -> _Outcome:
    """Run ``fn(conn, *args)`` inside a transaction, undoing just its own writes if it raises."""
    conn.execute("SAVEPOINT write")
    try:
        result = fn(conn, *args)
    except Exception as exc:
        try:
            conn.execute("ROLLBACK TO write")
            conn.execute("RELEASE write")
        except sqlite3.Error:
            raise exc from None  # SQLite undid the whole transaction: the group fails with it
        return False, exc
    conn.execute("RELEASE write")
    return True, result


def _begin_immediate(conn: sqlite3.Connection) -> None:
    """``BEGIN IMMEDIATE``, waiting for another process's write lock in steps of 0.1 ms
    growing by a quarter each, not SQLite's own 1, 2, 5 ms...: a claim woken by another
    process's commit asks for the lock while that commit still holds it, and would sleep a
    whole millisecond or three past its end. Growing slowly, a wait overshoots the lock's
    release by at most a quarter of its length and 0.1 ms; the steps stop growing at 5 ms.
    After :data:`_BUSY_SECONDS`, ``database is locked`` as SQLite would say.
    (The connection's ``busy_timeout`` is 0 once it is set up: see :meth:`SQLiteStore._setup`.)
    """
    delay, deadline = 0.0001, time.monotonic() + _BUSY_SECONDS
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)  # on the connection's own thread, as SQLite's handler sleeps
        delay = min(delay * 1.25, 0.005)


def _in_read(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(conn, *args)`` in one read transaction: one snapshot for page and total."""
    conn.execute("BEGIN")
    try:
        return fn(conn, *args)
    finally:
        conn.execute("COMMIT")


class SQLiteStore:
    """A store in one SQLite file (see the module docstring)."""

    durable = True

    def __init__(self, path: str | Path, *, synchronous: str | None = None) -> None:
        text = str(path)
        if "?" in text:
            text, _, query = text.partition("?")
            for part in query.split("&"):
                name, _, value = part.partition("=")
                if name == "synchronous":
                    synchronous = value
                else:
                    raise StoreError(
                        f"unknown SQLite store option {name!r} in {path!r}; expected synchronous"
                    )
        sync = (synchronous or "full").upper()
        if sync not in ("FULL", "NORMAL", "EXTRA"):
            raise StoreError(f"synchronous must be full, normal or extra, got {synchronous!r}")
        self.path = Path(text)
        self.url = f"sqlite:///{text}"
        self._synchronous = sync
        self._db: aiosqlite.Connection | None = None
        self._watchers: list[Callable[[frozenset[str]], None]] = []
        self._watch_stop: threading.Event | None = None
        self._watch_thread: threading.Thread | None = None
        self._seen = (0, 0, 0)  # the -wal file after our last commit (or look)
        self._seen_lock = threading.Lock()  # held by a write and its record, or by a look
        self._watch_loop: asyncio.AbstractEventLoop | None = None
        self._watch_writes: FileWrites | None = None
        self._writes: list[_Write] = []  # waiting for the next group (see _tx)
        self._writing = False  # a group is on the thread, or about to be sent
        # Categories known to be in the file (the store never deletes one): a job in one of
        # them inserts no category row, one statement fewer per enqueue.
        self._categories: set[str] = set()

    # -- plumbing ------------------------------------------------------------------------

    def _open_db(self) -> aiosqlite.Connection:
        db = self._db
        if db is None or not db._running:
            raise StoreError(f"the SQLite store {self.url} is not open; use 'async with'")
        return db

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on the connection's thread: a read, or a write of its own
        (:meth:`_tx` is the way to write), retrying while the file is busy."""
        return await self._retrying(self._hop, fn, args)

    async def _tx(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in a write transaction, retrying while the file is busy.

        Group commit: writes that arrive while a transaction is on the thread wait for it,
        then go together in the next one, each in a savepoint of its own (one that raises is
        rolled back alone and its caller gets the error). A caller returns once the commit
        that holds its write is done, as with one transaction each; but a commit, fsync and
        all, is most of a write's cost, and a runtime that enqueues while its executions
        finish, or many requests enqueuing at once, share it."""
        return await self._retrying(self._grouped, fn, args)

    async def _retrying(
        self,
        attempt: Callable[[Callable[..., T], tuple[Any, ...]], Awaitable[T]],
        fn: Callable[..., T],
        args: tuple[Any, ...],
    ) -> T:
        for number in range(_BUSY_RETRIES):
            try:
                return await attempt(fn, args)
            except sqlite3.OperationalError as exc:
                message = str(exc)
                if "locked" not in message and "busy" not in message:
                    raise StoreError(f"SQLite error on {self.url}: {message}") from exc
                if number == _BUSY_RETRIES - 1:
                    raise StoreError(
                        f"the SQLite file {self.path} stayed locked by another process"
                    ) from exc
                await anyio.sleep(min(0.01 * (number + 1), 0.2))
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"SQLite error on {self.url}: {exc}") from exc
        raise AssertionError("unreachable")

    async def _hop(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        db = self._open_db()
        # aiosqlite has no public "run this function on your thread"; _execute is that,
        # and is how its own methods work. One hop per transaction is the point.
        return await db._execute(fn, db._conn, *args)  # type: ignore[no-untyped-call,no-any-return]

    async def _grouped(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        self._open_db()
        write = _Write(fn, args, asyncio.get_running_loop().create_future())
        self._writes.append(write)
        if not self._writing:
            self._flush()
        return await write.future  # type: ignore[no-any-return]

    def _flush(self) -> None:
        """Send the writes waiting (those whose callers still wait) to the thread as one
        transaction; :meth:`_flushed` answers them and sends the next group."""
        writes = [write for write in self._writes if not write.future.done()]
        self._writes = []
        self._writing = bool(writes)
        if not writes:
            return
        try:
            db = self._open_db()
        except StoreError as exc:
            self._writing = False
            for write in writes:
                write.future.set_exception(StoreError(str(exc)))
            return
        hop = asyncio.get_running_loop().create_future()
        hop.add_done_callback(functools.partial(self._flushed, writes))
        work = [(write.fn, write.args) for write in writes]
        # What _execute does, without a coroutine to await: the worker runs the function
        # and resolves the future on this loop.
        db._tx.put_nowait((hop, functools.partial(self._commit_group, db._conn, work)))

    def _flushed(self, writes: list[_Write], hop: asyncio.Future[list[_Outcome]]) -> None:
        error = hop.exception()
        outcomes = hop.result() if error is None else [(False, error)] * len(writes)
        for index, (write, (ok, value)) in enumerate(zip(writes, outcomes, strict=True)):
            if write.future.done():  # its caller was cancelled: the write was done anyway
                continue
            if ok:
                write.future.set_result(value)
            else:  # one exception object per caller: each raise adds to its traceback
                write.future.set_exception(value if index == 0 else copy.copy(value))
        # Not at once: the callers just answered run first, and what they write next (an
        # application's next enqueue, say) joins the writes that waited meanwhile.
        asyncio.get_running_loop().call_soon(self._flush)

    def _commit_group(
        self, conn: sqlite3.Connection, work: list[tuple[Callable[..., Any], tuple[Any, ...]]]
    ) -> list[_Outcome]:
        """On the connection's thread: run the writes in one transaction and commit it."""
        watching = self._watch_thread is not None
        writes = self._watch_writes
        with self._seen_lock if watching else contextlib.nullcontext():
            _begin_immediate(conn)
            try:
                # The lock is ours, nobody else commits: if the -wal file moved since the
                # watcher last looked, another process committed; say so.
                if watching and self._wal_state() != self._seen:
                    self._foreign_change()
                if writes is not None:
                    writes.mute()  # our own writes to the -wal file: no need to wake it
                if len(work) == 1:
                    fn, args = work[0]
                    outcomes: list[_Outcome] = [(True, fn(conn, *args))]
                else:
                    outcomes = [_in_savepoint(conn, fn, args) for fn, args in work]
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                if writes is not None:
                    writes.unmute()
            if watching:
                # Our own commit: the watcher must not take it for another process's. (A
                # commit of another process landing between our COMMIT and this stat goes
                # unseen until the next poll; one landing before our BEGIN is caught above.)
                self._seen = self._wal_state()
        return outcomes

    async def __aenter__(self) -> Self:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StoreError(
                f"the SQLite store needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer "
                f"(UPDATE ... RETURNING); this Python's sqlite3 module has SQLite "
                f"{sqlite3.sqlite_version}: use a Python built with a newer one"
            )
        db = aiosqlite.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._db = await db
        except sqlite3.Error as exc:
            # aiosqlite stops its thread without waiting: the thread then reports to this
            # loop, which must still be running (else "Event loop is closed" in the thread).
            await anyio.to_thread.run_sync(db._thread.join, 5.0)
            raise StoreError(f"cannot open the SQLite store {str(self.path)!r}: {exc}") from exc
        try:
            await self._db._execute(self._setup, self._db._conn)  # type: ignore[no-untyped-call]
        except BaseException:
            await self._db.close()
            self._db = None
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stop, thread = self._watch_stop, self._watch_thread
        self._watch_stop = self._watch_thread = self._watch_loop = None
        self._watchers.clear()
        writes, self._watch_writes = self._watch_writes, None
        if stop is not None and thread is not None:
            stop.set()
            if writes is not None:
                writes.wake()
            await anyio.to_thread.run_sync(thread.join)
        try:
            if self._db is not None:
                db, self._db = self._db, None
                await db.close()  # after the writes queued on its thread (they mute, unmute)
        finally:
            if writes is not None:
                writes.close()  # once both threads are done: nothing can touch a reused fd

    def _foreign_change(self) -> None:
        """Wake the watchers, on their loop (from any thread)."""
        loop = self._watch_loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is left to tell
                loop.call_soon_threadsafe(self._tell)

    def _wal_state(self) -> tuple[int, int, int]:
        """Return the ``-wal`` file's inode, size and time: a commit changes them."""
        try:
            st = os.stat(f"{self.path}-wal")
        except OSError:
            return (0, 0, 0)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    async def watch(self, callback: Callable[[frozenset[str]], None]) -> None:
        self._watchers.append(callback)
        if self._watch_thread is not None:
            return
        self._watch_loop = asyncio.get_running_loop()
        self._watch_stop = stop = threading.Event()
        self._seen = await anyio.to_thread.run_sync(self._wal_state)
        writes = await anyio.to_thread.run_sync(FileWrites, Path(f"{self.path}-wal"))
        self._watch_writes = writes
        # With inotify a write wakes the watcher at once and the poll is only a safety net.
        poll = WATCH_INTERVAL if not writes.precise else WATCH_FALLBACK

        def look() -> None:
            step, due = len(WATCH_SETTLE), math.inf  # the next telling again, and when
            while not stop.is_set():
                writes.wait(max(0.0, min(poll, due - time.monotonic())))
                if stop.is_set():
                    break
                with self._seen_lock:
                    state = self._wal_state()
                    changed = state != self._seen
                    self._seen = state
                if changed:
                    self._foreign_change()
                    step, due = 0, time.monotonic() + WATCH_SETTLE[0]
                    stop.wait(WATCH_INTERVAL)  # at most one wake-up per interval
                elif time.monotonic() >= due:
                    # The -wal file grows as a commit writes its frames, before the commit
                    # is visible to readers: tell again, a little later each time.
                    self._foreign_change()
                    step += 1
                    last = step == len(WATCH_SETTLE)
                    due = math.inf if last else time.monotonic() + WATCH_SETTLE[step]

        self._watch_thread = threading.Thread(target=look, name="asyncjobs sqlite watch")
        self._watch_thread.daemon = True
        self._watch_thread.start()

    def _tell(self) -> None:
        for callback in list(self._watchers):
            try:
                callback(frozenset({EVERYTHING}))
            except Exception:
                logger.exception("a store watcher failed")

    def _setup(self, conn: sqlite3.Connection) -> None:
        # Read before writing anything: a file that is not a database fails here, untouched.
        try:
            tables = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        except sqlite3.DatabaseError as exc:
            raise SchemaVersionError(
                f"{str(self.path)!r} is not a SQLite database ({exc}); "
                "it was left untouched: point the store at another file"
            ) from exc
        version = 0
        if "asyncjobs_meta" in tables:
            row = conn.execute(
                "SELECT value FROM asyncjobs_meta WHERE key = 'schema_version'"
            ).fetchone()
            version = int(row[0]) if row else 0
        elif tables:
            raise SchemaVersionError(
                f"{str(self.path)!r} is a SQLite database that asyncjobs did not create "
                f"(tables: {', '.join(sorted(tables)[:5])}); it was left untouched"
            )
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{str(self.path)!r} has asyncjobs schema version {version}, newer than this "
                f"code's {SCHEMA_VERSION}; upgrade asyncjobs (the file was left untouched)"
            )
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        if version < SCHEMA_VERSION:
            _in_tx(conn, self._migrate)
        # From here SQLite never sleeps for a lock: a write waits in _begin_immediate, in
        # finer steps; in WAL mode a read is not blocked by writers, and the rare read that
        # meets a lock (another process opening or closing the file) is retried by _run.
        # Two statements fewer per write, each a round trip through the GIL.
        conn.execute("PRAGMA busy_timeout = 0")

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        # Inside BEGIN IMMEDIATE: a second process migrating at once waits, then sees the
        # version the first one wrote and does nothing.
        conn.execute(
            "CREATE TABLE IF NOT EXISTS asyncjobs_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        row = conn.execute(
            "SELECT value FROM asyncjobs_meta WHERE key = 'schema_version'"
        ).fetchone()
        version = int(row[0]) if row else 0
        folder = resources.files("asyncjobs.stores") / "sql" / "sqlite"
        for number in range(version + 1, SCHEMA_VERSION + 1):
            script = (folder / f"{number:04d}_{_MIGRATIONS[number]}.sql").read_text()
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(
            "INSERT OR REPLACE INTO asyncjobs_meta (key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )

    # -- jobs ----------------------------------------------------------------------------

    async def add_job(self, job: NewJob, executions: Sequence[NewExecution]) -> tuple[Job, bool]:
        result = await self._tx(_add_job, job, executions, job.category not in self._categories)
        if result[1]:  # inserted and committed, its category with it
            self._categories.add(job.category)
        return result

    async def add_job_and_claim(
        self,
        job: NewJob,
        executions: Sequence[NewExecution],
        node: NodeInfo,
        limit: int,
        at: float,
        *,
        tasks: Collection[str] | None = None,
    ) -> tuple[Job, bool, list[Claim]]:
        known = _known(tasks)
        # Can this node run it (the claim's own rule on tasks)? Asked here, where the set is.
        runnable = len(executions) == 1 and (
            tasks is None
            or executions[0].spec.task in tasks
            or executions[0].spec.command is not None
        )
        new_category = job.category not in self._categories
        result = await self._tx(
            _add_job_and_claim, job, executions, node, limit, at, known, runnable, new_category
        )
        if result[1]:
            self._categories.add(job.category)
        return result

    async def add_executions(
        self, job_id: JobId, executions: Sequence[NewExecution], at: float
    ) -> list[Execution]:
        return await self._tx(_add_executions, job_id, executions)

    async def get_job(self, job_id: JobId) -> Job:
        return await self._run(_get_job, job_id)

    async def list_jobs(self, query: JobQuery) -> Page[Job]:
        limit, offset = _common.page_bounds(query.page, query.page_size)
        where, params = _job_filter(query)

        def run(conn: sqlite3.Connection) -> Page[Job]:
            rows = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs {where} "
                "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                (*params, limit, offset),
            ).fetchall()
            total = conn.execute(f"SELECT count(*) FROM jobs {where}", params).fetchone()[0]
            return Page(
                items=tuple(map(_job, rows)),
                page=query.page,
                page_size=query.page_size,
                total=total,
            )

        return await self._run(_in_read, run)

    async def count_jobs(self, query: JobQuery) -> int:
        where, params = _job_filter(query)

        def run(conn: sqlite3.Connection) -> int:
            return int(conn.execute(f"SELECT count(*) FROM jobs {where}", params).fetchone()[0])

        return await self._run(run)

    async def set_job_status(
        self, job_id: JobId, status: JobStatus, at: float
    ) -> tuple[Job, list[ExecutionId]]:
        return await self._tx(_set_job_status, job_id, status, at)

    async def due_jobs(self, at: float, limit: int) -> list[Job]:
        def run(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status = 'active' "
                "AND next_fire_at <= ? ORDER BY next_fire_at, id LIMIT ?",
                (at, limit),
            ).fetchall()
            return [_job(row) for row in rows]

        return await self._run(run)

    async def next_fire(self) -> float | None:
        def run(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT min(next_fire_at) FROM jobs "
                "WHERE status = 'active' AND next_fire_at IS NOT NULL"
            ).fetchone()
            return None if row[0] is None else float(row[0])

        return await self._run(run)

    async def fire(
        self,
        job_id: JobId,
        *,
        expected: float,
        ticks: Sequence[Tick],
        next_fire_at: float | None,
        overlap: str,
        at: float,
    ) -> FireResult:
        return await self._tx(_fire, job_id, expected, ticks, next_fire_at, overlap, at)

    async def purge(self, ended_before: float, logs_before: float) -> tuple[int, int]:
        return await self._tx(_purge, ended_before, logs_before)

    # -- executions ----------------------------------------------------------------------

    async def get_execution(self, execution_id: ExecutionId) -> Execution:
        return await self._run(_get_execution, execution_id)

    async def list_executions(self, query: ExecutionQuery) -> Page[Execution]:
        limit, offset = _common.page_bounds(query.page, query.page_size)
        where, params = _execution_filter(query)

        def run(conn: sqlite3.Connection) -> Page[Execution]:
            rows = conn.execute(
                f"SELECT {_EXEC_COLUMNS} FROM executions {where} ORDER BY id DESC LIMIT ? OFFSET ?",
                (*params, limit, offset),
            ).fetchall()
            total = conn.execute(f"SELECT count(*) FROM executions {where}", params).fetchone()[0]
            return Page(
                items=tuple(map(_execution, rows)),
                page=query.page,
                page_size=query.page_size,
                total=total,
            )

        return await self._run(_in_read, run)

    async def count_executions(self, query: ExecutionQuery) -> int:
        where, params = _execution_filter(query)

        def run(conn: sqlite3.Connection) -> int:
            return int(
                conn.execute(f"SELECT count(*) FROM executions {where}", params).fetchone()[0]
            )

        return await self._run(run)

    async def history(self, execution_id: ExecutionId) -> list[Transition]:
        def run(conn: sqlite3.Connection) -> list[Transition]:
            _get_execution(conn, execution_id)
            return [
                Transition(status=_S(status), at=_dt(at))
                for status, at in conn.execute(
                    "SELECT status, at FROM events WHERE execution_id = ? AND kind = 'state' "
                    "ORDER BY seq",
                    (execution_id,),
                )
            ]

        return await self._run(_in_read, run)

    async def claim(
        self, node: NodeInfo, limit: int, at: float, *, tasks: Collection[str] | None = None
    ) -> list[Claim]:
        if limit <= 0:
            return []
        known = _known(tasks)
        return await self._tx(_claim, node, limit, at, known)

    async def next_due(self) -> float | None:
        def run(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT min(scheduled_for) FROM executions INDEXED BY executions_waiting "
                "WHERE status IN ('scheduled', 'retrying')"
            ).fetchone()
            return None if row[0] is None else float(row[0])

        return await self._run(run)

    async def write(self, batch: WriteBatch) -> list[bool]:
        if not (batch.logs or batch.progress or batch.finishes):
            return []
        return await self._tx(_write, batch)

    async def write_and_claim(
        self,
        batch: WriteBatch,
        node: NodeInfo,
        limit: int,
        at: float,
        *,
        tasks: Collection[str] | None = None,
    ) -> tuple[list[bool], list[Claim]]:
        known = _known(tasks)
        return await self._tx(_write_and_claim, batch, node, limit, at, known)

    async def cancel_execution(
        self, execution_id: ExecutionId, at: float
    ) -> tuple[Execution, bool]:
        return await self._tx(_cancel_execution, execution_id, at)

    async def cancel_requests(self, node_id: str) -> list[tuple[ExecutionId, int]]:
        def run(conn: sqlite3.Connection) -> list[tuple[ExecutionId, int]]:
            return [
                (row[0], row[1])
                for row in conn.execute(
                    "SELECT id, run FROM executions "
                    "WHERE status = 'running' AND node = ? AND cancel_requested = 1",
                    (node_id,),
                )
            ]

        return await self._run(run)

    # -- nodes ---------------------------------------------------------------------------

    async def register_node(self, node: NodeInfo) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO nodes (id, host, pid, started_at, heartbeat_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (node.id, node.host, node.pid, node.started_at, node.heartbeat_at),
            )

        await self._tx(run)

    async def heartbeat(self, node_id: str, at: float) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute("UPDATE nodes SET heartbeat_at = ? WHERE id = ?", (at, node_id))
            return cursor.rowcount == 1

        return await self._tx(run)

    async def list_nodes(self) -> list[NodeInfo]:
        def run(conn: sqlite3.Connection) -> list[NodeInfo]:
            return [
                NodeInfo(id=r[0], host=r[1], pid=r[2], started_at=r[3], heartbeat_at=r[4])
                for r in conn.execute(
                    "SELECT id, host, pid, started_at, heartbeat_at FROM nodes ORDER BY started_at"
                )
            ]

        return await self._run(run)

    async def record_child(
        self, execution_id: ExecutionId, run: int, pid: int, started: str | None
    ) -> None:
        def run_(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE executions SET child_pid = ?, child_started = ? "
                "WHERE id = ? AND run = ? AND status = 'running'",
                (pid, started, execution_id, run),
            )

        await self._tx(run_)

    async def node_children(self, node_id: str) -> list[tuple[int, str | None]]:
        def run(conn: sqlite3.Connection) -> list[tuple[int, str | None]]:
            return [
                (row[0], row[1])
                for row in conn.execute(
                    "SELECT child_pid, child_started FROM executions "
                    "WHERE status = 'running' AND node = ? AND child_pid IS NOT NULL",
                    (node_id,),
                )
            ]

        return await self._run(run)

    async def recover_node(self, node_id: str, at: float) -> list[Execution]:
        return await self._tx(_recover_node, node_id, at)

    # -- logs, events, categories ---------------------------------------------------------

    async def list_logs(self, query: LogQuery) -> Page[LogRecord]:
        limit, offset = _common.page_bounds(query.page, query.page_size)
        clauses = ["kind = 'log'"]
        params: list[object] = []
        if query.execution_id is not None:
            clauses.append("execution_id = ?")
            params.append(query.execution_id)
        if query.job_id is not None:
            clauses.append("job_id = ?")
            params.append(query.job_id)
        if query.level is not None:
            clauses.append("level >= ?")
            params.append(int(query.level))
        where = "WHERE " + " AND ".join(clauses)

        def run(conn: sqlite3.Connection) -> Page[LogRecord]:
            if query.execution_id is not None:
                _get_execution(conn, query.execution_id)
            rows = conn.execute(
                f"SELECT seq, at, job_id, execution_id, level, message, data FROM events {where} "
                "ORDER BY seq LIMIT ? OFFSET ?",
                (*params, limit, offset),
            ).fetchall()
            total = conn.execute(f"SELECT count(*) FROM events {where}", params).fetchone()[0]
            items = tuple(
                LogRecord(
                    seq=r[0],
                    at=_dt(r[1]),
                    job_id=r[2],
                    execution_id=r[3],
                    level=LogLevel(r[4]),
                    message=r[5] or "",
                    data=_loads(r[6]) or {},
                )
                for r in rows
            )
            return Page(items=items, page=query.page, page_size=query.page_size, total=total)

        return await self._run(_in_read, run)

    async def events_after(
        self,
        seq: int,
        *,
        job_id: JobId | None = None,
        execution_id: ExecutionId | None = None,
        limit: int = 500,
    ) -> list[Event]:
        clauses = ["seq > ?"]
        params: list[object] = [seq]
        if job_id is not None:
            clauses.append("job_id = ?")
            params.append(job_id)
        if execution_id is not None:
            clauses.append("execution_id = ?")
            params.append(execution_id)
        sql = (
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(clauses)} "
            "ORDER BY seq LIMIT ?"
        )

        def run(conn: sqlite3.Connection) -> list[Event]:
            return [_event(row) for row in conn.execute(sql, (*params, limit))]

        return await self._run(run)

    async def last_seq(self) -> int:
        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT max(seq) FROM events").fetchone()
            return int(row[0] or 0)

        return await self._run(run)

    async def list_categories(self) -> list[Category]:
        def run(conn: sqlite3.Connection) -> list[Category]:
            return [
                Category(name=name, jobs=count)
                for name, count in conn.execute(
                    "SELECT c.name, (SELECT count(*) FROM jobs j "
                    "WHERE j.category = c.name AND j.status != 'deleted') "
                    "FROM categories c ORDER BY c.name"
                )
            ]

        return await self._run(run)


SQLiteStore.__module__ = "asyncjobs.stores"

_MIGRATIONS = {1: "init", 2: "limited_index", 3: "due_index"}


# -- the transactions, run on the connection's thread ---------------------------------------


def _get_job(conn: sqlite3.Connection, job_id: JobId) -> Job:
    row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(job_id)
    return _job(row)


def _get_execution(conn: sqlite3.Connection, execution_id: ExecutionId) -> Execution:
    row = conn.execute(
        f"SELECT {_EXEC_COLUMNS} FROM executions WHERE id = ?", (execution_id,)
    ).fetchone()
    if row is None:
        raise ExecutionNotFound(execution_id)
    return _execution(row)


def _job_filter(query: JobQuery) -> tuple[str, tuple[object, ...]]:
    clauses: list[str] = []
    params: list[object] = []
    if query.status is not None:
        clauses.append("status = ?")
        params.append(JobStatus(query.status).value)
    if query.name is not None:
        clauses.append("name = ?")
        params.append(query.name)
    if query.category is not None:
        prefix = query.category + "/"
        clauses.append("(category = ? OR substr(category, 1, ?) = ?)")
        params.extend((query.category, len(prefix), prefix))
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", tuple(params)


def _execution_filter(query: ExecutionQuery) -> tuple[str, tuple[object, ...]]:
    clauses: list[str] = []
    params: list[object] = []
    if query.job_id is not None:
        clauses.append("job_id = ?")
        params.append(query.job_id)
    if query.status is not None:
        clauses.append("status = ?")
        params.append(ExecutionStatus(query.status).value)
    if query.task is not None:
        clauses.append("task = ?")
        params.append(query.task)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", tuple(params)


def _add_job(
    conn: sqlite3.Connection,
    job: NewJob,
    executions: Sequence[NewExecution],
    new_category: bool = True,
    *,
    claimed: tuple[NodeInfo, float] | None = None,
) -> tuple[Job, bool]:
    """Insert the job and its executions; ``new_category``: whether its category (and its
    parents) may be missing from the file; ``claimed``: (node, when) they are claimed by,
    inserted running (see :func:`_add_job_and_claim`)."""
    if job.key is not None:
        row = conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE key = ? AND status IN ('active', 'paused')",
            (job.key,),
        ).fetchone()
        if row is not None:
            return _job(row), False
    schedule, steps, shared, state = _common.job_documents(job)
    row = (
        job.id,
        job.name,
        job.category,
        JobStatus.ACTIVE.value,
        schedule,
        steps,
        job.priority,
        shared,
        job.key,
        job.created_at,
        job.created_at,
        job.next_fire_at,
        None,
        state,
    )
    conn.execute(_INSERT_JOB, row)
    if new_category:
        conn.executemany(
            "INSERT OR IGNORE INTO categories (name, created_at) VALUES (?, ?)",
            [(name, job.created_at) for name in _common.category_chain(job.category)],
        )
    _insert_executions(conn, executions, claimed)
    # What was inserted is what is stored: no need to read it back, nor to decode the row.
    return _common.job_from_new(job), True


def _add_job_and_claim(
    conn: sqlite3.Connection,
    job: NewJob,
    executions: Sequence[NewExecution],
    node: NodeInfo,
    limit: int,
    at: float,
    known: str | None,
    runnable: bool,
    new_category: bool,
) -> tuple[Job, bool, list[Claim]]:
    if runnable and limit > 0 and _first_in_line(conn, executions[0], at):
        # What the claim would take is the new execution alone: insert it claimed, as the
        # claim would leave it (its 'queued' and 'running' events, run 1), without walking
        # the queue and rewriting the row and its indexes a moment after writing them.
        record, created = _add_job(conn, job, executions, new_category, claimed=(node, at))
        if not created:
            return record, False, []
        new = executions[0]
        # The row as inserted, in _EXEC_COLUMNS (its spec given decoded): no need to read it
        # back, nor to decode what was just encoded.
        row = (new.id, new.job_id, new.step, None, _S.RUNNING.value, new.priority, 1, 0.0, "",
               None, None, new.created_at, new.scheduled_for, at, None, node.id, node.pid)  # fmt: skip
        claim = Claim(
            execution=_execution(row, new.spec),
            run=1,
            spec=new.spec,
            shared=record.shared,
            schedule=record.schedule,
            job_state=record.state,
        )
        return record, True, [claim]
    record, created = _add_job(conn, job, executions, new_category)
    claims = _claim(conn, node, limit, at, known) if created and limit > 0 else []
    return record, created, claims


def _first_in_line(conn: sqlite3.Connection, new: NewExecution, at: float) -> bool:
    """Would a claim at ``at``, made right after ``new`` is inserted, take ``new`` and
    nothing else?

    True when it is due and unlimited, and nothing else is queued or waiting and due: a
    queued execution ahead of it would go first, and one behind it would fill the rest of
    the claim's limit. (A queued one this node cannot run makes it False too: then the
    claim itself decides.)"""
    if new.scheduled_for > new.created_at or new.scheduled_for > at:
        return False
    if new.spec.concurrency is not None:
        return False
    busy = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM executions INDEXED BY executions_queued "
        "WHERE status = 'queued') "
        "OR EXISTS (SELECT 1 FROM executions INDEXED BY executions_waiting "
        "WHERE status IN ('scheduled', 'retrying') AND scheduled_for <= ?)",
        (at,),
    ).fetchone()[0]
    return not busy


def _add_executions(
    conn: sqlite3.Connection, job_id: JobId, executions: Sequence[NewExecution]
) -> list[Execution]:
    _common.check_live_job(job_id, _get_job(conn, job_id).status)
    _insert_executions(conn, executions)
    return [_get_execution(conn, new.id) for new in executions]


def _insert_executions(
    conn: sqlite3.Connection,
    executions: Sequence[NewExecution],
    claimed: tuple[NodeInfo, float] | None = None,
) -> None:
    rows = []
    events: list[tuple[float | None, str, str, str]] = []
    node, at = claimed if claimed is not None else (None, None)
    for new in executions:
        status = _S.QUEUED if new.scheduled_for <= new.created_at else _S.SCHEDULED
        rows.append(
            (
                new.id,
                new.job_id,
                new.step,
                new.spec.task,
                _dumps(new.spec.to_json()),
                status.value if node is None else _S.RUNNING.value,
                new.priority,
                new.spec.concurrency,
                new.created_at,
                new.scheduled_for,
                0 if node is None else 1,
                at,
                None if node is None else node.id,
                None if node is None else node.pid,
            )
        )
        events.append((new.created_at, new.job_id, new.id, status.value))
        if node is not None:
            events.append((at, new.job_id, new.id, _S.RUNNING.value))
    conn.executemany(
        "INSERT INTO executions (id, job_id, step, task, spec, status, priority, concurrency, "
        "created_at, scheduled_for, run, started_at, node, pid) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.executemany(_INSERT_STATE, events)


def _set_job_status(
    conn: sqlite3.Connection, job_id: JobId, status: JobStatus, at: float
) -> tuple[Job, list[ExecutionId]]:
    job = _get_job(conn, job_id)
    if not _common.check_job_move(job_id, job.status, status):
        return job, []
    running: list[ExecutionId] = []
    if status in (JobStatus.STOPPED, JobStatus.DELETED):
        cancelled = conn.execute(
            "UPDATE executions SET status = 'cancelled', ended_at = ? "
            f"WHERE job_id = ? AND status IN {_WAITING_SQL} RETURNING id",
            (at, job_id),
        ).fetchall()
        conn.executemany(_INSERT_STATE, [(at, job_id, r[0], "cancelled") for r in cancelled])
        running = [
            r[0]
            for r in conn.execute(
                "UPDATE executions SET cancel_requested = 1 "
                "WHERE job_id = ? AND status = 'running' RETURNING id",
                (job_id,),
            )
        ]
    conn.execute(
        "UPDATE jobs SET status = ?, updated_at = ? WHERE id = ?", (status.value, at, job_id)
    )
    return _get_job(conn, job_id), running


def _claim(
    conn: sqlite3.Connection, node: NodeInfo, limit: int, at: float, known: str | None
) -> list[Claim]:
    promoted = conn.execute(
        "UPDATE executions INDEXED BY executions_waiting SET status = 'queued' "
        "WHERE status IN ('scheduled', 'retrying') AND scheduled_for <= ? RETURNING job_id, id",
        (at,),
    ).fetchall()
    if promoted:
        conn.executemany(_INSERT_STATE, [(at, job, eid, "queued") for job, eid in promoted])
    # Unlimited executions in claim order, then, per task with a concurrency limit, as many
    # as it has free; the best `limit` of all of them are claimed.
    claimable = (
        # The queue's own index, walked in claim order and left at the limit: without the
        # hint the planner takes executions_status and sorts the whole queue, every claim.
        "SELECT e.id, e.priority, e.scheduled_for FROM executions e INDEXED BY executions_queued "
        "WHERE e.status = 'queued' "
        "AND EXISTS (SELECT 1 FROM jobs j WHERE j.id = e.job_id AND j.status = 'active') "
    )
    known_params: tuple[str, ...] = ()
    if known is not None:  # only the tasks this node knows, and commands
        claimable += (
            "AND (e.task IN (SELECT value FROM json_each(?)) "
            "OR json_extract(e.spec, '$.command') IS NOT NULL) "
        )
        known_params = (known,)
    order = " ORDER BY e.priority, e.scheduled_for, e.id LIMIT ?"
    candidates = conn.execute(
        claimable + "AND e.concurrency IS NULL" + order, (*known_params, limit)
    ).fetchall()
    for task, cap in conn.execute(
        "SELECT task, min(concurrency) FROM executions INDEXED BY executions_limited "
        "WHERE status = 'queued' AND concurrency IS NOT NULL GROUP BY task"
    ).fetchall():
        busy = conn.execute(
            "SELECT count(*) FROM executions WHERE task = ? AND status = 'running'", (task,)
        ).fetchone()[0]
        if cap > busy:
            candidates += conn.execute(
                claimable + "AND e.task = ? AND e.concurrency IS NOT NULL" + order,
                (*known_params, task, min(cap - busy, limit)),
            ).fetchall()
    chosen = [c[0] for c in sorted(candidates, key=lambda c: (c[1], c[2], c[0]))[:limit]]
    if not chosen:
        return []
    rows = conn.execute(
        "UPDATE executions SET status = 'running', run = run + 1, started_at = ?, "
        "ended_at = NULL, node = ?, pid = ?, cancel_requested = 0 "
        f"WHERE id IN ({', '.join('?' * len(chosen))}) RETURNING {_EXEC_COLUMNS}, run",
        (at, node.id, node.pid, *chosen),
    ).fetchall()
    if not rows:
        return []
    # RETURNING gives no order: put the claims back in claim order.
    rows.sort(key=lambda r: (r[5], r[12], r[0]))
    conn.executemany(_INSERT_STATE, [(at, r[1], r[0], "running") for r in rows])
    job_ids = list({r[1] for r in rows})
    jobs: dict[str, tuple[Any, Any, Any]] = {}
    for start in range(0, len(job_ids), 500):
        chunk = job_ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for job_id, shared, schedule, state in conn.execute(
            f"SELECT id, shared, schedule, state FROM jobs WHERE id IN ({marks})", chunk
        ):
            jobs[job_id] = (_loads(shared), _loads(schedule), _loads(state))
    return _common.claims_from_rows(rows, jobs)


def _batches(rows: Sequence[Sequence[object]]) -> Iterator[tuple[str, list[object]]]:
    """The rows in chunks of ``_ROWS_PER_STATEMENT``: each chunk's ``VALUES`` list of
    placeholders, and its parameters."""
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        chunk = rows[start : start + _ROWS_PER_STATEMENT]
        row = f"({', '.join('?' * len(chunk[0]))})"
        yield ", ".join([row] * len(chunk)), [value for values in chunk for value in values]


def _finish_jobs(conn: sqlite3.Connection, ended: dict[str, float]) -> None:
    """Move one-off jobs that have no live execution left to ``finished`` (job id -> when)."""
    for marks, params in _batches(list(ended.items())):
        conn.execute(
            f"WITH f(id, at) AS (VALUES {marks}) "
            "UPDATE jobs SET status = 'finished', updated_at = f.at FROM f "
            "WHERE jobs.id = f.id AND jobs.status IN ('active', 'paused') "
            "AND json_extract(jobs.schedule, '$.kind') = 'once' "
            "AND NOT EXISTS (SELECT 1 FROM executions WHERE job_id = f.id "
            f"AND status NOT IN {_TERMINAL_SQL})",
            params,
        )


def _end_runs(conn: sqlite3.Connection, finishes: Sequence[Finish]) -> dict[tuple[str, int], str]:
    """End the runs of a batch, each fenced on its run, in one statement per
    ``_ROWS_PER_STATEMENT``; return the ones that applied: (execution id, run) -> job id."""
    ended: dict[tuple[str, int], str] = {}
    for marks, params in _batches(_common.finish_rows(finishes)):
        for execution_id, run, job_id in conn.execute(
            "WITH f(id, run, status, result, error, progress, message, ended_at, retry_at, more) "
            f"AS (VALUES {marks}) "
            "UPDATE executions SET status = f.status, result = f.result, error = f.error, "
            "progress = coalesce(f.progress, executions.progress), "
            "progress_message = coalesce(f.message, executions.progress_message), "
            "ended_at = f.ended_at, scheduled_for = coalesce(f.retry_at, executions.scheduled_for), "
            "attempt = executions.attempt + f.more FROM f "
            "WHERE executions.id = f.id AND executions.run = f.run "
            "AND executions.status = 'running' "
            "RETURNING executions.id, executions.run, executions.job_id",
            params,
        ):
            ended[execution_id, run] = job_id
    return ended


def _write(conn: sqlite3.Connection, batch: WriteBatch) -> list[bool]:
    if batch.logs:
        conn.executemany(
            _INSERT_LOG,
            [
                (
                    log.at,
                    log.job_id,
                    log.execution_id,
                    int(log.level),
                    log.message,
                    _dumps(log.data) if log.data else None,
                )
                for log in batch.logs
            ],
        )
    # The latest update per (execution, run), as on PostgreSQL: given two rows for one run,
    # UPDATE ... FROM would take either.
    updates = {(u.execution_id, u.run): u for u in batch.progress}
    applied_to: dict[tuple[str, int], str] = {}
    for marks, params in _batches(
        [(u.execution_id, u.run, u.progress, u.message) for u in updates.values()]
    ):
        for execution_id, run, job_id in conn.execute(
            f"WITH u(id, run, progress, message) AS (VALUES {marks}) "
            "UPDATE executions SET progress = u.progress, progress_message = u.message "
            "FROM u WHERE executions.id = u.id AND executions.run = u.run "
            "AND executions.status = 'running' "
            "RETURNING executions.id, executions.run, executions.job_id",
            params,
        ):
            applied_to[execution_id, run] = job_id
    conn.executemany(
        "INSERT INTO events (at, kind, job_id, execution_id, progress, message) "
        "VALUES (?, 'progress', ?, ?, ?, ?)",
        [
            (u.at, applied_to[key], u.execution_id, u.progress, u.message)
            for key, u in updates.items()
            if key in applied_to
        ],
    )
    applied: list[bool] = []
    ended_jobs: dict[str, float] = {}
    ended = _end_runs(conn, batch.finishes)
    states: list[tuple[float, str, str, str]] = []
    for finish in batch.finishes:
        job_id = ended.pop((finish.execution_id, finish.run), None)
        if job_id is None:
            applied.append(False)
            continue
        states.append((finish.at, job_id, finish.execution_id, finish.status.value))
        if finish.shared:
            current = conn.execute("SELECT shared FROM jobs WHERE id = ?", (job_id,)).fetchone()
            merged = {**_loads(current[0]), **finish.shared}
            conn.execute("UPDATE jobs SET shared = ? WHERE id = ?", (_dumps(merged), job_id))
        if finish.job is not None:
            job_update = finish.job
            conn.execute(
                "UPDATE jobs SET next_fire_at = ?, state = coalesce(?, state), "
                "status = CASE WHEN ? THEN 'finished' ELSE status END, "
                "updated_at = CASE WHEN ? THEN ? ELSE updated_at END "
                "WHERE id = ? AND status IN ('active', 'paused')",
                (
                    job_update.next_fire_at,
                    None if job_update.state is None else _dumps(job_update.state),
                    job_update.finished,
                    job_update.finished,
                    finish.at,
                    job_id,
                ),
            )
        if finish.status in TERMINAL:
            ended_jobs[job_id] = max(finish.at, ended_jobs.get(job_id, finish.at))
        applied.append(True)
    conn.executemany(_INSERT_STATE, states)
    _finish_jobs(conn, ended_jobs)
    return applied


def _known(tasks: Collection[str] | None) -> str | None:
    """The tasks a node runs as the claim's parameter (a JSON list), or None for all."""
    return None if tasks is None else _dumps(sorted(tasks))


def _write_and_claim(
    conn: sqlite3.Connection,
    batch: WriteBatch,
    node: NodeInfo,
    limit: int,
    at: float,
    known: str | None,
) -> tuple[list[bool], list[Claim]]:
    applied = _write(conn, batch) if batch.logs or batch.progress or batch.finishes else []
    return applied, _claim(conn, node, limit, at, known) if limit > 0 else []


def _cancel_execution(
    conn: sqlite3.Connection, execution_id: ExecutionId, at: float
) -> tuple[Execution, bool]:
    execution = _get_execution(conn, execution_id)
    if execution.status in WAITING:
        conn.execute(
            "UPDATE executions SET status = 'cancelled', ended_at = ? WHERE id = ?",
            (at, execution_id),
        )
        conn.execute(_INSERT_STATE, (at, execution.job_id, execution_id, "cancelled"))
        _finish_jobs(conn, {execution.job_id: at})
        return _get_execution(conn, execution_id), False
    if execution.status == _S.RUNNING:
        conn.execute("UPDATE executions SET cancel_requested = 1 WHERE id = ?", (execution_id,))
        return execution, True
    return execution, False


def _recover_node(conn: sqlite3.Connection, node_id: str, at: float) -> list[Execution]:
    rows = conn.execute(
        "SELECT id, job_id, spec, crashes, cancel_requested FROM executions "
        "WHERE status = 'running' AND node = ?",
        (node_id,),
    ).fetchall()
    ended_jobs: dict[str, float] = {}
    for execution_id, job_id, spec_text, crashes, cancel_requested in rows:
        spec = StepSpec.from_json(_loads(spec_text))
        status, error, message = _common.lost_worker_outcome(
            spec, crashes + 1, bool(cancel_requested), node_id
        )
        retrying = status == _S.RETRYING
        conn.execute(
            "UPDATE executions SET status = ?, crashes = crashes + 1, error = ?, "
            "ended_at = ?, scheduled_for = CASE WHEN ? THEN ? ELSE scheduled_for END, "
            "attempt = attempt + ? WHERE id = ?",
            (
                status.value,
                None if error is None else _dumps(error.to_json()),
                None if retrying else at,
                retrying,
                at,
                1 if retrying else 0,
                execution_id,
            ),
        )
        conn.execute(_INSERT_LOG, (at, job_id, execution_id, int(LogLevel.WARN), message, None))
        conn.execute(_INSERT_STATE, (at, job_id, execution_id, status.value))
        if not retrying:
            ended_jobs[job_id] = at
    _finish_jobs(conn, ended_jobs)
    conn.execute("DELETE FROM nodes WHERE id = ?", (node_id,))
    return [_get_execution(conn, row[0]) for row in rows]


def _fire(
    conn: sqlite3.Connection,
    job_id: JobId,
    expected: float,
    ticks: Sequence[Tick],
    next_fire_at: float | None,
    overlap: str,
    at: float,
) -> FireResult:
    row = conn.execute(
        # Within a microsecond: the caller's value went through a datetime.
        "SELECT last_fire_at FROM jobs WHERE id = ? AND status = 'active' "
        "AND abs(next_fire_at - ?) < 0.000001",
        (job_id, expected),
    ).fetchone()
    if row is None:
        return FireResult(status="stale")
    last: float | None = row[0]
    live = conn.execute(
        f"SELECT 1 FROM executions WHERE job_id = ? AND status NOT IN {_TERMINAL_SQL} LIMIT 1",
        (job_id,),
    ).fetchone()
    if live and overlap == "queue":
        return FireResult(status="busy")
    fired: list[float] = []
    latest = last
    for tick in ticks:
        if last is not None and tick.at <= last:
            continue
        latest = tick.at if latest is None else max(latest, tick.at)
        # The unique (job, tick) row is the guarantee: a tick fires once, whoever fires it.
        inserted = conn.execute(
            "INSERT OR IGNORE INTO ticks (job_id, tick) VALUES (?, ?)", (job_id, tick.at)
        ).rowcount
        if inserted and not (live and overlap == "skip"):
            _insert_executions(conn, tick.executions)
            fired.append(tick.at)
    conn.execute(
        "UPDATE jobs SET next_fire_at = ?, last_fire_at = ?, updated_at = ? WHERE id = ?",
        (next_fire_at, latest, at, job_id),
    )
    if live and overlap == "skip":
        return FireResult(status="skipped")
    return FireResult(status="fired", fired=tuple(fired))


def _purge(conn: sqlite3.Connection, ended_before: float, logs_before: float) -> tuple[int, int]:
    gone = [
        row[0]
        for row in conn.execute(
            f"SELECT id FROM executions WHERE status IN {_TERMINAL_SQL} AND ended_at < ?",
            (ended_before,),
        )
    ]
    logs = 0
    for start in range(0, len(gone), 500):
        chunk = gone[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        logs += conn.execute(
            f"DELETE FROM events WHERE execution_id IN ({marks}) AND kind = 'log'", chunk
        ).rowcount
        conn.execute(f"DELETE FROM events WHERE execution_id IN ({marks})", chunk)
        conn.execute(f"DELETE FROM executions WHERE id IN ({marks})", chunk)
    logs += conn.execute(
        "DELETE FROM events WHERE kind = 'log' AND at < ?", (logs_before,)
    ).rowcount
    ended = [
        row[0]
        for row in conn.execute(
            "SELECT id FROM jobs j WHERE status IN ('finished', 'stopped', 'deleted') "
            "AND updated_at < ? AND NOT EXISTS (SELECT 1 FROM executions e WHERE e.job_id = j.id)",
            (ended_before,),
        )
    ]
    conn.executemany("DELETE FROM ticks WHERE job_id = ?", [(j,) for j in ended])
    conn.executemany("DELETE FROM jobs WHERE id = ?", [(j,) for j in ended])
    return len(gone), logs
