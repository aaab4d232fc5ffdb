from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from asyncjobs.stores import Store, open_store
from tests.pg import PostgresServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return request.param


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole session (see tests/pg.py)."""
    with PostgresServer() as server:
        yield server


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        # A schema of its own per test: isolated rows, no new database to create.
        server: PostgresServer = request.getfixturevalue("pg_server")
        return server.url()
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/t.db"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with open_store(store_url) as s:
        yield s


@pytest.fixture(autouse=True)
def no_blocking_calls_in_the_loop(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test whose event loop makes a blocking call (file I/O, time.sleep...)."""
    if "anyio_backend" not in request.fixturenames:
        yield
        return
    from blockbuster import blockbuster_ctx

    with blockbuster_ctx(["asyncjobs", "tests"]) as bb:
        # Loading a time zone reads its file once; asyncjobs caches the zone.
        for name in ("os.stat", "io.BufferedReader.read"):
            bb.functions[name].can_block_in("zoneinfo/_tzpath.py", "find_tzfile")
            bb.functions[name].can_block_in("zoneinfo/_common.py", {"load_tzdata", "load_data"})
        # asyncpg reads ~/.pgpass and looks for client certificates (a few stat calls)
        # while it parses the connection arguments, once per new connection.
        for function in bb.functions.values():
            function.can_block_in("asyncpg/connect_utils.py", "_parse_connect_dsn_and_args")
        yield
