"""JSON for the HTTP API: records as the API shows them, and the response classes.

The shapes here are the ones ``_openapi.py`` describes; change both together.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import orjson
from starlette.responses import Response

from .._handles import Job as JobHandle
from .._states import LogLevel

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from datetime import datetime

    from .._models import (
        Category,
        Event,
        Execution,
        Job,
        LogRecord,
        Page,
        StepSpec,
        Transition,
    )
    from .._tasks import TaskDef
    from .._types import JSON


def dumps(content: object) -> bytes:
    """Return ``content`` as compact JSON (UTF-8)."""
    try:
        return orjson.dumps(content)
    except TypeError:
        # orjson refuses integers beyond 64 bits, which a task's result may hold.
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


class JSONResponse(Response):
    """A JSON response rendered with orjson."""

    media_type = "application/json"

    def render(self, content: object) -> bytes:
        return dumps(content)


def error_response(
    status: int, type_: str, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """Return the error body every 4xx/5xx of the API has: ``{"error": {type, message}}``."""
    error: dict[str, object] = {"type": type_, "message": message}
    error.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def step_json(step: StepSpec) -> dict[str, JSON]:
    """A job's step; a command's environment shows its names only (values may be secrets)."""
    data = step.to_json()
    if step.env is not None:
        names: list[JSON] = []
        names.extend(sorted(step.env))
        data["env"] = names
    return data


def job_json(job: Job | JobHandle) -> dict[str, JSON]:
    """A job as the API shows it."""
    record = job.record if isinstance(job, JobHandle) else job
    return {
        "id": record.id,
        "name": record.name,
        "category": record.category,
        "status": record.status.value,
        "schedule": record.schedule,
        "steps": [step_json(s) for s in record.steps],
        "priority": record.priority,
        "shared": record.shared,
        "key": record.key,
        "created_at": _time(record.created_at),
        "updated_at": _time(record.updated_at),
        "next_fire_at": _time(record.next_fire_at),
        "last_fire_at": _time(record.last_fire_at),
        "state": record.state,
    }


def execution_json(execution: Execution) -> dict[str, JSON]:
    """An execution as the API shows it."""
    error = execution.error
    return {
        "id": execution.id,
        "job_id": execution.job_id,
        "step": execution.step,
        "task": execution.task,
        "args": list(execution.args),
        "kwargs": execution.kwargs,
        "attempt": execution.attempt,
        "status": execution.status.value,
        "priority": execution.priority,
        "progress": execution.progress,
        "progress_message": execution.progress_message,
        "result": execution.result,
        "error": None if error is None else error.to_json(),
        "created_at": _time(execution.created_at),
        "scheduled_for": _time(execution.scheduled_for),
        "started_at": _time(execution.started_at),
        "ended_at": _time(execution.ended_at),
        "node": execution.node,
        "pid": execution.pid,
    }


def level_name(level: LogLevel) -> str:
    """A log level as the API spells it: ``"info"``, ``"warn"``..."""
    return level.name.lower()


LEVELS: tuple[str, ...] = tuple(level_name(level) for level in LogLevel)


def log_json(record: LogRecord) -> dict[str, JSON]:
    """A log line as the API shows it."""
    return {
        "execution_id": record.execution_id,
        "job_id": record.job_id,
        "seq": record.seq,
        "at": _time(record.at),
        "level": level_name(record.level),
        "message": record.message,
        "data": record.data,
    }


def transition_json(transition: Transition) -> dict[str, JSON]:
    """One step of an execution's history."""
    return {"status": transition.status.value, "at": _time(transition.at)}


def category_json(category: Category) -> dict[str, JSON]:
    """A category and its number of jobs."""
    return {"name": category.name, "jobs": category.jobs}


def task_json(task: TaskDef) -> dict[str, JSON]:
    """A registered task and its defaults."""
    return {
        "name": task.name,
        "mode": task.mode,
        "is_async": task.is_async,
        "timeout": task.timeout,
        "retries": task.retries,
        "priority": task.priority,
        "category": task.category,
    }


def event_json(event: Event) -> dict[str, JSON]:
    """A state, progress or log event, as an SSE ``data:`` line carries it."""
    from .._models import ProgressReported, StateChanged

    data: dict[str, JSON] = {
        "seq": event.seq,
        "type": event_type(event),
        "at": _time(event.at),
        "job_id": event.job_id,
        "execution_id": event.execution_id,
    }
    if isinstance(event, StateChanged):
        data["status"] = event.status.value
    elif isinstance(event, ProgressReported):
        data["progress"] = event.progress
        data["message"] = event.message
    else:
        data["level"] = level_name(event.level)
        data["message"] = event.message
        data["data"] = event.data
    return data


def event_type(event: Event) -> str:
    """The SSE ``event:`` name: ``state``, ``progress`` or ``log``."""
    from .._models import ProgressReported, StateChanged

    if isinstance(event, StateChanged):
        return "state"
    if isinstance(event, ProgressReported):
        return "progress"
    return "log"


def page_json(page: Page[Any], item: Callable[[Any], dict[str, JSON]]) -> dict[str, JSON]:
    """One page of a listing: its items and where it is."""
    return {
        "items": [item(x) for x in page.items],
        "page": page.page,
        "page_size": page.page_size,
        "total": page.total,
        "pages": page.pages,
    }


def items_json(items: Iterable[Any], item: Callable[[Any], dict[str, JSON]]) -> dict[str, JSON]:
    """An unpaged listing."""
    return {"items": [item(x) for x in items]}
