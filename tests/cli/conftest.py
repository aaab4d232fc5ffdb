from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.cli.helpers import Worker

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Worker]]:
    """A SQLite store and a real worker process serving it (tests.cli.tasks)."""
    store = f"sqlite:///{tmp_path_factory.mktemp('cli')}/jobs.db"
    worker = Worker("tests.cli.tasks", store)
    try:
        worker.wait_for("worker ready")
        yield store, worker
        assert worker.stop() == 0, worker.log
    finally:
        worker.kill()


@pytest.fixture
def store(served: tuple[str, Worker]) -> str:
    return served[0]


@pytest.fixture
def worker(served: tuple[str, Worker]) -> Worker:
    return served[1]
