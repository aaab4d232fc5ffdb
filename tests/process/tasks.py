"""Tasks that process-mode tests run in real children (imported there by target)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import asyncjobs as aj  # noqa: TC001 (as users write it: the child imports asyncjobs)


def add(ctx: aj.Context, a: int, b: int) -> int:
    ctx.progress(50, "half way")
    print("hello from print")
    logging.getLogger("child.lib").warning("careful: %d", a)
    ctx.log.info("adding", a=a, b=b)
    ctx.shared["sum"] = a + b
    return a + b


async def double(ctx: aj.Context, n: int) -> dict[str, object]:
    import asyncio

    await asyncio.sleep(0)
    return {"n": n * 2, "attempt": ctx.attempt, "job": ctx.job_id, "shared": dict(ctx.shared)}


def env_report() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("JOB_") or k == "SECRET_TOKEN"}


def boom() -> None:
    raise KeyError("nope")


def sleepy(seconds: float) -> None:
    time.sleep(seconds)


def invalid_json() -> int:
    sys.stdout.flush()
    os.write(1, b'{"type": "progress", "progress": \n')  # broken JSON on the raw fd
    os.write(1, b"\xff\xfe not utf-8\n")
    return 7


def huge_line(megabytes: int) -> int:
    os.write(1, b"x" * (megabytes * 1024 * 1024) + b"\n")
    return 1


def flood(lines: int) -> int:
    out = os.fdopen(os.dup(1), "w", buffering=1 << 16)
    for i in range(lines):
        out.write(f"line {i}\n")
    out.flush()
    return lines


def exit_quietly(code: int) -> None:
    sys.stderr.write("about to exit\n")
    sys.stderr.flush()
    os._exit(code)


def segfault() -> None:
    sys.stderr.write("going down\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGSEGV)


def stubborn() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            time.sleep(60)
        except KeyboardInterrupt:
            continue


def deaf(ready: str) -> None:
    """Ignore the cancel message and SIGTERM (only SIGKILL ends it); write the pid to
    ``ready`` once SIGTERM is ignored, and touch ``ready.cancel`` once a cancel is."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(f"{ready}.tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(f"{ready}.tmp", ready)  # whole or absent: the test polls for it
    while True:
        try:
            # Short naps: the runner's cancel interrupts Python code, not a sleep in progress.
            time.sleep(0.05)
        except KeyboardInterrupt:  # what the runner makes of the cancel message
            open(f"{ready}.cancel", "w").close()  # a file: the parent reads no output now


def with_grandchild(marker: str) -> None:
    subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", f"{marker}-grandchild"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(600)


def not_json() -> object:
    return {1, 2, 3}
