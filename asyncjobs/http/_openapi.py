"""The OpenAPI 3.1 description of the API, served at ``/openapi.json``.

Written by hand next to the routes it describes (``_routes.py``) and the shapes they answer
(``_json.py``); the fuzz test drives the live API from this document and checks every answer
against it, so a drift between the three fails the tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._errors import InvalidArguments
from .._types import MAX_PAGE, MAX_SECONDS
from ..stores.base import MAX_PAGE_SIZE
from ._json import LEVELS
from ._routes import (
    CREATE_FIELDS,
    EXECUTION_STATUSES,
    INT32,
    JOB_STATUSES,
    MAX_DEPTH,
    MAX_SEQ,
    MAX_TEXT,
    MODES,
    SYSTEM_TASKS,
)

if TYPE_CHECKING:
    from .._runtime import Runtime

Schema = dict[str, Any]

_TEXT = r"^[^\x00-\x1f\x7f]*$"
_UUID = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(properties: dict[str, Schema], required: tuple[str, ...] | None = None) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
    }


_STRING: Schema = {"type": "string"}
_TIME: Schema = {"type": "string", "format": "date-time"}
_INT: Schema = {"type": "integer"}
_NUMBER: Schema = {"type": "number"}
_ANY: Schema = {}
_OBJECT: Schema = {"type": "object"}


def _schemas(tasks: list[str]) -> dict[str, Schema]:
    error = _obj(
        {
            "type": _STRING,
            "message": _STRING,
            "parameter": _STRING,
            "job_id": _STRING,
            "execution_id": _STRING,
        },
        ("type", "message"),
    )
    step = _obj(
        {
            "task": _STRING,
            "target": _nullable(_STRING),
            "command": _nullable({"type": "array", "items": _STRING}),
            "env": _nullable({"type": "array", "items": _STRING}),
            "cwd": _nullable(_STRING),
            "args": {"type": "array"},
            "kwargs": _OBJECT,
            "mode": {"enum": list(MODES)},
            "timeout": _nullable(_NUMBER),
            "retries": _INT,
            "backoff": _nullable(_OBJECT),
            "on_worker_lost": _STRING,
            "crash_limit": _INT,
        }
    )
    job = _obj(
        {
            "id": {"type": "string", "format": "uuid"},
            "name": _STRING,
            "category": _STRING,
            "status": {"enum": list(JOB_STATUSES)},
            "schedule": _OBJECT,
            "steps": {"type": "array", "items": _ref("Step")},
            "priority": _INT,
            "shared": _OBJECT,
            "key": _nullable(_STRING),
            "created_at": _TIME,
            "updated_at": _TIME,
            "next_fire_at": _nullable(_TIME),
            "last_fire_at": _nullable(_TIME),
            "state": _OBJECT,
        }
    )
    execution = _obj(
        {
            "id": {"type": "string", "format": "uuid"},
            "job_id": {"type": "string", "format": "uuid"},
            "step": _INT,
            "task": _STRING,
            "args": {"type": "array"},
            "kwargs": _OBJECT,
            "attempt": _INT,
            "status": {"enum": list(EXECUTION_STATUSES)},
            "priority": _INT,
            "progress": _NUMBER,
            "progress_message": _STRING,
            "result": _ANY,
            "error": _nullable(_obj({"type": _STRING, "message": _STRING, "traceback": _STRING})),
            "created_at": _TIME,
            "scheduled_for": _TIME,
            "started_at": _nullable(_TIME),
            "ended_at": _nullable(_TIME),
            "node": _nullable(_STRING),
            "pid": _nullable(_INT),
        }
    )
    log = _obj(
        {
            "execution_id": {"type": "string", "format": "uuid"},
            "job_id": {"type": "string", "format": "uuid"},
            "seq": _INT,
            "at": _TIME,
            "level": {"enum": list(LEVELS)},
            "message": _STRING,
            "data": _OBJECT,
        }
    )
    text: Schema = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT, "pattern": _TEXT}
    json_value: Schema = {"description": f"any JSON value, nested at most {MAX_DEPTH} deep"}
    create_fields: dict[str, Schema] = {
        "task": {"enum": tasks} if tasks else text,
        "args": {"type": "array", "items": json_value},
        "kwargs": {"type": "object", "additionalProperties": json_value},
        "name": _nullable(text),
        "category": _nullable(
            {
                **text,
                "pattern": r"^[^\x00-\x1f\x7f/]*[^\s/][^\x00-\x1f\x7f/]*"
                r"(/[^\x00-\x1f\x7f/]*[^\s/][^\x00-\x1f\x7f/]*)*$",
            }
        ),
        "priority": _nullable({"type": "integer", "minimum": INT32[0], "maximum": INT32[1]}),
        "at": _nullable({"type": "string", "format": "date-time"}),
        "after": _nullable({"type": "number", "minimum": 0, "maximum": MAX_SECONDS}),
        "tz": _nullable({"type": "string", "pattern": "^[A-Za-z0-9_+/-]{1,64}$"}),
        "key": _nullable(text),
        "shared": _nullable({"type": "object", "additionalProperties": json_value}),
        "mode": _nullable({"enum": list(MODES)}),
        "timeout": _nullable({"type": "number", "exclusiveMinimum": 0, "maximum": MAX_SECONDS}),
        "retries": _nullable({"type": "integer", "minimum": 0, "maximum": INT32[1]}),
    }
    assert set(create_fields) == set(CREATE_FIELDS)
    create = {
        "type": "object",
        "additionalProperties": False,
        "required": ["task"],
        "properties": create_fields,
    }

    def page(item: str) -> Schema:
        return _obj(
            {
                "items": {"type": "array", "items": _ref(item)},
                "page": {"type": "integer", "minimum": 1},
                "page_size": {"type": "integer", "minimum": 1},
                "total": {"type": "integer", "minimum": 0},
                "pages": {"type": "integer", "minimum": 1},
            }
        )

    def items(item: Schema) -> Schema:
        return _obj({"items": {"type": "array", "items": item}})

    return {
        "Error": _obj({"error": error}),
        "Step": step,
        "Job": job,
        "Execution": execution,
        "LogRecord": log,
        "CreateJob": create,
        "JobPage": page("Job"),
        "ExecutionPage": page("Execution"),
        "LogPage": page("LogRecord"),
        "Executions": items(_ref("Execution")),
        "History": items(_obj({"status": {"enum": list(EXECUTION_STATUSES)}, "at": _TIME})),
        "Categories": items(_obj({"name": _STRING, "jobs": {"type": "integer", "minimum": 0}})),
        "Tasks": items(
            _obj(
                {
                    "name": _STRING,
                    "mode": {"enum": list(MODES)},
                    "is_async": {"type": "boolean"},
                    "timeout": _nullable(_NUMBER),
                    "retries": _INT,
                    "priority": _INT,
                    "category": _STRING,
                }
            )
        ),
    }


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str, what: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": _UUID},
        "description": f"the id of {what}",
    }


_PAGE = [
    _query("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}, "page number, from 1"),
    _query(
        "page_size",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
        "items per page",
    ),
]
_FILTER_TEXT: Schema = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT, "pattern": _TEXT}
_JOB_ID_FILTER = _query("job_id", {"type": "string", "pattern": _UUID}, "only this job's")
_EXECUTION_ID_FILTER = _query(
    "execution_id", {"type": "string", "pattern": _UUID}, "only this execution's"
)
_LEVEL = _query("level", {"enum": list(LEVELS)}, "the minimum level")
_AFTER = _query(
    "after",
    {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
    "start after this event id (the Last-Event-ID header wins)",
)
_LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
    "description": "resume after this event id (sent by EventSource when it reconnects)",
}


def _json(schema: str, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _links(parameter: str, value: str, *operations: str) -> dict[str, Schema]:
    """OpenAPI links: where the id an answer holds can be used next."""
    return {op: {"operationId": op, "parameters": {parameter: value}} for op in operations}


_JOB_LINKS = _links(
    "job_id",
    "$response.body#/id",
    "getJob",
    "triggerJob",
    "stopJob",
    "pauseJob",
    "resumeJob",
    "destroyJob",
    "deleteJob",
)
_EXECUTION_LINKS = _links(
    "execution_id",
    "$response.body#/items/0/id",
    "getExecution",
    "getHistory",
    "getExecutionLogs",
    "cancelExecution",
)


def _errors(*codes: int) -> dict[str, Schema]:
    text = {
        400: "a query or path parameter is invalid",
        401: "the bearer token is missing or wrong",
        403: "the Host (or, for a command, the Origin) is not allowed",
        404: "no such job or execution",
        409: "the job's status does not allow this command",
        413: "the body is too large",
        415: "the body is not JSON",
        422: "the body is invalid: the error names the field",
        503: "the runtime is not started",
    }
    return {str(code): _json("Error", text[code]) for code in (400, 401, 403, *codes)}


def _operation(
    operation_id: str,
    summary: str,
    ok: dict[str, Schema],
    *,
    parameters: list[Schema] = (),  # type: ignore[assignment]
    errors: tuple[int, ...] = (503,),
    body: Schema | None = None,
) -> Schema:
    op: Schema = {
        "operationId": operation_id,
        "summary": summary,
        "parameters": list(parameters),
        "responses": {**ok, **_errors(*errors)},
    }
    if body is not None:
        op["requestBody"] = body
    return op


_EVENT: Schema = {
    "type": "object",
    "required": ["seq", "type", "at", "job_id", "execution_id"],
    "properties": {
        "seq": {"type": "integer", "minimum": 1},
        "type": {"enum": ["state", "progress", "log"]},
        "at": _TIME,
        "job_id": {"type": "string", "format": "uuid"},
        "execution_id": {"type": "string", "format": "uuid"},
        "status": {"enum": list(EXECUTION_STATUSES)},
        "progress": _NUMBER,
        "message": _STRING,
        "level": {"enum": list(LEVELS)},
        "data": _OBJECT,
    },
}
_STREAM = {
    "description": "a text/event-stream of state, progress and log events: each event's "
    "`id` is its sequence number, `event` is state, progress or log, `data` is one line of "
    "JSON (the schema of each event is given here); comment lines keep the stream alive",
    "content": {
        "text/event-stream": {
            "schema": {
                "type": "object",
                "required": ["id", "event", "data"],
                "properties": {
                    "id": {"type": "string", "pattern": "^[0-9]+$"},
                    "event": {"enum": ["state", "progress", "log"]},
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": _EVENT,
                    },
                },
            }
        }
    },
}


def openapi(rt: Runtime, *, secured: bool) -> Schema:
    """Return the OpenAPI document of the API of ``rt`` (the task list is read now)."""
    tasks = sorted(n for n in rt._registry.names() if n not in SYSTEM_TASKS)
    job_id = _path("job_id", "a job")
    execution_id = _path("execution_id", "an execution")
    found = (404, 503)
    paths: dict[str, Schema] = {
        "/openapi.json": {
            "get": _operation(
                "openapi",
                "This document",
                {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
                errors=(),
            )
        },
        "/tasks": {
            "get": _operation(
                "listTasks",
                "Registered tasks (jobs can be created for them)",
                {"200": _json("Tasks", "the tasks")},
                errors=(),
            )
        },
        "/jobs": {
            "get": _operation(
                "listJobs",
                "Jobs, newest first",
                {"200": _json("JobPage", "one page of jobs")},
                parameters=[
                    *_PAGE,
                    _query("status", {"enum": list(JOB_STATUSES)}, "only jobs in this status"),
                    _query("category", _FILTER_TEXT, "only this category and its sub-categories"),
                    _query("name", _FILTER_TEXT, "only jobs of this name"),
                ],
            ),
            "post": _operation(
                "createJob",
                "Create a one-off job for a registered task: now, at a time or after a delay",
                {
                    "201": {
                        **_json("Job", "the job (with key: the live job that has it)"),
                        "links": _JOB_LINKS,
                    }
                },
                errors=(413, 415, 422, 503),
                body={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _ref("CreateJob"),
                            "examples": _create_examples(rt, tasks),
                        }
                    },
                },
            ),
        },
        "/jobs/{job_id}": {
            "parameters": [job_id],
            "get": _operation("getJob", "One job", {"200": _json("Job", "the job")}, errors=found),
            "delete": _operation(
                "deleteJob",
                "Stop the job and mark it deleted (as POST .../destroy)",
                {"200": _json("Job", "the job")},
                errors=(404, 409, 503),
            ),
        },
        "/executions": {
            "get": _operation(
                "listExecutions",
                "Executions, newest first",
                {"200": _json("ExecutionPage", "one page of executions")},
                parameters=[
                    *_PAGE,
                    _JOB_ID_FILTER,
                    _query(
                        "status",
                        {"enum": list(EXECUTION_STATUSES)},
                        "only executions in this status",
                    ),
                    _query("task", _FILTER_TEXT, "only executions of this task"),
                ],
            )
        },
        "/executions/{execution_id}": {
            "parameters": [execution_id],
            "get": _operation(
                "getExecution",
                "One execution",
                {"200": _json("Execution", "the execution")},
                errors=found,
            ),
        },
        "/executions/{execution_id}/history": {
            "parameters": [execution_id],
            "get": _operation(
                "getHistory",
                "Every status the execution took, oldest first",
                {"200": _json("History", "the transitions")},
                errors=found,
            ),
        },
        "/executions/{execution_id}/logs": {
            "parameters": [execution_id],
            "get": _operation(
                "getExecutionLogs",
                "The execution's log lines, oldest first",
                {"200": _json("LogPage", "one page of log lines")},
                parameters=[*_PAGE, _LEVEL],
                errors=found,
            ),
        },
        "/executions/{execution_id}/cancel": {
            "parameters": [execution_id],
            "post": _operation(
                "cancelExecution",
                "Cancel a waiting or running execution (an ended one is returned unchanged)",
                {"200": _json("Execution", "the execution")},
                errors=found,
            ),
        },
        "/executions/{execution_id}/events": {
            "parameters": [execution_id],
            "get": _operation(
                "streamExecutionEvents",
                "The execution's events from its start (or after Last-Event-ID), live; ends "
                "after its final state",
                {
                    "200": _STREAM,
                    "204": {"description": "the execution has ended and nothing is left"},
                },
                parameters=[_AFTER, _LAST_EVENT_ID],
                errors=found,
            ),
        },
        "/events": {
            "get": _operation(
                "streamEvents",
                "Events of one job (or all), from now (or after Last-Event-ID), live",
                {"200": _STREAM},
                parameters=[_JOB_ID_FILTER, _AFTER, _LAST_EVENT_ID],
                errors=found,
            )
        },
        "/logs": {
            "get": _operation(
                "listLogs",
                "Log lines, oldest first",
                {"200": _json("LogPage", "one page of log lines")},
                parameters=[*_PAGE, _LEVEL, _EXECUTION_ID_FILTER, _JOB_ID_FILTER],
                errors=found,
            )
        },
        "/categories": {
            "get": _operation(
                "listCategories",
                "Categories, with their number of jobs",
                {"200": _json("Categories", "the categories")},
            )
        },
    }
    for command, summary in (
        ("stop", "Stop the job and cancel its live executions"),
        ("pause", "Pause an active job"),
        ("resume", "Resume a paused job"),
        ("destroy", "Stop the job and mark it deleted (its history stays readable)"),
    ):
        paths[f"/jobs/{{job_id}}/{command}"] = {
            "parameters": [job_id],
            "post": _operation(
                f"{command}Job", summary, {"200": _json("Job", "the job")}, errors=(404, 409, 503)
            ),
        }
    paths["/jobs/{job_id}/trigger"] = {
        "parameters": [job_id],
        "post": _operation(
            "triggerJob",
            "Run the job now, besides its schedule (not an ended job, nor a daemon)",
            {
                "200": {
                    **_json("Executions", "the executions it queued, one per step"),
                    "links": _EXECUTION_LINKS,
                }
            },
            errors=(404, 409, 503),
        ),
    }
    document: Schema = {
        "openapi": "3.1.0",
        "info": {
            "title": "asyncjobs",
            "version": _version(),
            "description": "Jobs, executions, logs and live events of an asyncjobs runtime.",
        },
        "paths": paths,
        "components": {"schemas": _schemas(tasks)},
    }
    if secured:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document


def _create_examples(rt: Runtime, tasks: list[str]) -> dict[str, Schema]:
    """A body example per task that runs without arguments (at most five)."""
    examples: dict[str, Schema] = {}
    for name in tasks:
        try:
            rt.get_task(name).bind((), {})
        except InvalidArguments:
            continue
        examples[f"run {name}"] = {"value": {"task": name}}
        if len(examples) == 5:
            break
    return examples


def _version() -> str:
    from .. import __version__

    return __version__
