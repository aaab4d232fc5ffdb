"""The HTTP API: the query API as JSON, commands, and live Server-Sent Events.

Routes (``/openapi.json`` describes each): ``GET /jobs``, ``/jobs/{id}``, ``/executions``,
``/executions/{id}``, ``/executions/{id}/history``, ``/executions/{id}/logs``, ``/logs``,
``/categories``, ``/tasks``; commands ``POST /jobs`` (a one-off job for a registered task),
``POST /jobs/{id}/trigger|stop|pause|resume|destroy`` (or ``DELETE /jobs/{id}``),
``POST /executions/{id}/cancel``; streams ``GET /executions/{id}/events`` and ``GET /events``.

Needs the ``asyncjobs[http]`` extra (Starlette and uvicorn); nothing here is imported by
``import asyncjobs``. Two ways to run it::

    asyncjobs serve myapp.tasks              # the CLI calls serve() below

    app = rt.asgi_app(token=os.environ["ASYNCJOBS_TOKEN"])   # an ASGI app to mount
    fastapi_app.mount("/jobs-api", app)

**Who starts the runtime.** Run on its own (``serve``, or ``uvicorn`` pointed at the app),
the app's lifespan starts the runtime if it is not started yet and stops it again on
shutdown. Mounted in another Starlette or FastAPI app, a sub-app's lifespan does not run:
the host app starts and stops ``rt`` itself (``async with rt:`` in its own lifespan). A
runtime that is started by someone else is never stopped by the app. While the runtime is
not started, every route answers 503.

**Safe by default.**

* ``serve`` binds to 127.0.0.1 and refuses any other address unless a token is set.
* With a token, every route (the SSE streams and ``/openapi.json`` included) wants
  ``Authorization: Bearer <token>``, compared in constant time; the token is never logged.
* Requests whose ``Host`` header is not in ``allowed_hosts`` (loopback names by default)
  are refused with 403, which defeats DNS rebinding; ``["*"]`` allows any host.
* No CORS headers unless ``cors_origins`` is given; a state-changing request that carries a
  foreign ``Origin`` is refused (403), so a web page cannot drive a local API.
* State-changing routes accept only POST (or DELETE); GET answers 405.
* Query parameters come from an allowlist per route and are validated (page sizes bounded,
  ids must be UUIDs); bodies are bounded and validated. Bad input gets a 4xx with the body
  ``{"error": {"type": ..., "message": ...}}``, never a 500.

**Server-Sent Events.** ``GET /executions/{id}/events`` replays one execution's state,
progress and log events from its start, then streams them live, and ends after its final
state. ``GET /events?job_id=...`` (or every job, without ``job_id``) streams from now on and
does not end. Each event's ``id:`` is the store's event sequence number: send it back as
``Last-Event-ID`` (or ``?after=``) to resume after it. A comment line keeps idle streams
alive. An ended execution with nothing left to send answers 204, which tells a browser's
``EventSource`` to stop reconnecting.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ._auth import check_bind, check_token
from ._routes import build_app
from ._server import run_server

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anyio.abc import TaskStatus
    from starlette.applications import Starlette

    from .._runtime import Runtime

__all__ = ("asgi_app", "serve", "serve_async")

TOKEN_ENV = "ASYNCJOBS_TOKEN"


def asgi_app(
    rt: Runtime,
    *,
    token: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
    cors_origins: Sequence[str] | None = None,
    keepalive: float = 15.0,
) -> Starlette:
    """Return the HTTP API of ``rt`` as an ASGI (Starlette) application.

    :param rt: the runtime to expose; see the module docstring for who starts it
    :param token: the bearer token every request must carry; ``None`` for none (then only
        use it behind loopback or your own authentication). Visible ASCII, at least 16
        characters.
    :param allowed_hosts: the host names (without port) that requests may address in their
        ``Host`` header; default the loopback names ``127.0.0.1``, ``localhost``, ``::1``;
        ``["*"]`` allows any
    :param cors_origins: origins (``"https://app.example"``) allowed to call the API from a
        browser; default none, and then no CORS header is ever sent
    :param keepalive: seconds of silence after which an event stream sends a comment line
    :raises ValueError: naming the option, if one is invalid
    """
    app, _ = build_app(
        rt,
        token=check_token(token),
        allowed_hosts=allowed_hosts,
        cors_origins=cors_origins,
        keepalive=keepalive,
    )
    return app


def serve(
    rt: Runtime,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
    cors_origins: Sequence[str] | None = None,
    log_level: str = "info",
) -> None:
    """Serve the HTTP API of ``rt`` with uvicorn until SIGINT or SIGTERM (blocking).

    This is what ``asyncjobs serve`` runs. It runs on uvloop where available, starts the
    runtime (unless it is started already), serves, and on a signal ends the event streams,
    lets the other requests finish, and stops the runtime gracefully. It returns after
    Ctrl+C; after SIGTERM the process ends by that signal, as uvicorn's do.

    :param host: the address to bind; anything but a loopback address (``127.0.0.1``,
        ``::1``, ``localhost``) needs a token
    :param port: the TCP port (``0``: any free port)
    :param token: the bearer token; ``None`` reads ``$ASYNCJOBS_TOKEN`` (preferred: a
        command-line argument is visible to every user in ``ps``)
    :param allowed_hosts: as for :func:`asgi_app`; default the loopback names plus ``host``
        when it is a specific address or name (with ``0.0.0.0`` pass the names clients use)
    :param cors_origins: as for :func:`asgi_app`
    :param log_level: uvicorn's log level (``"info"``, ``"warning"``, ...); the access log
        shows method, path and status, never a header
    :raises ValueError: if ``host`` is not loopback and there is no token, or an option is
        invalid (raised before anything is bound or started)
    :raises StoreError: if the runtime's store cannot be opened
    """
    import contextlib
    import importlib.util
    from functools import partial

    import anyio

    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    token = check_token(token)
    check_bind(host, token)
    run = partial(
        serve_async,
        rt,
        host=host,
        port=port,
        token=token,
        allowed_hosts=allowed_hosts,
        cors_origins=cors_origins,
        log_level=log_level,
        configure_logging=True,
    )
    use_uvloop = importlib.util.find_spec("uvloop") is not None
    # uvicorn catches the first Ctrl+C, shuts down gracefully, then raises it again.
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(run, backend="asyncio", backend_options={"use_uvloop": use_uvloop})


async def serve_async(
    rt: Runtime,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
    cors_origins: Sequence[str] | None = None,
    log_level: str = "info",
    keepalive: float = 15.0,
    configure_logging: bool = False,
    task_status: TaskStatus[tuple[str, int]] | None = None,
) -> None:
    """Serve the HTTP API of ``rt`` in the running event loop until cancelled.

    Use it as ``port = await tg.start(partial(serve_async, rt, port=0))``: it reports the
    ``(host, port)`` it bound once the socket listens (connections made from then on wait
    until uvicorn accepts them). The token is taken as given (no environment fallback).
    Cancelling it shuts down as a signal to :func:`serve` does: streams end, requests
    finish, and the runtime is stopped if this call started it.

    :param configure_logging: let uvicorn install its logging configuration
    :raises ValueError: as :func:`serve`
    """
    await run_server(
        rt,
        host=host,
        port=port,
        token=check_token(token),
        allowed_hosts=allowed_hosts,
        cors_origins=cors_origins,
        log_level=log_level,
        keepalive=keepalive,
        configure_logging=configure_logging,
        task_status=task_status,
    )
