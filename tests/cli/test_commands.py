"""Every query command as a real subprocess, against a store a real worker process serves."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.cli.helpers import ROOT, cli, env, ok, ok_json, user_error

if TYPE_CHECKING:
    from pathlib import Path

    from tests.cli.helpers import Worker


def enqueue(store: str, task: str, *args: object, options: tuple[str, ...] = ()) -> Any:
    return ok_json("enqueue", task, "--args", json.dumps(list(args)), *options, store=store)


def wait_json(store: str, target: str) -> tuple[int, Any]:
    done = cli("wait", target, "--json", store=store)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def wait_status(store: str, execution_id: str, status: str, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        execution = ok_json("executions", "get", execution_id, store=store)
        if execution["status"] == status:
            return execution
        assert time.monotonic() < deadline, execution
        time.sleep(0.1)


def test_a_task_only_the_worker_knows_is_enqueued_by_name_and_run(
    store: str, worker: Worker
) -> None:
    # This process never imports tests.cli.tasks: 'add' is registered in the worker only.
    created = enqueue(store, "add", 2, 3)
    execution_id = created["execution"]["id"]
    assert created["job"]["name"] == "add"
    # Read back after the commit: the worker, woken by that commit, may have taken it.
    assert created["execution"]["status"] in ("queued", "running", "completed")
    code, final = wait_json(store, execution_id)
    assert (code, final["status"], final["result"]) == (0, "completed", 5)
    worker.wait_for(rf"start +{execution_id} add attempt 1")
    worker.wait_for(rf"completed {execution_id} add in [0-9.]+s")

    shown = ok_json("executions", "get", execution_id, store=store)
    assert shown["result"] == 5
    assert [t["status"] for t in shown["history"]] == ["queued", "running", "completed"]
    human = ok("executions", "get", execution_id, store=store)
    assert "status:    completed" in human
    assert "queued -> running -> completed" in human


def test_unchecked_arguments_fail_the_execution_naming_the_parameter(store: str) -> None:
    created = enqueue(store, "add", "not a number", 3)
    code, final = wait_json(store, created["execution"]["id"])
    assert code == 1
    assert final["status"] == "failed"
    assert final["error"]["type"] == "InvalidArguments"
    assert "'a'" in final["error"]["message"]


def test_enqueue_by_name_only_runs_with_the_workers_own_task_options(store: str) -> None:
    # 'pid' is a process task that only the worker knows: it still runs in a child.
    created = enqueue(store, "pid", "p")
    assert created["job"]["steps"][0]["stand_in"] is True
    code, final = wait_json(store, created["execution"]["id"])
    assert code == 0
    assert final["result"]["pid"] != final["pid"]  # the child, not the worker
    # 'fail' has retries=1 in the worker's definition.
    created = enqueue(store, "fail", "boom")
    code, final = wait_json(store, created["execution"]["id"])
    assert (code, final["status"], final["attempt"]) == (1, "failed", 2)


def test_enqueue_with_the_module_checks_arguments_and_uses_the_task_options(store: str) -> None:
    message = user_error(
        "enqueue", "add", "--args", '["x", 1]', "--module", "tests.cli.tasks", store=store
    )
    assert "parameter 'a'" in message
    assert "unknown_task" in user_error(
        "enqueue", "unknown_task", "--module", "tests.cli.tasks", store=store
    )
    # 'pid' is a process task: with the module, its step runs in a child process.
    created = enqueue(store, "pid", "p", options=("--module", "tests.cli.tasks"))
    assert created["job"]["steps"][0]["mode"] == "process"
    code, final = wait_json(store, created["execution"]["id"])
    assert code == 0
    assert final["result"]["tag"] == "p"
    assert final["result"]["pid"] != final["pid"]  # the child, not the worker

    # 'fail' retries once: the task's own option, which only the module knows.
    created = enqueue(store, "fail", "boom", options=("--module", "tests.cli.tasks"))
    execution_id = created["execution"]["id"]
    code, final = wait_json(store, execution_id)
    assert (code, final["status"], final["attempt"]) == (1, "failed", 2)
    assert final["error"] == {**final["error"], "type": "ValueError", "message": "boom"}
    shown = ok_json("executions", "get", execution_id, store=store)
    assert "retrying" in [t["status"] for t in shown["history"]]
    errors = ok_json("logs", execution_id, "--level", "error", store=store)
    assert [r["message"] for r in errors] == ["failing on attempt 1", "failing on attempt 2"]
    assert all(r["level"] == "error" for r in errors)
    listed = ok_json("executions", "list", "--status", "failed", "--task", "fail", store=store)
    assert execution_id in [e["id"] for e in listed["items"]]
    human = ok("executions", "list", "--status", "failed", store=store)
    assert human.splitlines()[0].split() == [
        "ID", "STATUS", "TASK", "ATTEMPT", "PROGRESS", "STARTED", "TOOK", "OUTCOME",
    ]  # fmt: skip
    assert f"{execution_id}  failed" in human
    assert "ValueError: boom" in human


def test_jobs_list_get_pause_resume_stop_destroy(store: str) -> None:
    created = enqueue(store, "add", 1, 1, options=("--after", "3600", "--name", "later"))
    job_id, execution_id = created["job"]["id"], created["execution"]["id"]
    assert created["execution"]["status"] == "scheduled"

    listed = ok_json("jobs", "list", "--name", "later", store=store)
    assert listed["total"] == 1
    assert listed["items"][0]["id"] == job_id
    human = ok("jobs", "list", "--page-size", "100", store=store)
    assert human.splitlines()[0].split()[:3] == ["ID", "STATUS", "SCHEDULE"]
    assert any(line.startswith(job_id) and "active" in line for line in human.splitlines())
    assert "health check" in human  # the worker's system jobs, every 300s
    detail = ok("jobs", "get", job_id, store=store)
    assert "name:      later" in detail
    assert "step 0:    add(1, 1) (coroutine)" in detail
    assert execution_id in detail

    assert ok_json("jobs", "pause", job_id, store=store)["status"] == "paused"
    assert ok_json("jobs", "list", "--status", "paused", store=store)["items"][0]["id"] == job_id
    assert ok("jobs", "resume", job_id, store=store).strip().endswith("active")
    assert ok_json("jobs", "stop", job_id, store=store)["status"] == "stopped"
    assert ok_json("executions", "get", execution_id, store=store)["status"] == "cancelled"
    assert ok_json("jobs", "destroy", job_id, store=store)["status"] == "deleted"
    assert ok_json("jobs", "get", job_id, store=store)["status"] == "deleted"


def test_cancel_a_running_execution(store: str, worker: Worker) -> None:
    execution_id = enqueue(store, "slow", 30)["execution"]["id"]
    wait_status(store, execution_id, "running")
    # Ctrl+C while waiting or following: exit 130, quietly, and the execution goes on.
    for command in (["wait", execution_id], ["logs", execution_id, "--follow"]):
        waiting = subprocess.Popen(
            [sys.executable, "-m", "asyncjobs", *command, "--store", store],
            cwd=ROOT,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1)
        waiting.send_signal(signal.SIGINT)
        out, err = waiting.communicate(timeout=15)
        assert waiting.returncode == 130, (out, err)
        assert "Traceback" not in err
    assert ok_json("executions", "get", execution_id, store=store)["status"] == "running"
    out = ok("executions", "cancel", execution_id, store=store)
    assert execution_id in out
    code, final = wait_json(store, execution_id)
    assert (code, final["status"]) == (1, "cancelled")
    worker.wait_for(rf"cancelled {execution_id} slow")


def test_logs_follow_prints_lines_as_they_come_until_the_end(store: str) -> None:
    execution_id = enqueue(store, "slow", 1.2)["execution"]["id"]
    done = cli("logs", execution_id, "--follow", store=store)
    assert done.returncode == 0, done.stderr
    messages = [line.split(None, 2)[2] for line in done.stdout.splitlines()]
    assert messages == ["step 1", "step 2", "step 3", "step 4", "almost done"]
    assert done.stdout.splitlines()[4].split()[1] == "warn"
    # After the end, --follow replays and returns; --json gives one object a line.
    again = cli("logs", execution_id, "--follow", "--json", "--level", "warn", store=store)
    lines = [json.loads(line) for line in again.stdout.splitlines()]
    assert [(r["level"], r["message"]) for r in lines] == [("warn", "almost done")]
    assert ok_json("logs", execution_id, store=store)[0]["message"] == "step 1"


def test_wait_draws_a_live_progress_bar_on_a_terminal(store: str) -> None:
    execution_id = enqueue(store, "slow", 2.0)["execution"]["id"]
    main, secondary = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "asyncjobs", "wait", execution_id, "--store", store],
            cwd=ROOT,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=secondary,
            text=True,
            timeout=30,
            check=False,
        )
        os.close(secondary)
        drawn = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(main)
    assert done.returncode == 0
    assert done.stdout.startswith(f"execution {execution_id} completed")
    screen = drawn.decode()
    assert "\x1b[2K" in screen  # redrawn in place
    assert "running" in screen
    assert "step 4 of 4" in screen
    assert "100.0%" in screen


def test_wait_for_a_job_and_for_an_ended_execution(store: str) -> None:
    created = enqueue(store, "add", 20, 22)
    code, final = wait_json(store, created["job"]["id"])
    assert (code, final["result"]) == (0, 42)
    done = cli("wait", created["execution"]["id"], store=store)
    assert done.returncode == 0
    assert done.stdout.strip() == f"execution {final['id']} completed: 42"


def test_store_comes_from_the_environment(store: str) -> None:
    done = cli("jobs", "list", "--json", ASYNCJOBS_STORE=store)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["total"] >= 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("executions", "get", "nope"), "no execution with id 'nope'"),
        (("jobs", "stop", "nope"), "no job with id 'nope'"),
        (("wait", "nope"), "no execution or job with id 'nope'"),
        (("logs", "nope"), "no execution with id 'nope'"),
        (("enqueue", "add", "--args", "[1,"), "--args is not valid JSON"),
        (("enqueue", "add", "--args", '{"a": 1}'), "--args must be a JSON array"),
        (("enqueue", "add", "--kwargs", "[1]"), "--kwargs must be a JSON object"),
        (("enqueue", "asyncjobs.health"), "'asyncjobs.health' is a system task"),
        (("jobs", "list", "--status", "sleepy"), "unknown job status 'sleepy'"),
        (("executions", "list", "--status", "x"), "unknown execution status 'x'"),
        (("logs", "nope", "--level", "loud"), "unknown log level 'loud'"),
        (("jobs", "list", "--page", "0"), "expected a positive integer, got '0'"),
        # The bounds of the Python and HTTP APIs: never stored, never an OverflowError.
        (("enqueue", "add", "--after", "1e12"), "expected seconds >= 0 (at most 100 years)"),
        (("enqueue", "add", "--after", "inf"), "expected seconds >= 0 (at most 100 years)"),
        (
            ("enqueue", "add", "--priority", "3000000000"),
            "expected an integer from -2147483648 to 2147483647, got '3000000000'",
        ),
        (
            ("enqueue", "add", "--priority", "99999999999999999999999"),
            "expected an integer from -2147483648 to 2147483647",
        ),
        (
            ("jobs", "list", "--page", "99999999999999999999"),
            "expected an integer from 1 to 1000000, got '99999999999999999999'",
        ),
        (("executions", "list", "--page-size", "5000"), "expected an integer from 1 to 1000"),
        (("enqueue", ""), "a task name must be a non-empty string"),
        (("enqueue", "  "), "a task name must be a non-empty string"),
        (("jobs", "get"), "the following arguments are required: JOB"),
        (("jobs", "frobnicate"), "invalid choice: 'frobnicate'"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(
    store: str, args: tuple[str, ...], expected: str
) -> None:
    assert expected in user_error(*args, store=store)


def test_store_mistakes_are_one_line_and_exit_2(tmp_path: Path) -> None:
    assert "unknown store URL 'redis://x'" in user_error("jobs", "list", store="redis://x")
    assert "no store at" in user_error("jobs", "list", store=f"sqlite:///{tmp_path}/none.db")
    assert "memory://" in user_error("executions", "list", store="memory://")
    not_a_db = tmp_path / "text.db"
    not_a_db.write_text("hello\n" * 100)
    assert user_error("jobs", "list", store=f"sqlite:///{not_a_db}")
    assert "is not a SQLite database" in user_error(
        "worker", "tests.cli.tasks", store=f"sqlite:///{not_a_db}"
    )
    assert not_a_db.read_text() == "hello\n" * 100  # and left as it was
    assert "no directory" in user_error("enqueue", "add", store=f"sqlite:///{tmp_path}/a/b.db")
    assert not (tmp_path / "a").exists()


def test_refused_input_stores_nothing_and_every_listing_still_reads(store: str) -> None:
    before = ok_json("executions", "list", store=store)["total"]
    for options in (("--after", "1e12"), ("--priority", "99999999999999999999999")):
        assert "asyncjobs: error:" in user_error(
            "enqueue", "add", "--args", "[1, 2]", *options, store=store
        )
    assert ok_json("executions", "list", store=store)["total"] == before
    assert ok_json("jobs", "list", store=store)["total"] >= 1


def test_a_sqlite_url_with_an_option_is_the_same_store(store: str) -> None:
    total = ok_json("jobs", "list", store=store)["total"]
    assert ok_json("jobs", "list", store=f"{store}?synchronous=normal")["total"] == total
    assert "unknown SQLite store option 'synchronus'" in user_error(
        "jobs", "list", store=f"{store}?synchronus=normal"
    )


def test_every_command_has_help_with_an_example() -> None:
    commands = [
        ["worker"], ["jobs"], ["jobs", "list"], ["jobs", "get"], ["jobs", "stop"],
        ["jobs", "pause"], ["jobs", "resume"], ["jobs", "destroy"], ["executions"],
        ["executions", "list"], ["executions", "get"], ["executions", "cancel"], ["logs"],
        ["enqueue"], ["wait"], ["demo"], ["serve"], [],
    ]  # fmt: skip
    for command in commands:
        out = ok(*command, "--help")
        assert "example" in out, command
        assert f"asyncjobs {' '.join(command)}".strip() in out, command


def test_enqueue_with_a_key_returns_the_live_job_that_has_it(store: str) -> None:
    options = ("--key", "nightly-42", "--after", "3600", "--priority", "-5")
    first = enqueue(store, "add", 4, 2, options=options)
    second = enqueue(store, "add", 4, 2, options=options)
    assert first["job"]["id"] == second["job"]["id"]
    assert first["job"]["priority"] == -5
    assert first["execution"]["id"] == second["execution"]["id"]
    human = ok("enqueue", "add", "--args", "[4, 2]", *options, store=store)
    assert human.strip() == (
        f"enqueued job {first['job']['id']} (add); execution {first['execution']['id']}"
    )
    ok("jobs", "stop", first["job"]["id"], store=store)
