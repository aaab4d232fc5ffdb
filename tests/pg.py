"""A throwaway PostgreSQL server for the tests: started once per session, removed after.

The server binaries come from ``pg_config --bindir`` (else ``PATH``). The data directory and
the socket directory live in one temporary directory; the server listens on a free loopback
port only, trusts local connections, and runs without fsync (its data dies with the session).
PostgreSQL refuses to run as root, so under root (as in CI) the binaries run as the
unprivileged ``postgres`` user that Debian's ``postgresql`` package creates, and the
temporary directory is handed to that user.

Each test gets its own PostgreSQL schema in the one database (see :meth:`PostgresServer.url`),
so tests never see each other's rows and no test pays for a new database.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Self

SUPERUSER = "postgres"
"""The superuser that ``initdb`` creates, whoever runs the server."""


def server_bindir() -> Path | None:
    """Return the directory that holds ``initdb`` and ``postgres``, or ``None``."""
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        found = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if found and (Path(found) / "initdb").exists():
            return Path(found)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb is not None else None


def free_port() -> int:
    """Return a TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One PostgreSQL server in a temporary directory (see the module docstring)."""

    def __init__(self) -> None:
        bindir = server_bindir()
        if bindir is None:
            raise RuntimeError(
                "PostgreSQL server binaries (initdb) were not found via pg_config or PATH; "
                "install the 'postgresql' package (.ci/run does)"
            )
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="asyncjobs-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "server.log"
        self._user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._user = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "the tests run as root, and PostgreSQL refuses to: an unprivileged "
                    "'postgres' user is needed (the 'postgresql' package creates it)"
                ) from None
        self._process: subprocess.Popen[bytes] | None = None

    def _run(self, *argv: str) -> None:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            **self._as_user(),  # type: ignore[call-overload]
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")

    def _as_user(self) -> dict[str, object]:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "cwd": str(self.root)}

    def start(self) -> None:
        """Create the cluster and start the server; return once it accepts connections."""
        self.sockets.mkdir()
        if self._user is not None:
            for path in (self.root, self.sockets):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        settings = {
            "listen_addresses": "127.0.0.1",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "300",
        }
        argv = [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        argv += ["-k", str(self.sockets)]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        log = self.log.open("ab")
        try:
            self._process = subprocess.Popen(  # type: ignore[call-overload]
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                **self._as_user(),
            )
        finally:
            log.close()
        deadline = time.monotonic() + 30
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"PostgreSQL did not start:\n{self.log.read_text()}")
            ready = subprocess.run(
                [str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                check=False,
            )
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL was not ready in 30 s:\n{self.log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            # SIGINT is PostgreSQL's "fast" shutdown: it disconnects clients (SIGTERM, "smart",
            # would wait for them).
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, *, schema: str | None = None, database: str = "postgres") -> str:
        """Return a store URL for this server; by default with a new schema of its own.

        ``sslmode=disable``: this server has no TLS, and asyncpg's default ("prefer") first
        asks for it; on plain asyncio a connection closed during that exchange leaves a
        never-retrieved "unexpected connection_lost() call" future behind (an asyncpg bug).
        """
        name = schema if schema is not None else f"t_{uuid.uuid4().hex[:16]}"
        return (
            f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"
            f"?schema={name}&sslmode=disable"
        )

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
