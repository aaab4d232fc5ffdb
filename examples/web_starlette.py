"""A Starlette app: start a job from an endpoint, stream its progress to the browser (SSE).

What it shows: the runtime started and stopped by the app's lifespan, an endpoint
(``POST /render``) that starts a job and answers at once with its execution id, the
runtime's HTTP API mounted at ``/api`` (``rt.asgi_app()``), and a page whose JavaScript
follows ``/api/executions/{id}/events`` with ``EventSource`` and moves a progress bar.
Needs the ``asyncjobs[http]`` extra (Starlette, uvicorn), and httpx to play the browser.

Run it (from the repository root)::

    python examples/web_starlette.py            # serves, plays the browser once, exits
    python examples/web_starlette.py --serve    # then open http://127.0.0.1:8000

What you will see: without ``--serve`` the script starts the app on a free loopback port
and plays the browser's part itself: it posts to ``/render`` and prints every Server-Sent
Event of the job as it arrives, progress in order, then the final state (progress is
stored at most every ``progress_interval``, 0.25 s by default: a busy machine may show
fewer steps, never the last one missing). You should see::

    progress 25 frame 1 of 4
    progress 100 frame 4 of 4
    state completed
    the browser saw the progress in order, then completed
"""

from __future__ import annotations

import json
import socket
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Mount, Route

import asyncjobs as aj

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request

rt = aj.Runtime("memory://", system_jobs=False)


@rt.task
async def render(ctx: aj.Context, frames: int = 4) -> str:
    for frame in range(1, frames + 1):
        await anyio.sleep(0.3)  # the real rendering would go here
        ctx.progress(100 * frame / frames, f"frame {frame} of {frames}")
    return f"{frames} frames"


async def start_render(request: Request) -> JSONResponse:
    job = await rt.once(render, 4)
    (execution,) = await job.executions()
    return JSONResponse({"job": job.id, "execution": execution.id}, status_code=202)


PAGE = """<!doctype html><meta charset="utf-8"><title>asyncjobs</title>
<button id="go">Render</button> <progress id="bar" max="100" value="0"></progress>
<span id="status"></span>
<script>
document.getElementById("go").onclick = async () => {
  const started = await (await fetch("/render", {method: "POST"})).json();
  const events = new EventSource(`/api/executions/${started.execution}/events`);
  events.addEventListener("progress", (e) => {
    const data = JSON.parse(e.data);
    document.getElementById("bar").value = data.progress;
    document.getElementById("status").textContent = data.message;
  });
  events.addEventListener("state", (e) => {
    const data = JSON.parse(e.data);
    document.getElementById("status").textContent = data.status;
    if (["completed", "failed", "cancelled"].includes(data.status)) events.close();
  });
};
</script>
"""


async def page(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with rt:  # a mounted sub-app's lifespan does not run: the host app starts rt
        yield


app = Starlette(
    routes=[
        Route("/", page),
        Route("/render", start_render, methods=["POST"]),
        Mount("/api", app=rt.asgi_app()),
    ],
    lifespan=lifespan,
)


async def play_the_browser(base: str) -> None:
    """Do what the page's JavaScript does, and print each event as it arrives."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        started = (await client.post("/render")).json()
        seen: list[float] = []
        final = "?"
        url = f"/api/executions/{started['execution']}/events"
        async with client.stream("GET", url) as stream:
            kind = ""
            async for line in stream.aiter_lines():
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    data = json.loads(line.removeprefix("data: "))
                    if kind == "progress":
                        seen.append(data["progress"])
                        print(f"progress {data['progress']:g} {data['message']}")
                    elif kind == "state":
                        print(f"state {data['status']}")
                        final = data["status"]
        order = "in order" if seen == sorted(seen) and seen else "OUT OF ORDER"
        print(f"the browser saw the progress {order}, then {final}")


async def main(serve_forever: bool) -> None:
    port = 8000
    if not serve_forever:
        with socket.socket() as sock:  # a free loopback port for this one run
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        while not server.started:  # noqa: ASYNC110 (uvicorn has a flag, no event)
            await anyio.sleep(0.01)
        if serve_forever:
            print(f"open http://127.0.0.1:{port} and press Render (Ctrl+C to stop)")
            return
        await play_the_browser(f"http://127.0.0.1:{port}")
        server.should_exit = True


if __name__ == "__main__":
    anyio.run(main, "--serve" in sys.argv[1:])
