"""``asyncjobs worker``: signals, drain and abort, module loading and its errors."""

from __future__ import annotations

import json
import signal
import textwrap
from typing import TYPE_CHECKING

import pytest

from tests.cli.helpers import Worker, cli, ok, ok_json, user_error

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def own_store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/worker.db"


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.kill()


def _start(workers: list[Worker], module: str, store: str, *options: str, **kw: object) -> Worker:
    worker = Worker(module, store, *options, **kw)  # type: ignore[arg-type]
    workers.append(worker)
    worker.wait_for("worker ready")
    return worker


def test_sigterm_drains_the_running_execution_then_exits_0(
    own_store: str, workers: list[Worker]
) -> None:
    worker = _start(workers, "tests.cli.tasks", own_store, "--workers", "2")
    assert "2 workers, 2 process workers" in worker.wait_for("worker ready")
    created = ok_json("enqueue", "slow", "--args", "[1.5]", store=own_store)
    execution_id = created["execution"]["id"]
    worker.wait_for(f"start +{execution_id}")
    worker.signal(signal.SIGTERM)
    assert worker.proc.wait(20) == 0, worker.log
    assert "draining" in worker.wait_for("SIGTERM")
    worker.wait_for(f"completed {execution_id} slow")
    assert ok_json("executions", "get", execution_id, store=own_store)["status"] == "completed"


def test_a_second_signal_aborts_and_puts_the_execution_back(
    own_store: str, workers: list[Worker]
) -> None:
    worker = _start(workers, "tests.cli.tasks", own_store)
    created = ok_json("enqueue", "slow", "--args", "[60]", store=own_store)
    execution_id = created["execution"]["id"]
    worker.wait_for(f"start +{execution_id}")
    worker.signal(signal.SIGINT)
    worker.wait_for("SIGINT: draining")
    worker.signal(signal.SIGINT)
    assert worker.proc.wait(15) == 128 + signal.SIGINT, worker.log
    worker.wait_for("aborting")
    worker.wait_for(f"retrying +{execution_id} slow .*put back in the queue")
    execution = ok_json("executions", "get", execution_id, store=own_store)
    assert execution["status"] in ("retrying", "queued")
    assert execution["attempt"] == 1

    # The next worker runs it from the start, as the same attempt.
    again = _start(workers, "tests.cli.tasks", own_store)
    again.wait_for(f"start +{execution_id} slow attempt 1")
    ok("executions", "cancel", execution_id, store=own_store)
    assert again.stop() == 0


def test_a_worker_from_a_file_path_runs_its_process_tasks(
    tmp_path: Path, own_store: str, workers: list[Worker]
) -> None:
    source = tmp_path / "app" / "jobs_here.py"
    source.parent.mkdir()
    source.write_text(
        textwrap.dedent(
            """
            import os
            import asyncjobs as aj

            rt = aj.Runtime(poll_interval=0.05)

            @rt.task(name="where", mode="process")
            def where(ctx: aj.Context) -> int:
                return os.getpid()
            """
        )
    )
    worker = _start(workers, f"{source}:rt", own_store, "--process-workers", "1")
    assert "1 process workers" in worker.wait_for("worker ready")
    created = ok_json("enqueue", "where", "--module", str(source), store=own_store)
    done = cli("wait", created["execution"]["id"], "--json", store=own_store)
    final = json.loads(done.stdout)
    assert done.returncode == 0, final
    assert final["result"] != worker.proc.pid


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("no_such_module_here", "cannot import module 'no_such_module_here'"),
        ("json", "module 'json' defines no asyncjobs.Runtime at module level"),
        (
            "tests.cli.two_runtimes",
            "defines 2 runtimes (first, second); pick one with tests.cli.two_runtimes:first",
        ),
        ("tests.cli.tasks:add", "'tests.cli.tasks:add' is a function, not an asyncjobs.Runtime"),
        ("tests.cli.tasks:nothing", "module 'tests.cli.tasks' has no attribute 'nothing'"),
        ("missing/file.py", "no such file: 'missing/file.py'"),
    ],
)
def test_a_bad_module_exits_2_with_one_line(own_store: str, module: str, expected: str) -> None:
    assert expected in user_error("worker", module, store=own_store)


def test_a_module_that_raises_names_the_error_and_the_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken_tasks.py"
    broken.write_text("import asyncjobs\n\nrt = asyncjobs.Runtime()\n1 / 0\n")
    message = user_error("worker", str(broken))
    assert "importing" in message
    assert f"ZeroDivisionError: division by zero (at {broken}:4)" in message


def test_the_chosen_runtime_runs_and_a_bad_store_is_refused(own_store: str) -> None:
    assert "unknown store URL 'nope://'" in user_error(
        "worker", "tests.cli.two_runtimes:first", store="nope://"
    )
    assert "workers" in user_error("worker", "tests.cli.tasks", "--workers", "-1")
