"""Server-Sent Events: a runtime's event rows as a ``text/event-stream`` response.

Each frame is ``id: <seq>`` (the store's event sequence number), ``event: state|progress|log``
and one ``data:`` line of JSON. A client that reconnects with ``Last-Event-ID: <seq>`` gets
every event after it: events are rows first, streams second, so nothing is lost in between.
"""

from __future__ import annotations

import logging
from contextlib import aclosing, contextmanager
from typing import TYPE_CHECKING, cast

import anyio

from ._json import dumps, event_json, event_type

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Iterator

    from anyio.abc import ObjectSendStream
    from starlette.types import Message, Receive, Scope, Send

    from .._models import Event
    from .._runtime import Runtime

logger = logging.getLogger(__name__)

RETRY_MS = 2000
"""How long a browser's EventSource waits before it reconnects, sent as ``retry:``."""

BUFFER = 256
"""Events read ahead of a slow client; the reader waits when the buffer is full."""


class Streams:
    """The open event streams of one app, so that a shutdown can end them.

    Why: uvicorn waits for open responses before it runs the lifespan shutdown, and an
    event stream never ends by itself; without this, stopping the server would hang.
    """

    def __init__(self) -> None:
        self._scopes: set[anyio.CancelScope] = set()
        self.closed = False

    @contextmanager
    def track(self, scope: anyio.CancelScope) -> Iterator[None]:
        if self.closed:
            scope.cancel()
        self._scopes.add(scope)
        try:
            yield
        finally:
            self._scopes.discard(scope)

    def close(self) -> None:
        """End every open stream; streams opened from now on end at once. Loop thread only."""
        self.closed = True
        for scope in list(self._scopes):
            scope.cancel()


class EventStream:
    """An ASGI response that streams ``rt.events(...)`` until the client goes away.

    :param after: the sequence number to start after (``None``: from now)
    :param keepalive: seconds of silence after which a comment line is sent, so proxies and
        clients do not take the stream for dead
    """

    def __init__(
        self,
        rt: Runtime,
        streams: Streams,
        *,
        job_id: str | None = None,
        execution_id: str | None = None,
        after: int | None,
        keepalive: float,
    ) -> None:
        self._rt = rt
        self._streams = streams
        self._job_id = job_id
        self._execution_id = execution_id
        self._after = after
        self._keepalive = keepalive

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                    (b"x-accel-buffering", b"no"),  # nginx: do not buffer the stream
                ],
            }
        )
        # The first bytes go out at once, so the client knows it is connected.
        await send(_body(f"retry: {RETRY_MS}\n\n".encode()))
        disconnected = False

        async def watch_disconnect(cancel: anyio.CancelScope) -> None:
            nonlocal disconnected
            while True:
                message: Message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected = True
                    cancel.cancel()
                    return

        async with anyio.create_task_group() as tg:
            with self._streams.track(tg.cancel_scope):
                tg.start_soon(watch_disconnect, tg.cancel_scope)
                sender, receiver = anyio.create_memory_object_stream[bytes](BUFFER)
                tg.start_soon(self._read, sender)
                async with receiver:
                    while True:
                        frame = b""
                        with anyio.move_on_after(self._keepalive):
                            try:
                                frame = await receiver.receive()
                            except anyio.EndOfStream:
                                break
                        await send(_body(frame or b": keep-alive\n\n"))
                tg.cancel_scope.cancel()
        if not disconnected:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _read(self, sender: ObjectSendStream[bytes]) -> None:
        async with sender:
            try:
                stream = self._rt.events(
                    job_id=self._job_id, execution_id=self._execution_id, after=self._after
                )
                async with aclosing(cast("AsyncGenerator[Event, None]", stream)) as events:
                    async for event in events:
                        frame = (
                            f"id: {event.seq}\nevent: {event_type(event)}\ndata: ".encode()
                            + dumps(event_json(event))
                            + b"\n\n"
                        )
                        await sender.send(frame)
            except RuntimeError:
                # The runtime stopped under the stream: end it; the client resumes later
                # from the last id it got.
                if self._rt._store is not None:
                    raise
                logger.debug("event stream ended: the runtime stopped")


def _body(chunk: bytes) -> Message:
    return {"type": "http.response.body", "body": chunk, "more_body": True}
