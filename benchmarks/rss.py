"""Worker memory with a deep queue: the RSS of a worker process above an idle one.

The executions are enqueued through the fastest documented path, jobs of many steps
(``rt.job().add(...)...push()``: one transaction per job), into a SQLite store. Then a worker
process (the benchmark driver's ``--serve`` child: ``aj.Runtime(url, workers=c)``) starts on
it and runs for ``window`` seconds; its peak RSS (``VmHWM``) is read from ``/proc`` and
compared with the same worker on an empty store over the same window.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.drivers.asyncjobs_driver import runtime

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_JOB = 1000


async def fill(url: str, n: int) -> float:
    """Enqueue ``n`` no-ops into ``url`` as jobs of ``STEPS_PER_JOB`` steps; return seconds."""
    start = time.monotonic()
    async with runtime(url, 0) as rt:
        for first in range(0, n, STEPS_PER_JOB):
            job = rt.job("bulk")
            for i in range(first, min(n, first + STEPS_PER_JOB)):
                job.add("noop", i)
            await job.push()
    return time.monotonic() - start


def _status(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of ``pid`` in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def worker_rss(url: str, concurrency: int, window: float) -> tuple[int, int]:
    """Run a worker process on ``url`` for ``window`` seconds; return (peak RSS, bodies run)."""
    argv = [sys.executable, "-m", "benchmarks.drivers.asyncjobs_driver", "--serve"]
    argv += ["--at", url, "--url", "sqlite", "--concurrency", str(concurrency)]
    proc = subprocess.Popen(
        argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("the worker process did not start")
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        if proc.stdout.readline().strip() != b"running":
            raise RuntimeError("the worker process did not start its runtime")
        count = 0

        def drain() -> None:  # keep the pipe empty so the worker never blocks on it
            nonlocal count
            assert proc.stdout is not None
            for _ in proc.stdout:
                count += 1

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        time.sleep(window)
        peak = _status(proc.pid)["VmHWM"]
        return peak, count
    finally:
        proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(n: int, concurrency: int, window: float) -> dict[str, float]:
    """Return the idle and loaded worker's peak RSS (MB), their difference, and rates."""
    import anyio

    folder = Path(tempfile.mkdtemp(prefix="asyncjobs-rss-"))
    idle_url = f"sqlite:///{folder / 'idle.db'}"
    full_url = f"sqlite:///{folder / 'full.db'}"
    try:
        anyio.run(fill, idle_url, 0)
        fill_seconds = anyio.run(fill, full_url, n)
        idle, _ = worker_rss(idle_url, concurrency, window)
        loaded, ran = worker_rss(full_url, concurrency, window)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "idle_mb": idle / 2**20,
        "loaded_mb": loaded / 2**20,
        "above_idle_mb": (loaded - idle) / 2**20,
        "fill_per_s": n / fill_seconds,
        "ran_in_window": ran,
    }
