"""Stores: where a runtime keeps its jobs, executions, logs and events.

:func:`open_store` turns a URL into a store::

    memory://                 in this process only; lost when it exits (not durable)
    sqlite:///relative.db     a SQLite file (sqlite:////abs/path.db for an absolute path)
    postgresql://user@host/db PostgreSQL (needs the ``asyncjobs[postgres]`` extra);
                              ``?schema=name`` picks the schema (default ``asyncjobs``)

Store classes are imported lazily: opening a memory store imports no database driver.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .._errors import InvalidStoreURL
from .base import (
    Claim as Claim,
    ExecutionQuery as ExecutionQuery,
    Finish as Finish,
    JobQuery as JobQuery,
    LogQuery as LogQuery,
    NewExecution as NewExecution,
    NewJob as NewJob,
    NewLog as NewLog,
    NodeInfo as NodeInfo,
    ProgressUpdate as ProgressUpdate,
    Store as Store,
    WriteBatch as WriteBatch,
)

if TYPE_CHECKING:
    from .memory import MemoryStore as MemoryStore
    from .postgres import PostgresStore as PostgresStore
    from .sqlite import SQLiteStore as SQLiteStore

__all__ = (
    "Claim",
    "ExecutionQuery",
    "Finish",
    "JobQuery",
    "LogQuery",
    "MemoryStore",
    "NewExecution",
    "NewJob",
    "NewLog",
    "NodeInfo",
    "PostgresStore",
    "ProgressUpdate",
    "SQLiteStore",
    "Store",
    "WriteBatch",
    "open_store",
)

_LAZY = {"MemoryStore": ".memory", "PostgresStore": ".postgres", "SQLiteStore": ".sqlite"}
SCHEMES = ("memory://", "sqlite:///", "postgresql://")
DEFAULT_URL = "sqlite:///asyncjobs.db"


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'asyncjobs.stores' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def check_url(url: str) -> str:
    """Return ``url`` if its scheme names a store; else raise.

    :raises InvalidStoreURL: naming the URL and listing the supported schemes
    """
    if not isinstance(url, str):
        raise InvalidStoreURL(f"a store URL must be a string, got {url!r}")
    if url == "memory://" or url == "memory:":
        return "memory://"
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return url
    if url.startswith(("postgresql://", "postgres://")):
        return url
    raise InvalidStoreURL(
        f"unknown store URL {url!r}; expected one of memory://, sqlite:///path/to/file.db, "
        "postgresql://user@host/db"
    )


def open_store(url: str) -> Store:
    """Return the (not yet opened) store that ``url`` names; enter it with ``async with``.

    :raises InvalidStoreURL: if the scheme is unknown
    """
    url = check_url(url)
    if url == "memory://":
        from .memory import MemoryStore

        return MemoryStore()
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///"))
    try:
        from .postgres import PostgresStore
    except ImportError as exc:
        raise InvalidStoreURL(
            f"the PostgreSQL store needs asyncpg ({exc}); install asyncjobs[postgres]"
        ) from exc
    return PostgresStore(url)
