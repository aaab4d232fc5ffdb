"""Run ``asyncjobs`` commands and workers as real subprocesses."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def env(**extra: str) -> dict[str, str]:
    """The environment of a command: this one, minus a store the developer may have set."""
    out = {k: v for k, v in os.environ.items() if k != "ASYNCJOBS_STORE"}
    out["NO_COLOR"] = "1"
    out.update(extra)
    return out


def cli(
    *args: str, store: str | None = None, timeout: float = 30, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``asyncjobs ARGS`` (``--store`` appended when given) and return what it did."""
    argv = [sys.executable, "-m", "asyncjobs", *args]
    if store is not None:
        argv += ["--store", store]
    return subprocess.run(
        argv,
        cwd=ROOT,
        env=env(**extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(*args: str, store: str | None = None) -> str:
    """Run a command that must succeed; return its stdout."""
    done = cli(*args, store=store)
    assert done.returncode == 0, (args, done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout


def ok_json(*args: str, store: str | None = None) -> Any:
    """Run a command with ``--json`` that must succeed; return the parsed document."""
    return json.loads(ok(*args, "--json", store=store))


def user_error(*args: str, store: str | None = None) -> str:
    """Run a command that must fail as a user mistake: exit 2, one line, no traceback."""
    done = cli(*args, store=store)
    assert done.returncode == 2, (args, done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("asyncjobs: error: "), lines
    assert done.stdout == ""
    return lines[0]


class Worker:
    """``asyncjobs worker MODULE`` in a subprocess; its log lines are collected as they come."""

    def __init__(self, module: str, store: str, *options: str, cwd: Path = ROOT) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "asyncjobs", "worker", module, "--store", store, *options],
            cwd=cwd,
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 15) -> str:
        """Return the first log line matching ``pattern`` (a regex), waiting for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if re.search(pattern, line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no log line matches {pattern!r}:\n" + self.log)
                self._changed.wait(left)

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM the worker (if it runs) and return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        """Make sure the worker is gone and its pipe closed (after a test, pass or fail)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
