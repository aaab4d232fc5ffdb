"""``asyncjobs demo`` runs to completion and shows what the product is."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from tests.cli.helpers import cli, ok_json

if TYPE_CHECKING:
    from pathlib import Path


def test_the_demo_shows_every_kind_of_execution_and_ends_quickly(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/demo.db"
    started = time.monotonic()
    done = cli("demo", store=store, timeout=60)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert took < 20, took
    out = done.stdout
    demo_pid = int(re.search(r"\(pid (\d+)\)", out).group(1))  # type: ignore[union-attr]

    rows = {line.split("  ")[0]: line for line in out.splitlines() if "  " in line}
    for name in ("download dataset.csv", "checksum", "render frames 1-40"):
        assert re.search(r"completed +1 ", rows[name]), rows[name]
    assert "coroutine" in rows["download model.bin"]
    assert "thread" in rows["checksum"]
    flaky = rows["call a flaky upstream"]
    assert re.search(r"completed +3 ", flaky)
    assert (
        "call a flaky upstream went queued -> running -> retrying -> queued -> running -> "
        "retrying -> queued -> running -> completed"
    ) in out
    assert '"third time lucky"' in flaky
    assert "FileNotFoundError: no such file: /etc/missing.conf" in rows["read a missing file"]
    assert re.search(r"heartbeat ran \d+ times, every second", out)
    assert "cron '0 3 * * *' (UTC), would next fire at" in out

    # The process executions ran in children, each with its own pid, and it is all stored.
    renders = ok_json("executions", "list", "--task", "demo.render", store=store)["items"]
    pids = {e["result"]["pid"] for e in renders}
    assert len(pids) == 2
    assert demo_pid not in pids
    for line in ("asyncjobs executions list --store", "asyncjobs logs "):
        assert line in out
    logs_command = re.search(r"asyncjobs logs (\S+)", out).group(1)  # type: ignore[union-attr]
    warnings = ok_json("logs", logs_command, "--level", "warn", store=store)
    assert [w["message"][:16] for w in warnings] == ["attempt 1 failed", "attempt 2 failed"]
    active = ok_json("jobs", "list", "--status", "active", "--category", "demo", store=store)
    assert active["total"] == 0  # the scheduled jobs do not outlive the demo
