"""The workloads every benchmark driver runs, for asyncjobs and for each peer alike.

Standard library only: the peer drivers run this module inside each peer's own virtualenv,
where neither asyncjobs nor anyio is installed. A driver defines a :class:`Peer` and calls
:func:`main`; the result is one JSON line on stdout, read by ``benchmarks/peers.py``.

Every task body is a no-op that first calls :func:`started` with its argument ``i``; that
call is the one clock every figure reads, whatever the peer:

* ``enqueue_drain``: enqueue ``n`` (one awaited call each, no worker running), then start a
  worker with concurrency ``c`` in this process; the drain ends when the ``n``-th body starts;
* ``e2e``: a worker runs in this process while ``n`` are enqueued; from the first enqueue to
  the ``n``-th body;
* ``latency``: an idle worker (in this process, or in another one for ``latency_xproc``); a
  pause of 5-25 ms, then one enqueue; latency = body start - the instant before the enqueue
  call; p50 and p99 per run;
* ``procs_drain``: ``k`` worker processes are started and ready, ``n`` are enqueued from
  this process, then all are told to go at once; from "go" to the ``n``-th body.

A worker in another process is this same driver run with ``--serve``: it prints ``ready``,
waits for ``go`` on stdin, starts its worker, prints ``running``, then one ``i t`` line per
body (``t`` from ``time.monotonic``, one clock for all processes on Linux), and stops at the
end of its stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import threading
import time
import traceback
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from contextlib import AbstractAsyncContextManager


class Peer(Protocol):
    """What a driver implements over its peer's documented API."""

    version: str
    """The installed version of the peer."""
    cross_process: bool
    """Whether a worker in another process can take this peer's jobs."""
    location: str
    """Where the current queue lives (a file, a schema...); a ``--serve`` child attaches."""

    async def reset(self) -> None:
        """Start an empty queue (a new file, schema or database); set :attr:`location`."""

    async def attach(self, location: str) -> None:
        """Use the queue at ``location`` (in a ``--serve`` child)."""

    async def enqueue(self, i: int) -> None:
        """Enqueue one no-op with argument ``i``; return once the peer has accepted it."""

    def worker(self, concurrency: int) -> AbstractAsyncContextManager[None]:
        """Run a worker in this process while the context is open."""

    async def close(self) -> None:
        """Release the client side (connections)."""


class Marks:
    """Where bodies report their start, from any thread (huey runs bodies in threads)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.get_ident()
        self.serve = False  # in a --serve child: print each start to stdout
        self.expected = 0
        self.count = 0
        self.last = 0.0
        self.done = asyncio.Event()
        self.waiting: dict[int, asyncio.Future[float]] = {}
        self.lock = threading.Lock()

    def expect(self, n: int) -> None:
        self.expected, self.count, self.last = n, 0, 0.0
        self.done = asyncio.Event()

    def mark(self, i: int, at: float) -> None:
        """Record that body ``i`` started at ``at`` (called on the event loop's thread)."""
        self.count += 1
        self.last = max(self.last, at)
        if self.count == self.expected:
            self.done.set()
        future = self.waiting.pop(i, None)
        if future is not None and not future.done():
            future.set_result(at)


MARKS = Marks()


def started(i: int) -> None:
    """Call first in every task body: report that the execution with argument ``i`` started."""
    at = time.monotonic()
    if MARKS.serve:
        with MARKS.lock:  # whole lines, whichever thread writes
            sys.stdout.write(f"{i} {at}\n")
            sys.stdout.flush()
        return
    if threading.get_ident() == MARKS.thread:
        MARKS.mark(i, at)
    else:
        assert MARKS.loop is not None
        MARKS.loop.call_soon_threadsafe(MARKS.mark, i, at)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


async def enqueue_drain(peer: Peer, n: int, concurrency: int) -> list[float]:
    """Return ``[enqueue seconds, drain seconds]``."""
    await peer.reset()
    MARKS.expect(n)
    start = time.monotonic()
    for i in range(n):
        await peer.enqueue(i)
    enqueued = time.monotonic()
    async with peer.worker(concurrency):
        await MARKS.done.wait()
        end = MARKS.last
    return [enqueued - start, end - enqueued]


async def e2e(peer: Peer, n: int, concurrency: int) -> float:
    """Return the seconds from the first enqueue to the ``n``-th body, a worker running."""
    await peer.reset()
    MARKS.expect(n)
    async with peer.worker(concurrency):
        await asyncio.sleep(0.3)  # let the worker settle into its idle loop
        start = time.monotonic()
        for i in range(n):
            await peer.enqueue(i)
        await MARKS.done.wait()
        return MARKS.last - start


async def _latencies(peer: Peer, samples: int) -> list[float]:
    """Milliseconds from before each enqueue call to its body, one at a time, idle between."""
    assert MARKS.loop is not None
    rng = random.Random(7)
    out = []
    for i in range(samples):
        await asyncio.sleep(0.005 + rng.random() * 0.02)
        future: asyncio.Future[float] = MARKS.loop.create_future()
        MARKS.waiting[i] = future
        before = time.monotonic()
        await peer.enqueue(i)
        at = await asyncio.wait_for(future, 30)
        out.append((at - before) * 1000)
    return out


def _summary(latencies: list[float]) -> list[float]:
    return [percentile(latencies, 0.5), percentile(latencies, 0.99)]


async def latency(peer: Peer, samples: int, concurrency: int) -> list[float]:
    """Return ``[p50 ms, p99 ms]`` with the worker in this process."""
    await peer.reset()
    MARKS.expect(samples)
    async with peer.worker(concurrency):
        await asyncio.sleep(0.3)
        return _summary(await _latencies(peer, samples))


class Children:
    """``--serve`` children of this driver, their start lines fed to :data:`MARKS`."""

    def __init__(self, argv: list[str], log: str) -> None:
        self.argv = argv
        self.log = log
        self.procs: list[asyncio.subprocess.Process] = []
        self.readers: list[asyncio.Task[None]] = []

    async def start(self, count: int, location: str, concurrency: int) -> None:
        for _ in range(count):
            with self._log() as log:
                proc = await asyncio.create_subprocess_exec(
                    *self.argv,
                    "--serve",
                    "--at",
                    location,
                    "--concurrency",
                    str(concurrency),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=log,
                )
            self.procs.append(proc)
            await self._expect(proc, b"ready")

    def _log(self) -> BinaryIO:
        return open(self.log, "ab")

    async def _expect(self, proc: asyncio.subprocess.Process, word: bytes) -> None:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if line.strip() != word:
            raise RuntimeError(f"a worker process said {line!r}, expected {word!r}: see {self.log}")

    async def go(self) -> float:
        """Tell every child to start its worker; return when that was said."""
        at = time.monotonic()
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        for proc in self.procs:
            await self._expect(proc, b"running")
            self.readers.append(asyncio.create_task(self._read(proc)))
        return at

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            i, at = line.split()
            MARKS.mark(int(i), float(at))

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for reader in self.readers:
            reader.cancel()
        self.procs, self.readers = [], []


async def latency_xproc(peer: Peer, children: Children, samples: int, c: int) -> list[float]:
    """Return ``[p50 ms, p99 ms]`` with the worker in another process."""
    await peer.reset()
    MARKS.expect(samples)
    await children.start(1, peer.location, c)
    try:
        await children.go()
        await asyncio.sleep(0.3)
        return _summary(await _latencies(peer, samples))
    finally:
        await children.stop()


async def procs_drain(peer: Peer, children: Children, n: int, k: int, c: int) -> float:
    """Return the drain seconds of ``n`` queued no-ops by ``k`` ready worker processes."""
    await peer.reset()
    await children.start(k, peer.location, c)
    try:
        MARKS.expect(n)
        for i in range(n):
            await peer.enqueue(i)
        start = await children.go()
        await MARKS.done.wait()
        return MARKS.last - start
    finally:
        await children.stop()


async def serve(peer: Peer, location: str, concurrency: int) -> None:
    """The ``--serve`` child: attach, say ready, wait for go, run a worker until stdin ends."""
    MARKS.serve = True
    await peer.attach(location)
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if line.strip() != "go":
        return
    async with peer.worker(concurrency):
        print("running", flush=True)
        await loop.run_in_executor(None, sys.stdin.read)
    await peer.close()


async def run(peer: Peer, args: argparse.Namespace, argv: list[str]) -> dict[str, list[object]]:
    """Run the workloads ``args.figures`` names, ``args.runs`` times each; return raw runs."""
    MARKS.loop = asyncio.get_running_loop()
    MARKS.thread = threading.get_ident()
    figures: dict[str, list[object]] = {}
    log = os.path.join(tempfile.gettempdir(), f"bench-children-{os.getpid()}.log")
    children = Children([*argv, "--url", args.url, "--dir", args.dir], log)
    wanted = args.figures.split(",")
    n, c = args.n, args.concurrency
    try:
        for _ in range(args.runs):
            # Interleaved by run, so that a slow minute of the machine hits every figure.
            if "enqueue_drain" in wanted:
                figures.setdefault("enqueue_drain", []).append(await enqueue_drain(peer, n, c))
            if "e2e" in wanted:
                figures.setdefault("e2e", []).append(await e2e(peer, n, c))
            if "latency" in wanted:
                figures.setdefault("latency", []).append(await latency(peer, args.samples, c))
            if "latency_xproc" in wanted and peer.cross_process:
                value = await latency_xproc(peer, children, args.xproc_samples, c)
                figures.setdefault("latency_xproc", []).append(value)
            for k in args.procs:
                if "procs_drain" in wanted and peer.cross_process:
                    seconds = await procs_drain(peer, children, n, k, c)
                    figures.setdefault(f"procs_drain_{k}", []).append(seconds)
    finally:
        await peer.close()
    return figures


def main(make_peer: Callable[[str, str], Peer], argv: list[str]) -> None:
    """Parse the command line; run the workloads (print one JSON line) or serve a worker.

    ``make_peer(url, workdir)`` builds the peer; ``argv`` is how to run this driver again
    (for ``--serve`` children).
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="", help="the server, if the peer needs one")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where files go")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=100, help="latency samples per run")
    parser.add_argument(
        "--xproc-samples", type=int, default=30, help="latency samples per run, other process"
    )
    parser.add_argument("--procs", type=int, nargs="*", default=[], help="worker processes")
    parser.add_argument("--figures", default="enqueue_drain,e2e,latency,latency_xproc")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--at", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()

    async def go() -> None:
        peer = make_peer(args.url, args.dir)
        if args.serve:
            await serve(peer, args.at, args.concurrency)
            return
        try:
            result: dict[str, object] = {
                "version": peer.version,
                "figures": await run(peer, args, argv),
            }
        except Exception as exc:
            traceback.print_exc()
            result = {"version": peer.version, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(result), flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(go())
