"""The routes: JSON queries, commands, event streams; input checks; errors as 4xx JSON.

Every input is checked here before it reaches the runtime: query parameters against a
per-route allowlist, ids against the UUID form, numbers against bounds, bodies against the
fields :func:`create_job` knows. Values reach the store only as bound parameters, never as
SQL text. A failed check is a :class:`HTTPError`, answered as ``{"error": {...}}``.
"""

from __future__ import annotations

import logging
import math
import re
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.routing import Route

from .._errors import (
    ExecutionNotFound,
    InvalidArguments,
    InvalidSchedule,
    JobNotFound,
    UnknownTask,
)
from .._runtime import HEALTH_TASK, RETENTION_TASK
from .._schedules import Once
from .._states import TERMINAL, ExecutionStatus, JobStatus
from .._tasks import check_category
from .._types import INT32_MAX, INT32_MIN, MAX_PAGE, MAX_SECONDS
from ..stores.base import MAX_PAGE_SIZE
from ._auth import HostGuard, TokenGuard, host_names, origins
from ._json import (
    LEVELS,
    JSONResponse,
    category_json,
    error_response,
    execution_json,
    items_json,
    job_json,
    log_json,
    page_json,
    task_json,
    transition_json,
)
from ._sse import EventStream, Streams

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence

    from starlette.requests import Request

    from .._runtime import Runtime
    from .._types import JSON

    Answer = Response | EventStream
    Endpoint = Callable[[Request], Awaitable[Answer]]

logger = logging.getLogger(__name__)

MAX_TEXT = 200
"""The longest name, category, key or task filter accepted."""
MAX_BODY = 1 << 20
"""The largest request body accepted, in bytes."""
MAX_DEPTH = 32
"""The deepest nesting of JSON values accepted in arguments and shared data."""
INT32 = (INT32_MIN, INT32_MAX)
MAX_SEQ = 2**63 - 1
SYSTEM_TASKS = frozenset({RETENTION_TASK, HEALTH_TASK})

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ZONE = re.compile(r"[A-Za-z0-9_+\-/]{1,64}")
JOB_STATUSES = tuple(s.value for s in JobStatus)
EXECUTION_STATUSES = tuple(s.value for s in ExecutionStatus)
MODES = ("coroutine", "process")
CREATE_FIELDS = (
    "task",
    "args",
    "kwargs",
    "name",
    "category",
    "priority",
    "at",
    "after",
    "tz",
    "key",
    "shared",
    "mode",
    "timeout",
    "retries",
)


class HTTPError(Exception):
    """A request the API refuses, with the status and the error body to answer."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        parameter: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.parameter = parameter
        self.headers = headers

    def response(self) -> Response:
        return error_response(
            self.status, self.type, self.message, parameter=self.parameter, headers=self.headers
        )


def bad(parameter: str, message: str, status: int = 400) -> HTTPError:
    """A refused input: 400 for the query and path, 422 for a body field."""
    kind = "InvalidParameter" if status == 400 else "InvalidBody"
    return HTTPError(status, kind, message, parameter=parameter)


# -- the query string ---------------------------------------------------------------------


class Query:
    """The query parameters of one request, checked against the route's allowlist."""

    def __init__(self, request: Request, allowed: Collection[str]) -> None:
        self._values: dict[str, str] = {}
        for name, value in request.query_params.multi_items():
            if name not in allowed:
                expected = ", ".join(sorted(allowed)) or "none"
                raise bad(name, f"unknown query parameter {name!r}; expected: {expected}")
            if name in self._values:
                raise bad(name, f"query parameter {name!r} is given more than once")
            self._values[name] = value

    def get(self, name: str) -> str | None:
        value = self._values.get(name)
        return None if value is None or value == "" else value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        text = self.get(name)
        if text is None:
            return default
        if not re.fullmatch(r"[+-]?[0-9]{1,19}", text):
            raise bad(name, f"{name} must be an integer from {low} to {high}, got {text!r}")
        value = int(text)
        if not low <= value <= high:
            raise bad(name, f"{name} must be an integer from {low} to {high}, got {value}")
        return value

    def page(self, default_size: int = 50) -> tuple[int, int]:
        return (
            self.integer("page", 1, 1, MAX_PAGE),
            self.integer("page_size", default_size, 1, MAX_PAGE_SIZE),
        )

    def choice(self, name: str, choices: Sequence[str]) -> str | None:
        value = self.get(name)
        if value is not None and value not in choices:
            raise bad(name, f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def text(self, name: str) -> str | None:
        value = self.get(name)
        if value is not None:
            check_text(name, value, bad)
        return value

    def category(self) -> str | None:
        value = self.text("category")
        if value is not None:
            try:
                check_category(value)
            except ValueError as exc:
                raise bad("category", str(exc)) from None
        return value

    def uuid(self, name: str, what: str) -> str | None:
        value = self.get(name)
        return None if value is None else check_uuid(name, value, what)


def check_uuid(name: str, value: str, what: str, status: int = 400) -> str:
    """Return the id, lower-case, if it has the UUID form every asyncjobs id has."""
    if not _UUID.fullmatch(value):
        raise bad(name, f"{name} must be {what} id (a UUID), got {value[:80]!r}", status)
    return value.lower()


def check_text(name: str, value: str, error: Callable[..., HTTPError], status: int = 400) -> str:
    if len(value) > MAX_TEXT:
        raise error(name, f"{name} must be at most {MAX_TEXT} characters, got {len(value)}", status)
    if _CONTROL.search(value):
        raise error(name, f"{name} must not contain control characters, got {value!r}", status)
    return value


def last_event_id(request: Request, query: Query) -> int | None:
    """The cursor of an event stream: ``Last-Event-ID`` (a reconnect), else ``?after=``."""
    header = request.headers.get("last-event-id", "").strip()
    if header:
        if not header.isdigit() or len(header) > 19 or int(header) > MAX_SEQ:
            raise bad(
                "Last-Event-ID",
                f"Last-Event-ID must be an event id (an integer >= 0), got {header[:40]!r}",
            )
        return int(header)
    text = query.get("after")
    return None if text is None else query.integer("after", 0, 0, MAX_SEQ)


# -- the app ------------------------------------------------------------------------------


def build_app(
    rt: Runtime,
    *,
    token: str | None,
    allowed_hosts: Sequence[str] | None,
    cors_origins: Sequence[str] | None,
    keepalive: float,
    bind: str | None = None,
) -> tuple[Starlette, Streams]:
    """Return the Starlette app and its event streams (which a server ends at shutdown)."""
    hosts = host_names(allowed_hosts, bind=bind)
    allowed_origins = origins(cors_origins)
    if not isinstance(keepalive, int | float) or not 0 < keepalive <= 3600:
        raise ValueError(f"keepalive must be seconds from 0 to 3600, got {keepalive!r}")
    streams = Streams()
    api = API(rt, streams, float(keepalive), secured=token is not None)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Start the runtime only if nobody did; stop only what was started here.
        started_here = rt._store is None
        if started_here:
            await rt.start()
        try:
            yield
        finally:
            streams.close()
            if started_here:
                await rt.stop()

    middleware = [Middleware(HostGuard, allowed_hosts=hosts, cors_origins=allowed_origins)]
    if allowed_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(allowed_origins),
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
                max_age=600,
            )
        )
    middleware.append(Middleware(TokenGuard, token=token))
    app = Starlette(
        routes=api.routes(),
        middleware=middleware,
        exception_handlers={HTTPException: _http_exception, Exception: _server_error},
        lifespan=lifespan,
    )
    return app, streams


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    names = {404: "NotFound", 405: "MethodNotAllowed"}
    message = {
        404: f"no route for {request.method} {request.url.path[:200]!r}",
        405: f"{request.method} is not allowed here",
    }.get(exc.status_code, str(exc.detail))
    return error_response(
        exc.status_code,
        names.get(exc.status_code, "HTTPError"),
        message,
        headers=exc.headers,
    )


async def _server_error(request: Request, exc: Exception) -> Response:
    # The traceback goes to the log (uvicorn prints it); the client learns nothing of it.
    return error_response(500, "InternalError", "internal server error")


class API:
    """The endpoints, bound to one runtime."""

    def __init__(self, rt: Runtime, streams: Streams, keepalive: float, *, secured: bool) -> None:
        self._rt = rt
        self._secured = secured
        self._streams = streams
        self._keepalive = keepalive

    def routes(self) -> list[Route]:
        from ._openapi import openapi

        rt = self._rt

        async def openapi_json(request: Request) -> Response:
            Query(request, ())
            return JSONResponse(openapi(rt, secured=self._secured))

        table: dict[str, dict[str, Endpoint]] = {
            "/openapi.json": {"GET": openapi_json},
            "/tasks": {"GET": self.list_tasks},
            "/jobs": {"GET": self.list_jobs, "POST": self.create_job},
            "/jobs/{job_id}": {"GET": self.get_job, "DELETE": self.command("destroy")},
            **{
                f"/jobs/{{job_id}}/{name}": {"POST": self.command(name)}
                for name in ("stop", "pause", "resume", "destroy")
            },
            "/jobs/{job_id}/trigger": {"POST": self.trigger},
            "/executions": {"GET": self.list_executions},
            "/executions/{execution_id}": {"GET": self.get_execution},
            "/executions/{execution_id}/history": {"GET": self.history},
            "/executions/{execution_id}/logs": {"GET": self.execution_logs},
            "/executions/{execution_id}/cancel": {"POST": self.cancel},
            "/executions/{execution_id}/events": {"GET": self.execution_events},
            "/events": {"GET": self.events},
            "/logs": {"GET": self.list_logs},
            "/categories": {"GET": self.list_categories},
        }
        # One route per path, so that a 405 lists every method the path has in Allow.
        return [
            Route(
                path,
                self._open(_by_method(methods), running=path not in ("/openapi.json", "/tasks")),
                methods=list(methods),
            )
            for path, methods in table.items()
        ]

    def _open(self, endpoint: Endpoint, *, running: bool = True) -> Endpoint:
        """Wrap an endpoint: the runtime must run; library errors become 4xx answers."""
        rt = self._rt

        async def handle(request: Request) -> Answer:
            if running and rt._store is None:
                return _not_started()
            try:
                return await endpoint(request)
            except HTTPError as exc:
                return exc.response()
            except JobNotFound as exc:
                return error_response(404, "JobNotFound", str(exc), job_id=exc.job_id)
            except ExecutionNotFound as exc:
                return error_response(
                    404, "ExecutionNotFound", str(exc), execution_id=exc.execution_id
                )
            except RuntimeError:
                # The runtime stopped while the request ran.
                if rt._store is None:
                    return _not_started()
                raise

        handle.__name__ = getattr(endpoint, "__name__", "endpoint")
        return handle

    # -- queries ------------------------------------------------------------------------

    async def list_tasks(self, request: Request) -> Response:
        Query(request, ())
        registry = self._rt._registry
        tasks = [registry.get(n) for n in sorted(registry.names()) if n not in SYSTEM_TASKS]
        return JSONResponse(items_json(tasks, task_json))

    async def list_jobs(self, request: Request) -> Response:
        q = Query(request, ("page", "page_size", "status", "category", "name"))
        page, size = q.page()
        result = await self._rt.jobs.list(
            page=page,
            page_size=size,
            status=q.choice("status", JOB_STATUSES),
            category=q.category(),
            name=q.text("name"),
        )
        return JSONResponse(page_json(result, job_json))

    async def get_job(self, request: Request) -> Response:
        Query(request, ())
        job = await self._rt.jobs.get(_job_id(request))
        return JSONResponse(job_json(job))

    async def list_executions(self, request: Request) -> Response:
        q = Query(request, ("page", "page_size", "job_id", "status", "task"))
        page, size = q.page()
        result = await self._rt.executions.list(
            job_id=q.uuid("job_id", "a job"),
            status=q.choice("status", EXECUTION_STATUSES),
            task=q.text("task"),
            page=page,
            page_size=size,
        )
        return JSONResponse(page_json(result, execution_json))

    async def get_execution(self, request: Request) -> Response:
        Query(request, ())
        execution = await self._rt.executions.get(_execution_id(request))
        return JSONResponse(execution_json(execution))

    async def history(self, request: Request) -> Response:
        Query(request, ())
        transitions = await self._rt.executions.history(_execution_id(request))
        return JSONResponse(items_json(transitions, transition_json))

    async def execution_logs(self, request: Request) -> Response:
        q = Query(request, ("page", "page_size", "level"))
        execution_id = _execution_id(request)
        page, size = q.page(100)
        level = q.choice("level", LEVELS)
        # A listing of an execution that does not exist is a 404, not an empty page.
        await self._rt.executions.get(execution_id)
        result = await self._rt.logs.list(
            execution_id=execution_id, level=level, page=page, page_size=size
        )
        return JSONResponse(page_json(result, log_json))

    async def list_logs(self, request: Request) -> Response:
        q = Query(request, ("page", "page_size", "level", "execution_id", "job_id"))
        page, size = q.page(100)
        result = await self._rt.logs.list(
            execution_id=q.uuid("execution_id", "an execution"),
            job_id=q.uuid("job_id", "a job"),
            level=q.choice("level", LEVELS),
            page=page,
            page_size=size,
        )
        return JSONResponse(page_json(result, log_json))

    async def list_categories(self, request: Request) -> Response:
        Query(request, ())
        categories = await self._rt.categories.list()
        return JSONResponse(items_json(categories, category_json))

    # -- commands -----------------------------------------------------------------------

    def command(self, name: str) -> Endpoint:
        """``POST /jobs/{id}/<name>``: stop, pause, resume or destroy a job."""

        async def job_command(request: Request) -> Response:
            Query(request, ())
            job_id = _job_id(request)
            action = getattr(self._rt.jobs, name)
            try:
                job = await action(job_id)
            except ValueError as exc:
                # The job is in a status this command cannot leave (pause a finished job).
                raise HTTPError(409, "Conflict", str(exc)) from None
            return JSONResponse(job_json(job))

        job_command.__name__ = f"{name}_job"
        return job_command

    async def trigger(self, request: Request) -> Response:
        """``POST /jobs/{id}/trigger``: run the job now, besides its schedule."""
        Query(request, ())
        job_id = _job_id(request)
        try:
            executions = await self._rt.jobs.trigger(job_id)
        except ValueError as exc:
            # Ended jobs do not run again; a daemon always runs.
            raise HTTPError(409, "Conflict", str(exc)) from None
        return JSONResponse(items_json(executions, execution_json))

    async def cancel(self, request: Request) -> Response:
        Query(request, ())
        execution = await self._rt.executions.cancel(_execution_id(request))
        return JSONResponse(execution_json(execution))

    async def create_job(self, request: Request) -> Response:
        Query(request, ())
        body = await _json_body(request)
        fields = _create_fields(body)
        task = fields.pop("task")
        if task in SYSTEM_TASKS:
            raise bad("task", f"{task!r} is a system task: it cannot be run from the API", 422)
        args = fields.pop("args", [])
        try:
            job = await self._rt.once(task, *args, **fields)
        except UnknownTask as exc:
            raise HTTPError(422, "UnknownTask", str(exc), parameter="task") from None
        except InvalidArguments as exc:
            raise HTTPError(
                422, "InvalidArguments", str(exc), parameter=exc.parameter or "args"
            ) from None
        except (InvalidSchedule, ValueError, OverflowError) as exc:
            raise HTTPError(422, "InvalidBody", str(exc)) from None
        return JSONResponse(job_json(job), status_code=201)

    # -- event streams ------------------------------------------------------------------

    async def execution_events(self, request: Request) -> Answer:
        q = Query(request, ("after",))
        execution_id = _execution_id(request)
        after = last_event_id(request, q)
        # Read the execution before the events: its final state event is written with its
        # final status, so if it has ended, an empty read below means nothing is left.
        execution = await self._rt.executions.get(execution_id)
        if execution.status in TERMINAL:
            left = await self._rt.store.events_after(
                after or 0,
                execution_id=execution.id,
                limit=1,
            )
            if not left:
                # 204 tells an EventSource to stop reconnecting: this stream is over.
                return Response(status_code=204)
        if request.method == "HEAD":
            return _stream_head()
        return EventStream(
            self._rt,
            self._streams,
            execution_id=execution.id,
            after=after or 0,
            keepalive=self._keepalive,
        )

    async def events(self, request: Request) -> Answer:
        q = Query(request, ("job_id", "after"))
        job_id = q.uuid("job_id", "a job")
        after = last_event_id(request, q)
        if job_id is not None:
            await self._rt.jobs.get(job_id)
        if request.method == "HEAD":
            return _stream_head()
        return EventStream(
            self._rt, self._streams, job_id=job_id, after=after, keepalive=self._keepalive
        )


def _by_method(endpoints: dict[str, Endpoint]) -> Endpoint:
    async def dispatch(request: Request) -> Answer:
        method = "GET" if request.method == "HEAD" else request.method
        return await endpoints[method](request)

    return dispatch


def _not_started() -> Response:
    return error_response(
        503,
        "NotStarted",
        "the runtime is not started: the app that mounts this API must start it",
    )


def _stream_head() -> Response:
    return Response(media_type="text/event-stream")


def _job_id(request: Request) -> str:
    return check_uuid("job_id", request.path_params["job_id"], "a job")


def _execution_id(request: Request) -> str:
    return check_uuid("execution_id", request.path_params["execution_id"], "an execution")


# -- the body of POST /jobs ---------------------------------------------------------------


async def _json_body(request: Request) -> dict[str, JSON]:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise HTTPError(
            415,
            "UnsupportedMediaType",
            f"the body must be JSON with 'Content-Type: application/json', "
            f"got {content_type[:80]!r}",
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise HTTPError(413, "BodyTooLarge", f"the body must be at most {MAX_BODY} bytes")
        chunks.append(chunk)
    try:
        body = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise HTTPError(400, "InvalidJSON", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad("body", f"the body must be a JSON object, got {type(body).__name__}", 422)
    return body


def _create_fields(body: dict[str, JSON]) -> dict[str, Any]:
    """Check the fields of a job to create; return them as ``rt.once`` takes them."""
    unknown = sorted(set(body) - set(CREATE_FIELDS))
    if unknown:
        raise bad(
            unknown[0],
            f"unknown field {unknown[0]!r}; expected: {', '.join(CREATE_FIELDS)}",
            422,
        )
    out: dict[str, Any] = {}
    for name, value in body.items():
        if value is None and name != "task":
            continue
        out[name] = _FIELD_CHECKS[name](name, value)
    if "task" not in out:
        raise bad("task", "task is required: the name of a registered task", 422)
    return out


def _body_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise bad(name, f"{name} must be a non-empty string, got {_short(value)}", 422)
    return check_text(name, value, bad, 422)


def _body_int(low: int, high: int) -> Callable[[str, object], int]:
    def check(name: str, value: object) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise bad(
                name, f"{name} must be an integer from {low} to {high}, got {_short(value)}", 422
            )
        return value

    return check


def _body_seconds(positive: bool) -> Callable[[str, object], float]:
    def check(name: str, value: object) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            seconds = float(value)  # type: ignore[arg-type]
            ok = math.isfinite(seconds) and (seconds > 0 if positive else seconds >= 0)
            ok = ok and seconds <= MAX_SECONDS
        if not ok:
            low = "> 0" if positive else ">= 0"
            raise bad(
                name, f"{name} must be seconds {low} (at most 100 years), got {_short(value)}", 422
            )
        return float(value)  # type: ignore[arg-type]

    return check


def _body_at(name: str, value: object) -> datetime:
    if isinstance(value, str) and len(value) <= 64:
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if 1900 <= at.year <= 9000:
                return at
    raise bad(
        name,
        f"{name} must be an ISO 8601 time like '2030-01-31T08:00:00+00:00' "
        f"(years 1900 to 9000), got {_short(value)}",
        422,
    )


def _body_zone(name: str, value: object) -> str:
    if not isinstance(value, str) or not _ZONE.fullmatch(value) or ".." in value:
        raise bad(
            name, f"{name} must be an IANA time zone like 'Europe/Paris', got {_short(value)}", 422
        )
    try:
        Once(tz=value)  # loads the zone: an unknown one is refused here, naming the field
    except InvalidSchedule as exc:
        raise bad(name, str(exc), 422) from None
    return value


def _body_category(name: str, value: object) -> str:
    text = _body_text(name, value)
    try:
        return check_category(text)
    except ValueError as exc:
        raise bad(name, str(exc), 422) from None


def _body_mode(name: str, value: object) -> str:
    if value not in MODES:
        raise bad(name, f"{name} must be one of {', '.join(MODES)}, got {_short(value)}", 422)
    return str(value)


def _body_list(name: str, value: object) -> list[JSON]:
    if not isinstance(value, list):
        raise bad(name, f"{name} must be a JSON array, got {_short(value)}", 422)
    _check_depth(name, value)
    return value


def _body_object(name: str, value: object) -> dict[str, JSON]:
    if not isinstance(value, dict):
        raise bad(name, f"{name} must be a JSON object, got {_short(value)}", 422)
    _check_depth(name, value)
    return value


def _check_depth(name: str, value: object) -> None:
    # Iterative on purpose: the conversions downstream recurse, and a deeply nested body
    # must be refused here rather than exhaust the stack there.
    level: list[object] = [value]
    for _ in range(MAX_DEPTH):
        level = [
            child
            for item in level
            if isinstance(item, list | dict)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return
    raise bad(name, f"{name} is nested deeper than {MAX_DEPTH} levels", 422)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_FIELD_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "task": _body_text,
    "args": _body_list,
    "kwargs": _body_object,
    "name": _body_text,
    "category": _body_category,
    "priority": _body_int(*INT32),
    "at": _body_at,
    "after": _body_seconds(positive=False),
    "tz": _body_zone,
    "key": _body_text,
    "shared": _body_object,
    "mode": _body_mode,
    "timeout": _body_seconds(positive=True),
    "retries": _body_int(0, INT32[1]),
}
