"""A real uvicorn serving the API on a free loopback port, driven by a real httpx client."""

from __future__ import annotations

import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest

import asyncjobs as aj
from asyncjobs.http import serve_async

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream


@dataclass
class Api:
    """A served runtime: its base URL, its token, a client that sends the token."""

    rt: aj.Runtime
    url: str
    token: str
    client: httpx.AsyncClient
    gate: MemoryObjectSendStream[None]
    """Each item sent lets the ``steps`` task take one more step."""
    extra: dict[str, Any] = field(default_factory=dict)

    def anonymous(self, **options: Any) -> httpx.AsyncClient:
        """A client without the token."""
        return httpx.AsyncClient(base_url=self.url, **options)

    async def create(self, task: str, **body: Any) -> dict[str, Any]:
        """Create a job through the API; return it with its first execution's id."""
        r = await self.client.post("/jobs", json={"task": task, **body})
        assert r.status_code == 201, r.text
        job: dict[str, Any] = r.json()
        r = await self.client.get("/executions", params={"job_id": job["id"]})
        assert r.status_code == 200, r.text
        job["execution_id"] = r.json()["items"][0]["id"]
        return job

    async def wait_ended(self, execution_id: str) -> dict[str, Any]:
        """Wait (bounded) until the execution has ended, through the runtime."""
        with anyio.fail_after(10):
            while True:
                execution = await self.rt.executions.get(execution_id)
                if execution.is_terminal:
                    break
                await self.rt._changes_wait(self.rt._changes_arm(execution_id))
        r = await self.client.get(f"/executions/{execution_id}")
        body: dict[str, Any] = r.json()
        return body


def make_runtime(store_url: str, gate: MemoryObjectReceiveStream[None]) -> aj.Runtime:
    """A runtime with the tasks the HTTP tests use."""
    rt = aj.Runtime(
        store_url,
        workers=4,
        poll_interval=0.05,
        progress_interval=0,
        shutdown_timeout=5,
        system_jobs=False,
    )

    @rt.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    @rt.task(name="steps")
    async def steps(ctx: aj.Context, n: int) -> int:
        # One progress report per step, and each next step waits for the test: the
        # stream is provably read while the execution runs.
        for i in range(1, n + 1):
            ctx.progress(100 * i / n, f"step {i}")
            await gate.receive()
        ctx.log.info("all %d steps done", n)
        return n

    @rt.task(name="hang")
    async def hang() -> None:
        await anyio.sleep_forever()

    @rt.task(name="noisy")
    async def noisy(ctx: aj.Context) -> None:
        ctx.log.debug("a debug line")
        ctx.log.info("an info line")
        ctx.log.warning("a warning line")
        ctx.log.error("an error line")

    @rt.task(name="fail")
    async def fail() -> None:
        raise ValueError("boom")

    return rt


@pytest.fixture
def token() -> str:
    return secrets.token_urlsafe(24)


@asynccontextmanager
async def served(rt: aj.Runtime, **options: Any) -> AsyncIterator[str]:
    """Serve ``rt`` on a free loopback port for the block; yield the base URL."""
    options.setdefault("keepalive", 0.2)
    options.setdefault("log_level", "warning")
    async with anyio.create_task_group() as tg:
        host, port = await tg.start(partial(serve_async, rt, port=0, **options))
        assert host == "127.0.0.1"
        yield f"http://127.0.0.1:{port}"
        tg.cancel_scope.cancel()


@pytest.fixture
async def api(tmp_path: Path, token: str) -> AsyncIterator[Api]:
    gate_send, gate_receive = anyio.create_memory_object_stream[None](100)
    rt = make_runtime(f"sqlite:///{tmp_path}/http.db", gate_receive)
    with gate_send, gate_receive:
        async with served(rt, token=token) as url:
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
                yield Api(rt=rt, url=url, token=token, client=client, gate=gate_send)
