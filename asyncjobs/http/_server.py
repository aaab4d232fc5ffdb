"""Running the API under uvicorn: bind, start the runtime, serve, shut down in order."""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

import anyio
import uvicorn

from ._auth import check_bind
from ._routes import build_app

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anyio.abc import TaskStatus

    from .._runtime import Runtime
    from ._sse import Streams

SHUTDOWN_GRACE = 10
"""Seconds that requests in flight get to finish when the server stops."""


class _Server(uvicorn.Server):
    """uvicorn's server, ending the event streams first when it shuts down.

    Why: uvicorn waits for open responses before its lifespan shutdown, and an event stream
    does not end by itself.
    """

    def __init__(self, config: uvicorn.Config, streams: Streams) -> None:
        super().__init__(config)
        self._streams = streams

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._streams.close()
        await super().shutdown(sockets=sockets)


async def run_server(
    rt: Runtime,
    *,
    host: str,
    port: int,
    token: str | None,
    allowed_hosts: Sequence[str] | None,
    cors_origins: Sequence[str] | None,
    log_level: str,
    keepalive: float,
    configure_logging: bool,
    task_status: TaskStatus[tuple[str, int]] | None,
) -> None:
    """Serve until cancelled or signalled; see :func:`asyncjobs.http.serve_async`."""
    check_bind(host, token)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be from 0 to 65535, got {port!r}")
    app, streams = build_app(
        rt,
        token=token,
        allowed_hosts=allowed_hosts,
        cors_origins=cors_origins,
        keepalive=keepalive,
        bind=host,
    )
    # Bind here rather than in uvicorn: the caller learns the port (0 picks a free one)
    # before serving, and connections made until uvicorn accepts wait in the backlog.
    sock = await anyio.to_thread.run_sync(_bind, host, port)
    started_here = False
    try:
        bound = sock.getsockname()
        options: dict[str, object] = {}
        if not configure_logging:
            options["log_config"] = None
        config = uvicorn.Config(
            app,
            host=str(bound[0]),  # only for uvicorn's "running on" line: it serves `sock`
            port=int(bound[1]),
            log_level=log_level,
            lifespan="on",
            proxy_headers=False,  # no client may claim another address through headers
            server_header=False,
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
            **options,  # type: ignore[arg-type]
        )
        server = _Server(config, streams)
        if rt._store is None:
            # Started before uvicorn so that a store that cannot open raises here, with its
            # own error, instead of uvicorn's exit on a failed lifespan.
            await rt.start()
            started_here = True
        if task_status is not None:
            task_status.started((str(bound[0]), int(bound[1])))
        # uvicorn says where it listens only for sockets it binds itself: say it for it,
        # through its logger, which its logging configuration shows.
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else str(bound[0])
        logging.getLogger("uvicorn.error").info(
            "asyncjobs HTTP API running on http://%s:%d (Press CTRL+C to quit)", shown, bound[1]
        )
        try:
            await server.serve(sockets=[sock])
        except anyio.get_cancelled_exc_class():
            # Cancelled: shut down as a signal would, within a bound, then go on cancelling.
            with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_GRACE + 5):
                if server.started:
                    server.should_exit = True
                    await server.shutdown(sockets=[sock])
            raise
    finally:
        sock.close()
        if started_here:
            with anyio.CancelScope(shield=True):
                await rt.stop()


def _bind(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock
