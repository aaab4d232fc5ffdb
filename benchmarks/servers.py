"""Throwaway PostgreSQL and Redis servers for the benchmarks, on free loopback ports.

PostgreSQL is the tests' server (:class:`tests.pg.PostgresServer`: a temporary directory, run
as the unprivileged ``postgres`` user when we are root, fsync off, so the figures measure the
software and not this machine's disk). Redis is started the same way here: ``redis-server``
in a temporary directory, loopback only, no persistence. Both are stopped, and their
directories removed, when their context ends.

Neither is installed by the benchmark unless asked: :func:`ensure_redis` runs
``apt-get install redis-server`` only with ``install=True`` (``python -m benchmarks --install``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from tests.pg import PostgresServer, free_port

__all__ = ["PostgresServer", "RedisServer", "create_database", "ensure_redis", "redis_version"]


def ensure_redis(*, install: bool) -> str | None:
    """Return ``None`` if ``redis-server`` can run, else why not (after installing it, if asked).

    :param install: run ``apt-get update`` and ``apt-get install -y redis-server`` when it is
        missing (needs root and the Debian package index)
    """
    if shutil.which("redis-server") is not None:
        return None
    if not install:
        return "redis-server is not installed (apt-get install redis-server, or pass --install)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "redis-server"]):
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            return f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-300:]}"
    return None if shutil.which("redis-server") else "redis-server is still missing after install"


def redis_version() -> str:
    """The installed ``redis-server`` version, e.g. ``7.0.15``."""
    out = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout
    for word in out.split():
        if word.startswith("v="):
            return word.removeprefix("v=")
    return out.strip()


class RedisServer:
    """One ``redis-server`` in a temporary directory: loopback, a free port, no persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="asyncjobs-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        """The ``redis://`` URL of database ``db``."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        """Start the server; return once it answers ``PING``."""
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--dir", str(self.root), "--save", "", "--appendonly", "no"]
        argv += ["--logfile", str(self.root / "server.log"), "--daemonize", "no"]
        self._process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self._ping():
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = self.root / "server.log"
                raise RuntimeError(
                    f"redis-server did not start:\n{log.read_text() if log.exists() else ''}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def create_database(server: PostgresServer, name: str) -> str:
    """Create database ``name`` on ``server``; return its plain ``postgresql://`` URL."""
    done = subprocess.run(
        [
            str(server.bindir / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(server.port),
            "-U",
            "postgres",
            "-q",
            "-c",
            f'CREATE DATABASE "{name}"',
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"CREATE DATABASE {name} failed: {done.stderr.strip()}")
    return f"postgresql://postgres@127.0.0.1:{server.port}/{name}?sslmode=disable"


def postgres_version(server: PostgresServer) -> str:
    """The server's version, e.g. ``15.18``."""
    out = subprocess.run(
        [str(server.bindir / "postgres"), "--version"], capture_output=True, text=True, check=False
    ).stdout
    words = out.split()  # "postgres (PostgreSQL) 15.18 (Debian ...)"
    return words[2] if len(words) > 2 else out.strip()
