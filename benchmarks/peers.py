"""The peers, each in a virtualenv of its own, and asyncjobs, through one harness.

Every contender is a driver script in ``benchmarks/drivers`` run as a child process that
prints one JSON line (see ``drivers/_harness.py``). The peers' drivers run in virtualenvs under
``.bench-venvs/`` (git-ignored), created and filled with ``pip install <peer>`` by
:func:`ensure_venv` on first use and reused afterwards; nothing is pinned, and the version
each driver imports is what the report shows. A peer whose install or run fails is reported
with the reason, never dropped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DRIVERS = Path(__file__).resolve().parent / "drivers"
VENVS = ROOT / ".bench-venvs"


@dataclass(frozen=True)
class Contender:
    """One driver run: who, with what server, and which workloads."""

    name: str
    """The row label, e.g. ``huey (SQLite)``."""
    requirements: tuple[str, ...] = ()
    """What ``pip install`` puts in its virtualenv; empty: asyncjobs, this interpreter."""
    driver: str = ""
    """The driver script in ``drivers/`` (peers), or the asyncjobs driver's store kind."""
    server: str = ""
    """``postgres``, ``redis`` or empty: which server URL the driver gets."""
    figures: tuple[str, ...] = ("enqueue_drain", "e2e", "latency", "latency_xproc")
    procs: tuple[int, ...] = ()
    """Worker-process counts for the ``procs_drain`` figure."""
    persistent: bool = True
    """Whether an enqueued job survives the process (taskiq's in-memory broker: no)."""


@dataclass
class Result:
    """A contender's raw runs (``figures``), or why there are none (``error``)."""

    contender: Contender
    version: str = "?"
    figures: dict[str, list[object]] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    def add(self, other: Result) -> None:
        """Fold in another run of the same contender: its figures, and its error if the
        first (a failed round is reported, the rounds that ran still count)."""
        if other.version != "?":
            self.version = other.version
        for key, values in other.figures.items():
            self.figures.setdefault(key, []).extend(values)
        self.error = self.error or other.error
        self.seconds += other.seconds


PG_FIGURES = ("enqueue_drain", "e2e", "latency", "latency_xproc", "procs_drain")

PEERS = (
    Contender("huey (SQLite)", ("huey",), "peer_huey.py"),
    Contender("procrastinate (PostgreSQL)", ("procrastinate",), "peer_procrastinate.py",
              "postgres", PG_FIGURES, (1, 3)),
    Contender("arq (Redis)", ("arq",), "peer_arq.py", "redis"),
    # saq 0.26 imports typing_extensions without declaring it as a dependency.
    Contender("saq (Redis)", ("saq[redis]", "typing_extensions"), "peer_saq.py", "redis"),
    Contender("taskiq (Redis)", ("taskiq-redis",), "peer_taskiq_redis.py", "redis"),
    Contender("taskiq (in-memory broker)", ("taskiq",), "peer_taskiq.py", persistent=False),
)  # fmt: skip

ASYNCJOBS = (
    Contender("asyncjobs memory", driver="memory://"),
    Contender("asyncjobs SQLite", driver="sqlite"),
    # Not a target: what the store's one durability option buys (WAL without an fsync per
    # commit: a power loss may take the last commits, a crash of the process never does).
    Contender("asyncjobs SQLite, synchronous=normal", driver="sqlite?synchronous=normal"),
    Contender("asyncjobs PostgreSQL", driver="postgresql", server="postgres",
              figures=PG_FIGURES, procs=(1, 3)),
)  # fmt: skip


def ensure_venv(contender: Contender) -> Path:
    """Return the Python of the contender's virtualenv, creating and filling it if needed.

    :raises RuntimeError: with pip's last words, if the install fails
    """
    folder = VENVS / Path(contender.driver).stem.removeprefix("peer_")
    python = folder / "bin" / "python"
    stamp = folder / "installed.txt"
    wanted = "\n".join(contender.requirements)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(folder)],
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         *contender.requirements],
    ]  # fmt: skip
    for argv in steps:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            words = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"{' '.join(argv[-1:])} failed: {' / '.join(words)}")
    stamp.write_text(wanted)
    return python


def run(
    contender: Contender,
    urls: dict[str, str | None],
    *,
    n: int,
    concurrency: int,
    runs: int,
    samples: int,
    xproc_samples: int,
    timeout: float = 1800,
) -> Result:
    """Run one contender's driver and collect its raw figures (or the reason it has none)."""
    result = Result(contender)
    url = ""
    if contender.server:
        found = urls.get(contender.server)
        if found is None:
            result.error = f"no {contender.server} server"
            return result
        url = found
    try:
        if contender.requirements:
            python = ensure_venv(contender)
            argv = [str(python), str(DRIVERS / contender.driver)]
        else:
            argv = [sys.executable, "-m", "benchmarks.drivers.asyncjobs_driver"]
            url = url or contender.driver
    except RuntimeError as exc:
        result.error = f"not installed: {exc}"
        return result
    workdir = tempfile.mkdtemp(prefix="asyncjobs-bench-")
    argv += ["--url", url, "--dir", workdir, "--n", str(n), "--concurrency", str(concurrency)]
    argv += ["--runs", str(runs), "--samples", str(samples), "--xproc-samples", str(xproc_samples)]
    argv += ["--figures", ",".join(contender.figures)]
    if contender.procs:
        argv += ["--procs", *map(str, contender.procs)]
    log = Path(workdir) / "driver.log"
    start = time.monotonic()
    with log.open("wb") as stderr:
        try:
            done = subprocess.run(
                argv,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=stderr,
                timeout=timeout,
                check=False,
                env={**os.environ, "TMPDIR": workdir},
            )
        except subprocess.TimeoutExpired:
            result.error = f"timed out after {timeout:.0f} s (log: {log})"
            return result
    result.seconds = time.monotonic() - start
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = log.read_text(errors="replace").strip().splitlines()[-1:]
        result.error = f"driver failed ({done.returncode}): {' '.join(tail)} (log: {log})"
        return result
    result.version = answer.get("version", "?")
    if "error" in answer:
        result.error = f"{answer['error']} (log: {log})"
    result.figures = answer.get("figures", {})
    if result.error is None:
        shutil.rmtree(workdir, ignore_errors=True)  # kept when it failed: the log is there
    return result
