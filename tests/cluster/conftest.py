from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from tests.pg import PostgresServer


@pytest.fixture(params=["sqlite", "postgres"])
def cluster_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store that several processes share: one SQLite file, or one PostgreSQL schema."""
    if request.param == "postgres":
        server: PostgresServer = request.getfixturevalue("pg_server")
        return server.url()
    return f"sqlite:///{tmp_path}/cluster.db"
