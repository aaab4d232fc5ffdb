"""The PostgreSQL store: many nodes on one database, claims that never collide.

How it is built, and why:

* **Its own schema.** Every table lives in one PostgreSQL schema (default ``asyncjobs``;
  ``?schema=name`` in the URL or ``schema=`` picks another), reached through the
  connections' ``search_path``. A version table there says which migrations ran; they run at
  start under an advisory lock, so two runtimes starting at once do not race, and a schema
  newer than this code (or a schema asyncjobs did not create) is refused untouched.
* **Claims** are one statement, ``UPDATE ... WHERE id IN (SELECT ... ORDER BY priority,
  scheduled_for, id FOR UPDATE SKIP LOCKED LIMIT n) RETURNING ...``: claimers on any number of
  nodes skip each other's rows instead of waiting for them, and never take one row twice.
* **Fencing** as in SQLite: every write that ends or updates a running execution says
  ``WHERE run = $n AND status = 'running'``.
* **Lock order** is jobs, then executions, then the events lock, in every transaction, so
  that writers on different nodes do not deadlock (a deadlock PostgreSQL still detects is
  retried).
* **Events commit in sequence order.** Each transaction inserts its events last, holding a
  transaction-level advisory lock until it commits; a reader that has seen event N can never
  later find a smaller one committed (with plain identity values, a slow transaction could
  commit N-1 after N was read, and a follower would skip it for ever).
* **Ticks** are rows with the primary key (job, tick), inserted ``ON CONFLICT DO NOTHING``
  after the job's row is locked and its ``next_fire_at`` checked: a tick fires once, whichever
  node fires it.
* **Wake-ups.** Transactions that add claimable work, change schedules or write events send
  a small ``NOTIFY`` on the store's channel; :meth:`PostgresStore.watch` listens on one
  connection and tells the engine, so idle nodes react at once (their slow poll stays, for a
  notification lost with a connection).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
from contextlib import asynccontextmanager, suppress
from importlib import resources
from typing import TYPE_CHECKING, Any, Self, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import asyncpg

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
from .base import (
    EVERYTHING,
    SCHEDULE,
    WORK,
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
    from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence

    from .._types import ExecutionId, JobId
    from .base import Finish

T = TypeVar("T")
_S = ExecutionStatus
logger = logging.getLogger("asyncjobs.stores.postgres")

SCHEMA_VERSION = 3
DEFAULT_SCHEMA = "asyncjobs"
_MIGRATIONS = {1: "init", 2: "limited_index", 3: "due_index"}
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")
_RETRIES = 20
_CONNECTION_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
_END_WAIT = 10.0  # seconds a transaction's end may take once its caller was cancelled

_MAX_PAYLOAD = 7000  # PostgreSQL's limit is 8000 bytes

_EXEC_COLUMNS = (
    "id, job_id, step, spec, status, priority, attempt, progress, progress_message, result, "
    "error, created_at, scheduled_for, started_at, ended_at, node, pid"
)
_CLAIMED_COLUMNS = (
    ", ".join(f"e.{column.strip()}" for column in _EXEC_COLUMNS.split(","))
    + ", e.run, j.shared, j.schedule, j.state"
)
"""A claim's row: the execution (``_EXEC_COLUMNS``), its run, and its job's shared, schedule
and state (see :func:`_common.claims_from_rows`)."""
_JOB_COLUMNS = (
    "id, name, category, status, schedule, steps, priority, shared, key, created_at, updated_at, "
    "next_fire_at, last_fire_at, state"
)
_JOB_FIELDS = _JOB_COLUMNS.split(", ")
_EVENT_COLUMNS = "seq, at, kind, job_id, execution_id, status, progress, level, message, data"
_WAITING_SQL = "('scheduled', 'queued', 'retrying')"
_TERMINAL_SQL = "('completed', 'failed', 'cancelled')"


def _add_job_statement(*, claimed: bool) -> str:
    """One statement that adds a job with its executions (see PostgresStore.add_job).

    $1-$11 the job, $12 its categories, $13-$22 its executions' columns (see
    _execution_columns), $23-$25 the wake-up (see PostgresStore._wake). Every part reads the
    job's row: with a live job holding the key, nothing is inserted and no row comes back.
    As in _flush, no event row draws its seq before the events lock is taken.

    ``claimed``: $26-$28 are (when, node id, pid); the one execution is inserted running, as
    a claim would leave it, but only if a claim would take it alone (nothing committed is
    queued, or waiting and due; see _may_be_first); else nothing is inserted. The row
    returned is the job's, then the claimed execution's (``_EXEC_COLUMNS``, ``run``).
    """
    job = (
        "SELECT $1::text, $2::text, $3::text, 'active', $4::json, $5::json, $6::int, $7::json, "
        "$8::text, $9::float8, $9::float8, $10::float8, NULL::float8, $11::json"
    )
    if claimed:
        busy = (
            "busy AS (SELECT EXISTS (SELECT 1 FROM executions WHERE status = 'queued') "
            "OR EXISTS (SELECT 1 FROM executions WHERE status IN ('scheduled', 'retrying') "
            "AND scheduled_for <= $26::float8) AS b), "
        )
        job += " FROM busy WHERE NOT busy.b"
        status, run = "'running'", "1, $26::float8, $27::text, $28::int"
        returning, result = f" RETURNING {_EXEC_COLUMNS}, run", "SELECT * FROM j, e"
        # Its 'queued' event, then its 'running' one.
        events = (
            "SELECT CASE k.n WHEN 1 THEN u.created_at ELSE $26::float8 END, 'state', u.job_id, "
            "u.id, CASE k.n WHEN 1 THEN u.status ELSE 'running' END "
            "FROM wake, u, (VALUES (1), (2)) AS k(n) ORDER BY u.id, k.n"
        )
    else:
        busy, status, run, returning, result = (
            "",
            "u.status",
            "0, NULL::float8, NULL::text, NULL::int",
            "",
            "SELECT * FROM j",
        )
        events = "SELECT u.created_at, 'state', u.job_id, u.id, u.status FROM wake, u"
    return (
        f"WITH {busy}j AS (INSERT INTO jobs ({_JOB_COLUMNS}) {job} ON CONFLICT (key) "
        "WHERE key IS NOT NULL AND status IN ('active', 'paused') DO NOTHING "
        f"RETURNING {_JOB_COLUMNS}), "
        "c AS (INSERT INTO categories (name, created_at) SELECT unnest($12::text[]), $9 FROM j "
        "ON CONFLICT (name) DO NOTHING), "
        "u AS (SELECT * FROM unnest($13::text[], $14::text[], $15::int[], $16::text[], "
        "$17::text[], $18::text[], $19::int[], $20::int[], $21::float8[], $22::float8[]) "
        "AS u(id, job_id, step, task, spec, status, priority, concurrency, created_at, "
        "scheduled_for)), "
        "e AS (INSERT INTO executions (id, job_id, step, task, spec, status, priority, "
        "concurrency, created_at, scheduled_for, run, started_at, node, pid) "
        f"SELECT u.id, u.job_id, u.step, u.task, u.spec::json, {status}, u.priority, "
        f"u.concurrency, u.created_at, u.scheduled_for, {run} FROM j, u{returning}), "
        "wake AS MATERIALIZED (SELECT pg_advisory_xact_lock($23), pg_notify($24, $25) FROM j), "
        f"ev AS (INSERT INTO events (at, kind, job_id, execution_id, status) {events}) "
        f"{result}"
    )


_ADD_JOB = _add_job_statement(claimed=False)
_ADD_JOB_CLAIMED = _add_job_statement(claimed=True)


def _text(value: str) -> str:
    """PostgreSQL text cannot hold NUL: a log line with one keeps the rest, marked."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def lock_key(schema: str, name: str) -> int:
    """Return the 64-bit advisory lock key of ``name`` in ``schema`` (stable across runs)."""
    digest = hashlib.blake2b(f"asyncjobs:{schema}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def split_url(url: str, schema: str | None = None) -> tuple[str, str, str]:
    """Return ``(dsn for asyncpg, schema, URL without the password)`` of a store URL.

    :raises InvalidStoreURL: naming the URL if the schema name is not a plain identifier
    """
    from .._errors import InvalidStoreURL

    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    rest = [(k, v) for k, v in query if k != "schema"]
    given = [v for k, v in query if k == "schema"]
    if given:
        schema = given[-1]
    schema = DEFAULT_SCHEMA if schema is None else schema
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise InvalidStoreURL(
            f"invalid PostgreSQL schema name {schema!r} in {_without_password(url)!r}; expected "
            "lower-case letters, digits and '_', not starting with a digit, at most 48 long"
        )
    dsn = urlunsplit(parts._replace(query=urlencode(rest)))
    public = _without_password(urlunsplit(parts._replace(query=urlencode(query))))
    return dsn, schema, public


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[2]}"))


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing (asyncpg still rolls back an open transaction)."""


@asynccontextmanager
async def _transaction(conn: asyncpg.Connection, **options: Any) -> AsyncIterator[None]:
    """``conn.transaction(**options)`` whose end a cancellation does not cut short.

    A stop or a timeout may cancel a call while its statement runs at the server: asyncpg
    cancels the statement, and the cancellation would then cancel the ROLLBACK after it too.
    The pool would roll back when it takes the connection back, and log "Resetting
    connection with an active transaction" at ERROR through the loop, at every such cut. A
    COMMIT cut short would leave its outcome unknown. Both are shielded, for at most
    ``_END_WAIT`` seconds (a server that stopped answering is a :class:`StoreError`); so is
    the BEGIN, which asyncpg counts as the connection's transaction before it is sent.
    """
    transaction = conn.transaction(**options)
    with anyio.move_on_after(_END_WAIT, shield=True) as beginning:
        await transaction.start()
    if beginning.cancelled_caught:
        raise StoreError(f"PostgreSQL did not answer a BEGIN within {_END_WAIT:g}s")
    try:
        yield
    except BaseException:
        with anyio.move_on_after(_END_WAIT, shield=True), suppress(*_CONNECTION_ERRORS):
            # What went wrong is the error raised; a broken connection's pool drops it.
            await transaction.rollback()
        raise
    with anyio.move_on_after(_END_WAIT, shield=True) as ending:
        await transaction.commit()
    if ending.cancelled_caught:
        raise StoreError(f"PostgreSQL did not answer a COMMIT within {_END_WAIT:g}s")


class _Tx:
    """One transaction: its connection, and the events and wake-ups it writes last."""

    __slots__ = ("conn", "events", "keys")

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.events: list[tuple[Any, ...]] = []
        self.keys: set[str] = set()

    def state(self, at: float, job_id: str, execution_id: str, status: str) -> None:
        self.events.append((at, "state", job_id, execution_id, status, None, None, None, None))
        self.keys.update((job_id, execution_id))

    def log(
        self,
        at: float,
        job_id: str,
        execution_id: str,
        level: int,
        message: str,
        data: str | None,
    ) -> None:
        self.events.append((at, "log", job_id, execution_id, None, None, level, message, data))
        self.keys.add(job_id)

    def progress(
        self, at: float, job_id: str, execution_id: str, progress: float, message: str
    ) -> None:
        self.events.append(
            (at, "progress", job_id, execution_id, None, progress, None, message, None)
        )
        self.keys.add(job_id)


class PostgresStore:
    """A store in a PostgreSQL database (see the module docstring).

    :param url: ``postgresql://user:password@host:port/database`` (``postgres://`` too);
        ``?schema=name`` picks the schema, other query options go to asyncpg
    :param schema: the schema, if the URL does not name one (default ``asyncjobs``)
    :param min_connections: connections the pool keeps open
    :param max_connections: most connections the pool opens
    :param connect_timeout: seconds to wait for the server when connecting
    """

    durable = True

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        min_connections: int = 1,
        max_connections: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        self._dsn, self.schema, self.url = split_url(url, schema)
        self._min = min_connections
        self._max = max_connections
        self._timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None
        self._channel = f"asyncjobs.{self.schema}"
        self._events_lock = lock_key(self.schema, "events")
        self._token = secrets.token_hex(4)
        self._listener: asyncpg.Connection | None = None
        self._watchers: list[Callable[[frozenset[str]], None]] = []
        self._relisten: asyncio.Task[None] | None = None
        self._closing = False

    # -- plumbing ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._closing = False
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min,
                max_size=self._max,
                timeout=self._timeout,
                server_settings={"search_path": self.schema, "application_name": "asyncjobs"},
                # No session state to reset between uses (search_path is a startup setting,
                # locks are per transaction, LISTEN has its own connection): asyncpg's default
                # reset is one more round trip per transaction.
                reset=_keep_session,
            )
        except (*_CONNECTION_ERRORS, TimeoutError) as exc:
            raise StoreError(f"cannot connect to the PostgreSQL store {self.url}: {exc}") from exc
        try:
            await self._setup()
        except BaseException:
            await self._pool.close()
            self._pool = None
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing = True
        if self._relisten is not None:
            self._relisten.cancel()
            self._relisten = None
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()
        self._watchers.clear()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _require(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError(f"the PostgreSQL store {self.url} is not open; use 'async with'")
        return self._pool

    async def _setup(self) -> None:
        pool = self._require()
        async with pool.acquire() as conn:
            # One migrator at a time per schema; the others wait, then find nothing to do.
            key = lock_key(self.schema, "migrate")
            await conn.execute("SELECT pg_advisory_lock($1)", key)
            try:
                await self._migrate(conn)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", key)

    async def _migrate(self, conn: asyncpg.Connection) -> None:
        tables = {
            row[0]
            for row in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = $1", self.schema
            )
        }
        version = 0
        if "asyncjobs_meta" in tables:
            version = int(
                await conn.fetchval("SELECT value FROM asyncjobs_meta WHERE key = 'schema_version'")
                or 0
            )
        elif tables:
            raise SchemaVersionError(
                f"the schema {self.schema!r} of {self.url} holds tables that asyncjobs did not "
                f"create ({', '.join(sorted(tables)[:5])}); it was left untouched: "
                "choose another schema with ?schema=name"
            )
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the schema {self.schema!r} of {self.url} has asyncjobs schema version "
                f"{version}, newer than this code's {SCHEMA_VERSION}; upgrade asyncjobs "
                "(the schema was left untouched)"
            )
        if version == SCHEMA_VERSION:
            return
        folder = resources.files("asyncjobs.stores") / "sql" / "postgres"
        scripts = [
            await asyncio.to_thread((folder / f"{number:04d}_{_MIGRATIONS[number]}.sql").read_text)
            for number in range(version + 1, SCHEMA_VERSION + 1)
        ]
        async with _transaction(conn):
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS asyncjobs_meta (key text PRIMARY KEY, value text NOT NULL)"
            )
            for script in scripts:
                await conn.execute(script)
            await conn.execute(
                "INSERT INTO asyncjobs_meta (key, value) VALUES ('schema_version', $1) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                str(SCHEMA_VERSION),
            )

    async def _transact(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(tx, *args)`` in one transaction, then write its events and wake-ups.

        A deadlock or serialization failure (PostgreSQL aborted us to let another
        transaction through) is retried; connection failures become :class:`StoreError`.
        """
        pool = self._require()
        for attempt in range(_RETRIES):
            try:
                async with pool.acquire() as conn, _transaction(conn):
                    tx = _Tx(conn)
                    result = await fn(tx, *args)
                    await self._flush(tx)
                return result
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                if attempt == _RETRIES - 1:
                    raise
                await asyncio.sleep(0.001 * (attempt + 1))
            except _CONNECTION_ERRORS as exc:
                raise StoreError(f"PostgreSQL error on {self.url}: {exc}") from exc
        raise AssertionError("unreachable")

    async def _read(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in one read-only snapshot (a page and its total agree)."""
        pool = self._require()
        try:
            async with (
                pool.acquire() as conn,
                _transaction(conn, isolation="repeatable_read", readonly=True),
            ):
                return await fn(conn, *args)
        except _CONNECTION_ERRORS as exc:
            raise StoreError(f"PostgreSQL error on {self.url}: {exc}") from exc

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            result: list[asyncpg.Record] = await self._require().fetch(sql, *args)
        except _CONNECTION_ERRORS as exc:
            raise StoreError(f"PostgreSQL error on {self.url}: {exc}") from exc
        return result

    async def _flush(self, tx: _Tx) -> None:
        """Insert the transaction's events and send its wake-up, last, under the events lock."""
        if not tx.events and not tx.keys:
            return
        # The lock is held until commit: events commit in the order their seq was drawn.
        wake = self._wake(tx.keys)
        if not tx.events:
            await tx.conn.execute("SELECT pg_advisory_xact_lock($1), pg_notify($2, $3)", *wake)
            return
        # One statement: no row reaches the INSERT, which draws its seq, before the lock's
        # one row is made, so the lock is taken before the first seq is drawn.
        columns = list(zip(*tx.events, strict=True))
        await tx.conn.execute(
            "WITH wake AS MATERIALIZED (SELECT pg_advisory_xact_lock($1), pg_notify($2, $3)) "
            "INSERT INTO events (at, kind, job_id, execution_id, status, progress, level, "
            "message, data) SELECT u.at, u.kind, u.job_id, u.execution_id, u.status, u.progress, "
            "u.level, u.message, u.data::json FROM wake, unnest($4::float8[], $5::text[], "
            "$6::text[], $7::text[], $8::text[], $9::float8[], $10::int[], $11::text[], "
            "$12::text[]) AS u(at, kind, job_id, execution_id, status, progress, level, message, "
            "data)",
            *wake,
            *columns,
        )

    def _wake(self, keys: Collection[str]) -> tuple[int, str, str]:
        """The events lock, the channel and the payload that say ``keys`` changed: the
        arguments of ``pg_advisory_xact_lock($1), pg_notify($2, $3)``."""
        payload = ",".join(sorted(keys))
        if len(payload) > _MAX_PAYLOAD:
            payload = EVERYTHING
        return self._events_lock, self._channel, f"{self._token}|{payload}"

    # -- wake-ups --------------------------------------------------------------------------

    async def watch(self, callback: Callable[[frozenset[str]], None]) -> None:
        self._require()
        self._watchers.append(callback)
        if self._listener is None:
            try:
                await self._listen()
            except (*_CONNECTION_ERRORS, TimeoutError) as exc:
                raise StoreError(
                    f"cannot listen on the PostgreSQL store {self.url}: {exc}"
                ) from exc

    async def _listen(self) -> None:
        # A connection of its own, outside the pool: LISTEN lasts as long as the session.
        conn = await asyncpg.connect(
            self._dsn,
            timeout=self._timeout,
            server_settings={"search_path": self.schema, "application_name": "asyncjobs listen"},
        )
        try:
            await conn.add_listener(self._channel, self._on_notify)
        except BaseException:
            # Cut short (a caller's cancel) or failed: nobody else holds this connection.
            conn.terminate()
            raise
        conn.add_termination_listener(self._on_lost)
        self._listener = conn

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        token, _, text = payload.partition("|")
        if token == self._token:
            return  # our own change: the engine already knows
        self._tell(frozenset(text.split(",")) if text else frozenset({EVERYTHING}))

    def _tell(self, keys: frozenset[str]) -> None:
        for callback in list(self._watchers):
            try:
                callback(keys)
            except Exception:
                logger.exception("a store watcher failed")

    def _on_lost(self, conn: object) -> None:
        if self._closing or self._listener is not conn:
            return
        self._listener = None
        self._relisten = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.1
        while not self._closing:
            try:
                await self._listen()
            except (*_CONNECTION_ERRORS, TimeoutError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            # Whatever was notified while we were away is lost: say everything changed.
            self._tell(frozenset({EVERYTHING}))
            return

    # -- jobs ----------------------------------------------------------------------------

    async def add_job(self, job: NewJob, executions: Sequence[NewExecution]) -> tuple[Job, bool]:
        # One statement, its own transaction: 1 round trip where _add_job takes 6. When a
        # live job has the key it inserts nothing, and _add_job finds that job (or, if it
        # ended meanwhile, inserts this one).
        rows = await self._add_at_once(_ADD_JOB, job, executions, {WORK} if executions else set())
        if rows:  # inserted: the job is what was inserted, no need to decode the row
            return _common.job_from_new(job), True
        return await self._transact(_add_job, job, executions)

    async def _add_at_once(
        self,
        statement: str,
        job: NewJob,
        executions: Sequence[NewExecution],
        keys: set[str],
        *more: object,
    ) -> list[asyncpg.Record]:
        """Run one of the statements of _add_job_statement; ``keys``: the wake-up's keys
        beyond the job's and its executions' own."""
        keys = {*keys, job.id, *(new.id for new in executions)}
        if job.next_fire_at is not None:
            keys.add(SCHEDULE)
        return await self._fetch(
            statement,
            *_job_values(job),
            _common.category_chain(job.category),
            *_execution_columns(executions),
            *self._wake(keys),
            *more,
        )

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
        # Can this node run it (the claim's own rule on tasks)? Asked here, where the set is.
        runnable = len(executions) == 1 and (
            tasks is None
            or executions[0].spec.task in tasks
            or executions[0].spec.command is not None
        )
        if runnable and limit > 0 and _may_be_first(executions[0], at):
            # One statement inserts it claimed if the claim would take it alone: 1 round
            # trip, where the transaction below takes 11 (the claim's 6 among them). If not,
            # or if a live job has the key, it inserts nothing, and the transaction decides.
            rows = await self._add_at_once(
                _ADD_JOB_CLAIMED, job, executions, set(), at, node.id, node.pid
            )
            if rows:
                row = rows[0]
                record = _common.job_from_new(job)
                claims = _common.claims_from_rows(
                    [row[len(_JOB_FIELDS) :]],
                    {job.id: (record.shared, record.schedule, record.state)},
                )
                return record, True, claims
        known = _known(tasks)
        return await self._transact(
            _add_job_and_claim, job, executions, node, limit, at, self.schema, known
        )

    async def add_executions(
        self, job_id: JobId, executions: Sequence[NewExecution], at: float
    ) -> list[Execution]:
        return await self._transact(_add_executions, job_id, executions)

    async def get_job(self, job_id: JobId) -> Job:
        rows = await self._fetch(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = $1", job_id)
        if not rows:
            raise JobNotFound(job_id)
        return _job(rows[0])

    async def list_jobs(self, query: JobQuery) -> Page[Job]:
        limit, offset = _common.page_bounds(query.page, query.page_size)
        where, params = _job_filter(query)
        n = len(params)

        async def run(conn: asyncpg.Connection) -> Page[Job]:
            rows = await conn.fetch(
                f"SELECT {_JOB_COLUMNS} FROM jobs {where} "
                f"ORDER BY created_at DESC, id DESC LIMIT ${n + 1} OFFSET ${n + 2}",
                *params,
                limit,
                offset,
            )
            total = await conn.fetchval(f"SELECT count(*) FROM jobs {where}", *params)
            return Page(
                items=tuple(map(_job, rows)),
                page=query.page,
                page_size=query.page_size,
                total=total,
            )

        return await self._read(run)

    async def count_jobs(self, query: JobQuery) -> int:
        where, params = _job_filter(query)
        rows = await self._fetch(f"SELECT count(*) FROM jobs {where}", *params)
        return int(rows[0][0])

    async def set_job_status(
        self, job_id: JobId, status: JobStatus, at: float
    ) -> tuple[Job, list[ExecutionId]]:
        return await self._transact(_set_job_status, job_id, status, at)

    async def due_jobs(self, at: float, limit: int) -> list[Job]:
        rows = await self._fetch(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status = 'active' "
            "AND next_fire_at <= $1 ORDER BY next_fire_at, id LIMIT $2",
            at,
            limit,
        )
        return [_job(row) for row in rows]

    async def next_fire(self) -> float | None:
        rows = await self._fetch(
            "SELECT min(next_fire_at) FROM jobs "
            "WHERE status = 'active' AND next_fire_at IS NOT NULL"
        )
        return None if rows[0][0] is None else float(rows[0][0])

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
        return await self._transact(_fire, job_id, expected, ticks, next_fire_at, overlap, at)

    async def purge(self, ended_before: float, logs_before: float) -> tuple[int, int]:
        return await self._transact(_purge, ended_before, logs_before)

    # -- executions ----------------------------------------------------------------------

    async def get_execution(self, execution_id: ExecutionId) -> Execution:
        rows = await self._fetch(
            f"SELECT {_EXEC_COLUMNS} FROM executions WHERE id = $1", execution_id
        )
        if not rows:
            raise ExecutionNotFound(execution_id)
        return _execution(rows[0])

    async def list_executions(self, query: ExecutionQuery) -> Page[Execution]:
        limit, offset = _common.page_bounds(query.page, query.page_size)
        where, params = _execution_filter(query)
        n = len(params)

        async def run(conn: asyncpg.Connection) -> Page[Execution]:
            rows = await conn.fetch(
                f"SELECT {_EXEC_COLUMNS} FROM executions {where} "
                f"ORDER BY id DESC LIMIT ${n + 1} OFFSET ${n + 2}",
                *params,
                limit,
                offset,
            )
            total = await conn.fetchval(f"SELECT count(*) FROM executions {where}", *params)
            return Page(
                items=tuple(map(_execution, rows)),
                page=query.page,
                page_size=query.page_size,
                total=total,
            )

        return await self._read(run)

    async def count_executions(self, query: ExecutionQuery) -> int:
        where, params = _execution_filter(query)
        rows = await self._fetch(f"SELECT count(*) FROM executions {where}", *params)
        return int(rows[0][0])

    async def history(self, execution_id: ExecutionId) -> list[Transition]:
        async def run(conn: asyncpg.Connection) -> list[Transition]:
            if not await conn.fetchval("SELECT 1 FROM executions WHERE id = $1", execution_id):
                raise ExecutionNotFound(execution_id)
            return [
                Transition(status=_S(status), at=_dt(at))
                for status, at in await conn.fetch(
                    "SELECT status, at FROM events WHERE execution_id = $1 AND kind = 'state' "
                    "ORDER BY seq",
                    execution_id,
                )
            ]

        return await self._read(run)

    async def claim(
        self, node: NodeInfo, limit: int, at: float, *, tasks: Collection[str] | None = None
    ) -> list[Claim]:
        if limit <= 0:
            return []
        known = _known(tasks)
        return await self._transact(_claim, node, limit, at, self.schema, known)

    async def next_due(self) -> float | None:
        rows = await self._fetch(
            "SELECT min(scheduled_for) FROM executions WHERE status IN ('scheduled', 'retrying')"
        )
        return None if rows[0][0] is None else float(rows[0][0])

    async def write(self, batch: WriteBatch) -> list[bool]:
        if not (batch.logs or batch.progress or batch.finishes):
            return []
        return await self._transact(_write, batch)

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
        return await self._transact(_write_and_claim, batch, node, limit, at, self.schema, known)

    async def cancel_execution(
        self, execution_id: ExecutionId, at: float
    ) -> tuple[Execution, bool]:
        return await self._transact(_cancel_execution, execution_id, at)

    async def cancel_requests(self, node_id: str) -> list[tuple[ExecutionId, int]]:
        rows = await self._fetch(
            "SELECT id, run FROM executions "
            "WHERE status = 'running' AND node = $1 AND cancel_requested",
            node_id,
        )
        return [(row[0], row[1]) for row in rows]

    # -- nodes ---------------------------------------------------------------------------

    async def register_node(self, node: NodeInfo) -> None:
        await self._fetch(
            "INSERT INTO nodes (id, host, pid, started_at, heartbeat_at) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET host = excluded.host, "
            "pid = excluded.pid, started_at = excluded.started_at, "
            "heartbeat_at = excluded.heartbeat_at",
            node.id,
            node.host,
            node.pid,
            node.started_at,
            node.heartbeat_at,
        )

    async def heartbeat(self, node_id: str, at: float) -> bool:
        rows = await self._fetch(
            "UPDATE nodes SET heartbeat_at = $1 WHERE id = $2 RETURNING id", at, node_id
        )
        return len(rows) == 1

    async def list_nodes(self) -> list[NodeInfo]:
        return [
            NodeInfo(id=r[0], host=r[1], pid=r[2], started_at=r[3], heartbeat_at=r[4])
            for r in await self._fetch(
                "SELECT id, host, pid, started_at, heartbeat_at FROM nodes ORDER BY started_at"
            )
        ]

    async def record_child(
        self, execution_id: ExecutionId, run: int, pid: int, started: str | None
    ) -> None:
        await self._fetch(
            "UPDATE executions SET child_pid = $1, child_started = $2 "
            "WHERE id = $3 AND run = $4 AND status = 'running'",
            pid,
            started,
            execution_id,
            run,
        )

    async def node_children(self, node_id: str) -> list[tuple[int, str | None]]:
        rows = await self._fetch(
            "SELECT child_pid, child_started FROM executions "
            "WHERE status = 'running' AND node = $1 AND child_pid IS NOT NULL",
            node_id,
        )
        return [(row[0], row[1]) for row in rows]

    async def recover_node(self, node_id: str, at: float) -> list[Execution]:
        return await self._transact(_recover_node, node_id, at)

    # -- logs, events, categories ---------------------------------------------------------

    async def list_logs(self, query: LogQuery) -> Page[LogRecord]:
        limit, offset = _common.page_bounds(query.page, query.page_size)
        clauses = ["kind = 'log'"]
        params: list[object] = []
        if query.execution_id is not None:
            params.append(query.execution_id)
            clauses.append(f"execution_id = ${len(params)}")
        if query.job_id is not None:
            params.append(query.job_id)
            clauses.append(f"job_id = ${len(params)}")
        if query.level is not None:
            params.append(int(query.level))
            clauses.append(f"level >= ${len(params)}")
        where = "WHERE " + " AND ".join(clauses)
        n = len(params)

        async def run(conn: asyncpg.Connection) -> Page[LogRecord]:
            if query.execution_id is not None and not await conn.fetchval(
                "SELECT 1 FROM executions WHERE id = $1", query.execution_id
            ):
                raise ExecutionNotFound(query.execution_id)
            rows = await conn.fetch(
                f"SELECT seq, at, job_id, execution_id, level, message, data FROM events {where} "
                f"ORDER BY seq LIMIT ${n + 1} OFFSET ${n + 2}",
                *params,
                limit,
                offset,
            )
            total = await conn.fetchval(f"SELECT count(*) FROM events {where}", *params)
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

        return await self._read(run)

    async def events_after(
        self,
        seq: int,
        *,
        job_id: JobId | None = None,
        execution_id: ExecutionId | None = None,
        limit: int = 500,
    ) -> list[Event]:
        clauses = ["seq > $1"]
        params: list[object] = [seq]
        if job_id is not None:
            params.append(job_id)
            clauses.append(f"job_id = ${len(params)}")
        if execution_id is not None:
            params.append(execution_id)
            clauses.append(f"execution_id = ${len(params)}")
        rows = await self._fetch(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(clauses)} "
            f"ORDER BY seq LIMIT ${len(params) + 1}",
            *params,
            limit,
        )
        return [_event(row) for row in rows]

    async def last_seq(self) -> int:
        rows = await self._fetch("SELECT max(seq) FROM events")
        return int(rows[0][0] or 0)

    async def list_categories(self) -> list[Category]:
        return [
            Category(name=name, jobs=count)
            for name, count in await self._fetch(
                "SELECT c.name, (SELECT count(*) FROM jobs j "
                "WHERE j.category = c.name AND j.status <> 'deleted') "
                'FROM categories c ORDER BY c.name COLLATE "C"'
            )
        ]


PostgresStore.__module__ = "asyncjobs.stores"


# -- the transactions ---------------------------------------------------------------------


def _job_filter(query: JobQuery) -> tuple[str, tuple[object, ...]]:
    clauses: list[str] = []
    params: list[object] = []
    if query.status is not None:
        params.append(JobStatus(query.status).value)
        clauses.append(f"status = ${len(params)}")
    if query.name is not None:
        params.append(query.name)
        clauses.append(f"name = ${len(params)}")
    if query.category is not None:
        params.append(query.category)
        params.append(query.category + "/")
        clauses.append(f"(category = ${len(params) - 1} OR starts_with(category, ${len(params)}))")
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", tuple(params)


def _execution_filter(query: ExecutionQuery) -> tuple[str, tuple[object, ...]]:
    clauses: list[str] = []
    params: list[object] = []
    if query.job_id is not None:
        params.append(query.job_id)
        clauses.append(f"job_id = ${len(params)}")
    if query.status is not None:
        params.append(ExecutionStatus(query.status).value)
        clauses.append(f"status = ${len(params)}")
    if query.task is not None:
        params.append(query.task)
        clauses.append(f"task = ${len(params)}")
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", tuple(params)


async def _lock_jobs(tx: _Tx, job_ids: Sequence[str]) -> None:
    """Lock the jobs' rows in id order: the first step of every transaction that ends
    executions, so two of them never wait on each other in opposite orders."""
    if job_ids:
        await tx.conn.execute(
            "SELECT 1 FROM jobs WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
            sorted(set(job_ids)),
        )


def _job_values(job: NewJob) -> tuple[object, ...]:
    """A new job's $1-$11 in both ways of adding it (_add_job, _add_job_statement)."""
    schedule, steps, shared, state = _common.job_documents(job)
    return (
        job.id,
        job.name,
        job.category,
        schedule,
        steps,
        job.priority,
        shared,
        job.key,
        job.created_at,
        job.next_fire_at,
        state,
    )


async def _add_job(tx: _Tx, job: NewJob, executions: Sequence[NewExecution]) -> tuple[Job, bool]:
    conn = tx.conn
    for _ in range(_RETRIES):
        # The partial unique index on live keys decides between concurrent adds: the loser
        # waits for the winner's commit, inserts nothing, and returns the winner's job.
        row = await conn.fetchrow(
            f"INSERT INTO jobs ({_JOB_COLUMNS}) "
            "VALUES ($1, $2, $3, 'active', $4::json, $5::json, $6, $7::json, $8, $9, $9, $10, "
            "NULL, $11::json) ON CONFLICT (key) WHERE key IS NOT NULL "
            f"AND status IN ('active', 'paused') DO NOTHING RETURNING {_JOB_COLUMNS}",
            *_job_values(job),
        )
        if row is not None:
            break
        existing = await conn.fetchrow(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE key = $1 AND status IN ('active', 'paused')",
            job.key,
        )
        if existing is not None:
            return _job(existing), False
    else:
        raise StoreError(f"could not add job {job.id!r} with key {job.key!r}: it kept changing")
    await conn.execute(
        "INSERT INTO categories (name, created_at) SELECT unnest($1::text[]), $2 "
        "ON CONFLICT (name) DO NOTHING",
        _common.category_chain(job.category),
        job.created_at,
    )
    await _insert_executions(tx, executions)
    if job.next_fire_at is not None:
        tx.keys.add(SCHEDULE)
    tx.keys.add(job.id)
    return _job(row), True


async def _add_executions(
    tx: _Tx, job_id: JobId, executions: Sequence[NewExecution]
) -> list[Execution]:
    # The job's row lock holds off a concurrent stop until these executions are in: the
    # stop then cancels them with the rest.
    status = await tx.conn.fetchval("SELECT status FROM jobs WHERE id = $1 FOR UPDATE", job_id)
    if status is None:
        raise JobNotFound(job_id)
    _common.check_live_job(job_id, JobStatus(status))
    await _insert_executions(tx, executions)
    rows = await tx.conn.fetch(
        f"SELECT {_EXEC_COLUMNS} FROM executions WHERE id = ANY($1::text[])",
        [new.id for new in executions],
    )
    by_id = {row[0]: _execution(row) for row in rows}
    return [by_id[new.id] for new in executions]


def _execution_columns(executions: Sequence[NewExecution]) -> list[list[Any]]:
    """The columns of new executions, as ``unnest`` takes them: id, job id, step, task,
    spec, status ('queued', or 'scheduled' if not yet due), priority, concurrency,
    created_at, scheduled_for."""
    columns: list[list[Any]] = [[] for _ in range(10)]
    for new in executions:
        row = (
            new.id,
            new.job_id,
            new.step,
            new.spec.task,
            _dumps(new.spec.to_json()),
            (_S.QUEUED if new.scheduled_for <= new.created_at else _S.SCHEDULED).value,
            new.priority,
            new.spec.concurrency,
            new.created_at,
            new.scheduled_for,
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


async def _insert_executions(tx: _Tx, executions: Sequence[NewExecution]) -> None:
    if not executions:
        return
    columns = _execution_columns(executions)
    for new, status in zip(executions, columns[5], strict=True):
        tx.state(new.created_at, new.job_id, new.id, status)
    await tx.conn.execute(
        "INSERT INTO executions (id, job_id, step, task, spec, status, priority, concurrency, "
        "created_at, scheduled_for) SELECT u.id, u.job_id, u.step, u.task, u.spec::json, "
        "u.status, u.priority, u.concurrency, u.created_at, u.scheduled_for FROM unnest("
        "$1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::int[], "
        "$8::int[], $9::float8[], $10::float8[]) AS u(id, job_id, step, task, spec, status, "
        "priority, concurrency, created_at, scheduled_for)",
        *columns,
    )
    tx.keys.add(WORK)


async def _set_job_status(
    tx: _Tx, job_id: JobId, status: JobStatus, at: float
) -> tuple[Job, list[ExecutionId]]:
    conn = tx.conn
    row = await conn.fetchrow(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE", job_id)
    if row is None:
        raise JobNotFound(job_id)
    job = _job(row)
    if not _common.check_job_move(job_id, job.status, status):
        return job, []
    running: list[ExecutionId] = []
    if status in (JobStatus.STOPPED, JobStatus.DELETED):
        for (execution_id,) in await conn.fetch(
            "UPDATE executions SET status = 'cancelled', ended_at = $1 "
            f"WHERE job_id = $2 AND status IN {_WAITING_SQL} RETURNING id",
            at,
            job_id,
        ):
            tx.state(at, job_id, execution_id, "cancelled")
        running = [
            r[0]
            for r in await conn.fetch(
                "UPDATE executions SET cancel_requested = true "
                "WHERE job_id = $1 AND status = 'running' RETURNING id",
                job_id,
            )
        ]
    row = await conn.fetchrow(
        f"UPDATE jobs SET status = $1, updated_at = $2 WHERE id = $3 RETURNING {_JOB_COLUMNS}",
        status.value,
        at,
        job_id,
    )
    tx.keys.update((job_id, SCHEDULE))
    if status == JobStatus.ACTIVE:
        tx.keys.add(WORK)
    return _job(row), running


async def _add_job_and_claim(
    tx: _Tx,
    job: NewJob,
    executions: Sequence[NewExecution],
    node: NodeInfo,
    limit: int,
    at: float,
    schema: str,
    known: list[str] | None,
) -> tuple[Job, bool, list[Claim]]:
    record, created = await _add_job(tx, job, executions)
    claims = await _claim(tx, node, limit, at, schema, known) if created and limit > 0 else []
    return record, created, claims


def _may_be_first(new: NewExecution, at: float) -> bool:
    """Can a claim at ``at`` take ``new`` alone, whatever else is queued? It is due, since
    its creation, and unlimited. (Whether anything else is queued, or waiting and due, is
    the ``busy`` part of ``_ADD_JOB_CLAIMED``, as on SQLite: see its _first_in_line. One
    that another transaction commits meanwhile is claimed by the next claim, on any node,
    as it would be after a claim of the new one.)"""
    return new.scheduled_for <= min(new.created_at, at) and new.spec.concurrency is None


_BY_INDEX = (
    "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off"
)
"""For the claim's and the finishes' transactions: walk the indexes. Their tables change
faster than autovacuum's statistics follow (a new schema has none for its first minute), and
on estimates of one row the planner sorted the whole queue at every claim (8 ms at 3,000
queued) and joined a batch's jobs by scanning all of them (44 ms)."""


async def _claim(
    tx: _Tx, node: NodeInfo, limit: int, at: float, schema: str, known: list[str] | None
) -> list[Claim]:
    conn = tx.conn
    await conn.execute(_BY_INDEX)
    # SKIP LOCKED here too: a row another node is promoting or claiming is its business.
    for job_id, execution_id in await conn.fetch(
        "UPDATE executions SET status = 'queued' WHERE id IN (SELECT id FROM executions "
        "WHERE status IN ('scheduled', 'retrying') AND scheduled_for <= $1 "
        "FOR UPDATE SKIP LOCKED) RETURNING job_id, id",
        at,
    ):
        tx.state(at, job_id, execution_id, "queued")
    claimable = (
        "SELECT e.id, e.priority, e.scheduled_for FROM executions e JOIN jobs j "
        "ON j.id = e.job_id WHERE e.status = 'queued' AND j.status = 'active' "
    )
    known_params: tuple[list[str], ...] = ()
    if known is not None:  # only the tasks this node knows, and commands
        claimable += "AND (e.task = ANY($3::text[]) OR (e.spec->>'command') IS NOT NULL) "
        known_params = (known,)
    order = " ORDER BY e.priority, e.scheduled_for, e.id LIMIT $1 FOR UPDATE OF e SKIP LOCKED"
    everything = "AND e.concurrency IS NULL AND $2::text IS NULL"  # $2: the limited task's slot
    candidates = list(await conn.fetch(claimable + everything + order, limit, None, *known_params))
    for task, cap in await conn.fetch(
        "SELECT task, min(concurrency) FROM executions "
        "WHERE status = 'queued' AND concurrency IS NOT NULL GROUP BY task ORDER BY task"
    ):
        # Held until commit, taken in task order: the claims of a limited task, on every
        # node, count its running executions one after the other, each seeing the last.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(schema, f"task:{task}"))
        busy = await conn.fetchval(
            "SELECT count(*) FROM executions WHERE task = $1 AND status = 'running'", task
        )
        if cap > busy:
            candidates += await conn.fetch(
                claimable + "AND e.task = $2 AND e.concurrency IS NOT NULL" + order,
                min(cap - busy, limit),
                task,
                *known_params,
            )
    candidates.sort(key=lambda c: (c[1], c[2], c[0]))
    chosen = [c[0] for c in candidates[:limit]]
    if len(candidates) > limit:
        # Rows we locked but leave: a claimer that skipped them must look again.
        tx.keys.add(WORK)
    if not chosen:
        return []
    # With each claim's job (shared, schedule, state): one round trip, not two.
    rows = await conn.fetch(
        "UPDATE executions e SET status = 'running', run = e.run + 1, started_at = $1, "
        "ended_at = NULL, node = $2, pid = $3, cancel_requested = false FROM jobs j "
        f"WHERE e.id = ANY($4::text[]) AND j.id = e.job_id RETURNING {_CLAIMED_COLUMNS}",
        at,
        node.id,
        node.pid,
        chosen,
    )
    if not rows:
        return []
    # RETURNING gives no order: put the claims back in claim order.
    rows.sort(key=lambda r: (r[5], r[12], r[0]))
    jobs: dict[str, tuple[Any, Any, Any]] = {}
    for r in rows:
        tx.state(at, r[1], r[0], "running")
        if r[1] not in jobs:
            jobs[r[1]] = (_loads(r[18]), _loads(r[19]), _loads(r[20]))
    return _common.claims_from_rows(rows, jobs)


async def _finish_jobs(tx: _Tx, ended: dict[str, float]) -> None:
    """Move one-off jobs that have no live execution left to ``finished`` (job id -> when).

    The caller holds the jobs' row locks, so of two transactions ending a job's last two
    executions on two nodes, the second sees the first's commit here.
    """
    if not ended:
        return
    await tx.conn.execute(
        "UPDATE jobs j SET status = 'finished', updated_at = u.at "
        "FROM unnest($1::text[], $2::float8[]) AS u(id, at) "
        "WHERE j.id = u.id AND j.status IN ('active', 'paused') "
        "AND j.schedule->>'kind' = 'once' AND NOT EXISTS (SELECT 1 FROM executions e "
        f"WHERE e.job_id = u.id AND e.status NOT IN {_TERMINAL_SQL})",
        list(ended),
        list(ended.values()),
    )


async def _write(tx: _Tx, batch: WriteBatch) -> list[bool]:
    conn = tx.conn
    if batch.finishes:
        await conn.execute(_BY_INDEX)
        # The jobs' rows first, in id order, as _lock_jobs does: here in one round trip.
        await conn.execute(
            "SELECT 1 FROM jobs WHERE id = ANY(ARRAY(SELECT job_id FROM executions "
            "WHERE id = ANY($1::text[]))) ORDER BY id FOR UPDATE",
            [f.execution_id for f in batch.finishes],
        )
    for log in batch.logs:
        tx.log(
            log.at,
            log.job_id,
            log.execution_id,
            int(log.level),
            _text(log.message),
            _dumps(log.data) if log.data else None,
        )
    if batch.progress:
        # The latest update per (execution, run): only one run of an execution can match.
        updates = {(u.execution_id, u.run): u for u in batch.progress}
        for execution_id, run, job_id in await conn.fetch(
            "UPDATE executions e SET progress = u.progress, progress_message = u.message "
            "FROM unnest($1::text[], $2::int[], $3::float8[], $4::text[]) "
            "AS u(id, run, progress, message) "
            "WHERE e.id = u.id AND e.run = u.run AND e.status = 'running' "
            "RETURNING e.id, e.run, e.job_id",
            [u.execution_id for u in updates.values()],
            [u.run for u in updates.values()],
            [u.progress for u in updates.values()],
            [_text(u.message) for u in updates.values()],
        ):
            update = updates[execution_id, run]
            tx.progress(update.at, job_id, execution_id, update.progress, _text(update.message))
    ended_jobs: dict[str, float] = {}
    ended = await _end_runs(conn, batch.finishes)
    applied: list[bool] = []
    for finish in batch.finishes:
        row = ended.pop((finish.execution_id, finish.run), None)
        applied.append(row is not None)
        if row is None:
            continue
        job_id, concurrency = row
        tx.state(finish.at, job_id, finish.execution_id, finish.status.value)
        if finish.status == _S.RETRYING or concurrency is not None:
            # A retry is work; so is a freed slot of a limited task, for any node.
            tx.keys.add(WORK)
        if finish.shared:
            current = await conn.fetchval("SELECT shared FROM jobs WHERE id = $1", job_id)
            merged = {**_loads(current), **finish.shared}
            await conn.execute(
                "UPDATE jobs SET shared = $1::json WHERE id = $2", _dumps(merged), job_id
            )
        if finish.job is not None:
            job_update = finish.job
            await conn.execute(
                "UPDATE jobs SET next_fire_at = $1, state = coalesce($2::json, state), "
                "status = CASE WHEN $3 THEN 'finished' ELSE status END, "
                "updated_at = CASE WHEN $3 THEN $4 ELSE updated_at END "
                "WHERE id = $5 AND status IN ('active', 'paused')",
                job_update.next_fire_at,
                None if job_update.state is None else _dumps(job_update.state),
                job_update.finished,
                finish.at,
                job_id,
            )
            tx.keys.add(SCHEDULE)
        if finish.status in TERMINAL:
            ended_jobs[job_id] = max(finish.at, ended_jobs.get(job_id, finish.at))
    await _finish_jobs(tx, ended_jobs)
    return applied


def _known(tasks: Collection[str] | None) -> list[str] | None:
    """The tasks a node runs as the claim's parameter (an array), or None for all."""
    return None if tasks is None else sorted(tasks)


async def _write_and_claim(
    tx: _Tx,
    batch: WriteBatch,
    node: NodeInfo,
    limit: int,
    at: float,
    schema: str,
    known: list[str] | None,
) -> tuple[list[bool], list[Claim]]:
    applied = await _write(tx, batch)
    return applied, await _claim(tx, node, limit, at, schema, known) if limit > 0 else []


async def _end_runs(
    conn: asyncpg.Connection, finishes: Sequence[Finish]
) -> dict[tuple[str, int], tuple[str, int | None]]:
    """End the runs of a batch in one statement, each fenced on its run; return the ones
    that applied: (execution id, run) -> (job id, the step's concurrency limit).

    One row per run (``_common.finish_rows``): given two rows for one run, PostgreSQL would
    update it from either."""
    if not finishes:
        return {}
    values = _common.finish_rows(finishes)
    columns: list[list[Any]] = [list(column) for column in zip(*values, strict=True)]
    columns[6] = [None if message is None else _text(message) for message in columns[6]]
    rows = await conn.fetch(
        "UPDATE executions e SET status = u.status, result = u.result::json, "
        "error = u.error::json, progress = coalesce(u.progress, e.progress), "
        "progress_message = coalesce(u.message, e.progress_message), ended_at = u.ended_at, "
        "scheduled_for = coalesce(u.retry_at, e.scheduled_for), attempt = e.attempt + u.more "
        "FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], "
        "$6::float8[], $7::text[], $8::float8[], $9::float8[], $10::int[]) "
        "AS u(id, run, status, result, error, progress, message, ended_at, retry_at, more) "
        "WHERE e.id = u.id AND e.run = u.run AND e.status = 'running' "
        "RETURNING e.id, e.run, e.job_id, e.concurrency",
        *columns,
    )
    return {(row[0], row[1]): (row[2], row[3]) for row in rows}


async def _cancel_execution(
    tx: _Tx, execution_id: ExecutionId, at: float
) -> tuple[Execution, bool]:
    conn = tx.conn
    job_id = await conn.fetchval("SELECT job_id FROM executions WHERE id = $1", execution_id)
    if job_id is None:
        raise ExecutionNotFound(execution_id)
    await _lock_jobs(tx, [job_id])
    row = await conn.fetchrow(
        f"SELECT {_EXEC_COLUMNS} FROM executions WHERE id = $1 FOR UPDATE", execution_id
    )
    execution = _execution(row)
    if execution.status in WAITING:
        row = await conn.fetchrow(
            "UPDATE executions SET status = 'cancelled', ended_at = $1 WHERE id = $2 "
            f"RETURNING {_EXEC_COLUMNS}",
            at,
            execution_id,
        )
        tx.state(at, execution.job_id, execution_id, "cancelled")
        await _finish_jobs(tx, {execution.job_id: at})
        return _execution(row), False
    if execution.status == _S.RUNNING:
        await conn.execute(
            "UPDATE executions SET cancel_requested = true WHERE id = $1", execution_id
        )
        return execution, True
    return execution, False


async def _recover_node(tx: _Tx, node_id: str, at: float) -> list[Execution]:
    conn = tx.conn
    job_ids = await conn.fetch(
        "SELECT DISTINCT job_id FROM executions WHERE status = 'running' AND node = $1", node_id
    )
    await _lock_jobs(tx, [r[0] for r in job_ids])
    rows = await conn.fetch(
        "SELECT id, job_id, spec, crashes, cancel_requested FROM executions "
        "WHERE status = 'running' AND node = $1 ORDER BY id FOR UPDATE",
        node_id,
    )
    ended_jobs: dict[str, float] = {}
    recovered: list[Execution] = []
    for execution_id, job_id, spec_text, crashes, cancel_requested in rows:
        spec = StepSpec.from_json(_loads(spec_text))
        status, error, message = _common.lost_worker_outcome(
            spec, crashes + 1, bool(cancel_requested), node_id
        )
        retrying = status == _S.RETRYING
        row = await conn.fetchrow(
            "UPDATE executions SET status = $1, crashes = crashes + 1, error = $2::json, "
            "ended_at = $3, scheduled_for = CASE WHEN $4 THEN $5 ELSE scheduled_for END, "
            f"attempt = attempt + $6 WHERE id = $7 RETURNING {_EXEC_COLUMNS}",
            status.value,
            None if error is None else _dumps(error.to_json()),
            None if retrying else at,
            retrying,
            at,
            1 if retrying else 0,
            execution_id,
        )
        recovered.append(_execution(row))
        tx.log(at, job_id, execution_id, int(LogLevel.WARN), message, None)
        tx.state(at, job_id, execution_id, status.value)
        if retrying:
            tx.keys.add(WORK)
        else:
            ended_jobs[job_id] = at
    await _finish_jobs(tx, ended_jobs)
    await conn.execute("DELETE FROM nodes WHERE id = $1", node_id)
    return recovered


async def _fire(
    tx: _Tx,
    job_id: JobId,
    expected: float,
    ticks: Sequence[Tick],
    next_fire_at: float | None,
    overlap: str,
    at: float,
) -> FireResult:
    conn = tx.conn
    # FOR UPDATE: a concurrent fire waits here, then re-reads next_fire_at and finds it moved.
    row = await conn.fetchrow(
        # Within a microsecond: the caller's value went through a datetime.
        "SELECT last_fire_at FROM jobs WHERE id = $1 AND status = 'active' "
        "AND abs(next_fire_at - $2) < 0.000001 FOR UPDATE",
        job_id,
        expected,
    )
    if row is None:
        return FireResult(status="stale")
    last: float | None = row[0]
    live = await conn.fetchval(
        f"SELECT 1 FROM executions WHERE job_id = $1 AND status NOT IN {_TERMINAL_SQL} LIMIT 1",
        job_id,
    )
    if live and overlap == "queue":
        return FireResult(status="busy")
    candidates = [tick for tick in ticks if last is None or tick.at > last]
    latest = max((t.at for t in candidates), default=last)
    if last is not None and latest is not None:
        latest = max(latest, last)
    # The primary key (job, tick) is the guarantee: a tick fires once, whoever fires it.
    inserted = {
        r[0]
        for r in await conn.fetch(
            "INSERT INTO ticks (job_id, tick) SELECT $1, unnest($2::float8[]) "
            "ON CONFLICT DO NOTHING RETURNING tick",
            job_id,
            [t.at for t in candidates],
        )
    }
    fired: list[float] = []
    if not (live and overlap == "skip"):
        for tick in candidates:
            if tick.at in inserted:
                await _insert_executions(tx, tick.executions)
                fired.append(tick.at)
    await conn.execute(
        "UPDATE jobs SET next_fire_at = $1, last_fire_at = $2, updated_at = $3 WHERE id = $4",
        next_fire_at,
        latest,
        at,
        job_id,
    )
    tx.keys.update((job_id, SCHEDULE))
    if live and overlap == "skip":
        return FireResult(status="skipped")
    return FireResult(status="fired", fired=tuple(fired))


async def _purge(tx: _Tx, ended_before: float, logs_before: float) -> tuple[int, int]:
    conn = tx.conn
    gone = [
        r[0]
        for r in await conn.fetch(
            f"SELECT id FROM executions WHERE status IN {_TERMINAL_SQL} AND ended_at < $1",
            ended_before,
        )
    ]
    logs = 0
    if gone:
        logs += len(
            await conn.fetch(
                "DELETE FROM events WHERE execution_id = ANY($1::text[]) AND kind = 'log' "
                "RETURNING 1",
                gone,
            )
        )
        await conn.execute("DELETE FROM events WHERE execution_id = ANY($1::text[])", gone)
        await conn.execute("DELETE FROM executions WHERE id = ANY($1::text[])", gone)
    logs += len(
        await conn.fetch(
            "DELETE FROM events WHERE kind = 'log' AND at < $1 RETURNING 1", logs_before
        )
    )
    ended = [
        r[0]
        for r in await conn.fetch(
            "SELECT id FROM jobs j WHERE status IN ('finished', 'stopped', 'deleted') "
            "AND updated_at < $1 AND NOT EXISTS "
            "(SELECT 1 FROM executions e WHERE e.job_id = j.id)",
            ended_before,
        )
    ]
    if ended:
        await conn.execute("DELETE FROM ticks WHERE job_id = ANY($1::text[])", ended)
        await conn.execute("DELETE FROM jobs WHERE id = ANY($1::text[])", ended)
    return len(gone), logs
