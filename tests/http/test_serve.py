"""Who starts the runtime (the app's lifespan, or the host app), and serve() as the CLI runs it."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

import asyncjobs as aj

from .conftest import served

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.types import ASGIApp

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]  # where `tests` is importable from


@asynccontextmanager
async def uvicorn_serving(app: ASGIApp) -> AsyncIterator[str]:
    """Serve any ASGI app with plain uvicorn (lifespan on) on a free loopback port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="on", log_config=None, log_level="warning")
    )
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
            server.should_exit = True
    finally:
        sock.close()


def small_runtime(tmp_path: Path) -> aj.Runtime:
    rt = aj.Runtime(f"sqlite:///{tmp_path}/serve.db", system_jobs=False, poll_interval=0.05)

    @rt.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    return rt


async def test_served_alone_the_app_starts_and_stops_the_runtime(tmp_path: Path) -> None:
    rt = small_runtime(tmp_path)
    async with (
        uvicorn_serving(rt.asgi_app()) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        r = await client.post("/jobs", json={"task": "add", "args": [2, 2]})
        assert r.status_code == 201
        assert rt._store is not None
    assert rt._store is None  # the lifespan stopped what it started


async def test_mounted_the_host_app_starts_the_runtime(tmp_path: Path) -> None:
    rt = small_runtime(tmp_path)
    api = rt.asgi_app()

    # A host app that forgot to start the runtime: a clear 503, not a 500.
    async with (
        uvicorn_serving(Starlette(routes=[Mount("/jobs-api", app=api)])) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        r = await client.get("/jobs-api/jobs")
        assert r.status_code == 503
        assert r.json()["error"]["type"] == "NotStarted"
        # What needs no store still answers.
        assert (await client.get("/jobs-api/tasks")).status_code == 200
    assert rt._store is None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with rt:
            yield

    host = Starlette(routes=[Mount("/jobs-api", app=api)], lifespan=lifespan)
    async with (
        uvicorn_serving(host) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        r = await client.post("/jobs-api/jobs", json={"task": "add", "args": [1, 2]})
        assert r.status_code == 201
        job = await rt.jobs.get(r.json()["id"])
        with anyio.fail_after(10):
            assert await job.result() == 3
    assert rt._store is None


async def test_a_runtime_started_elsewhere_is_left_running(tmp_path: Path) -> None:
    rt = small_runtime(tmp_path)
    async with rt:
        async with served(rt) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
            assert (await client.get("/jobs")).status_code == 200
        assert rt._store is not None  # serve_async did not stop what it did not start
        assert (await rt.jobs.count()) == 0


async def test_serve_runs_until_ctrl_c_with_the_token_from_the_environment(
    tmp_path: Path, token: str
) -> None:
    env = {**os.environ, "ASYNCJOBS_TOKEN": token, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "tests.http.serve_app", f"sqlite:///{tmp_path}/cli.db"]
    async with await anyio.open_process(command, env=env, cwd=ROOT) as process:
        assert process.stderr is not None and process.stdout is not None
        log = b""
        with anyio.fail_after(30):
            while not (found := re.search(rb"running on http://127\.0\.0\.1:(\d+)", log)):
                try:
                    log += await process.stderr.receive()
                except anyio.EndOfStream:
                    pytest.fail(f"the server ended before serving: {log.decode()}")
        url = f"http://127.0.0.1:{int(found.group(1))}"
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            assert (await client.get("/tasks")).status_code == 401
            r = await client.get("/tasks", headers={"Authorization": f"Bearer {token}"})
            assert [t["name"] for t in r.json()["items"]] == ["add"]
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(30):
            await process.wait()
            out = b"".join([chunk async for chunk in process.stdout])
            log += b"".join([chunk async for chunk in process.stderr])
    assert process.returncode == 0, log.decode()
    assert b"serve returned" in out
    assert b"running on http://127.0.0.1:" in log
    assert b"GET /tasks" in out  # uvicorn's access log, on stdout...
    assert token.encode() not in out + log  # ...without the token
