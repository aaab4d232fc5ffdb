"""How jobs, executions and logs look in Jupyter: HTML for ``_repr_html_``, and live views.

Stdlib only, and IPython is never imported here: ``import asyncjobs`` must not load it (a
process child imports asyncjobs too). The live view (:func:`watch`) uses ``IPython.display``
when an IPython shell is running (so IPython is imported already), and prints plain text
elsewhere.

Every string that comes from a user or a task (names, messages, log lines, errors, ids) goes
through :func:`html.escape`: a log line is data, never markup.
"""

from __future__ import annotations

import html
import json
import math
import sys
from typing import TYPE_CHECKING, Any

from ._models import Category, Execution, Job as JobRecord, LogRecord, Page
from ._states import ExecutionStatus, JobStatus, LogLevel

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from ._handles import Job

# One colour per status, readable on the light and the dark Jupyter themes.
STATUS_COLOURS: dict[str, str] = {
    ExecutionStatus.SCHEDULED: "#6c757d",
    ExecutionStatus.QUEUED: "#6f42c1",
    ExecutionStatus.RUNNING: "#0d6efd",
    ExecutionStatus.RETRYING: "#fd7e14",
    ExecutionStatus.COMPLETED: "#198754",
    ExecutionStatus.FAILED: "#dc3545",
    ExecutionStatus.CANCELLED: "#495057",
    JobStatus.ACTIVE: "#0d6efd",
    JobStatus.PAUSED: "#fd7e14",
    JobStatus.FINISHED: "#495057",  # neutral: its executions' badges tell how it went
    JobStatus.STOPPED: "#495057",
    JobStatus.DELETED: "#6c757d",
}
LEVEL_COLOURS: dict[LogLevel, str] = {
    LogLevel.TRACE: "#6c757d",
    LogLevel.DEBUG: "#6c757d",
    LogLevel.INFO: "inherit",
    LogLevel.WARN: "#fd7e14",
    LogLevel.ERROR: "#dc3545",
    LogLevel.FATAL: "#dc3545",
    LogLevel.PANIC: "#dc3545",
}
_BOX = "font-family: var(--jp-ui-font-family, sans-serif); font-size: 13px; line-height: 1.5"
_CELL = "text-align: left; vertical-align: top; padding: 2px 8px"
MAX_TABLE_ROWS = 200
"""Rows a table shows at most; the rest are counted in its caption (a page is usually less)."""


def esc(value: object) -> str:
    """Return ``value`` as text, HTML-escaped (quotes too: it may land in an attribute)."""
    return html.escape(str(value), quote=True)


def status_badge(status: str) -> str:
    """Return a coloured badge with the status' name."""
    colour = STATUS_COLOURS.get(status, "#6c757d")
    return (
        f'<span class="asyncjobs-status" style="background: {colour}; color: white; '
        f'border-radius: 4px; padding: 0 6px; font-size: 12px">{esc(_value(status))}</span>'
    )


def clamp_progress(progress: float) -> float:
    """Return ``progress`` within 0-100 (a task may report anything; NaN counts as 0)."""
    progress = float(progress)
    return 0.0 if math.isnan(progress) else min(100.0, max(0.0, progress))


def progress_bar(progress: float, status: str) -> str:
    """Return a horizontal bar filled to ``progress`` percent, coloured by ``status``.

    A completed execution shows a full bar whatever it last reported.
    """
    value = 100.0 if status == ExecutionStatus.COMPLETED else clamp_progress(progress)
    colour = STATUS_COLOURS.get(status, "#6c757d")
    return (
        f'<div class="asyncjobs-progress" role="progressbar" aria-valuemin="0" '
        f'aria-valuemax="100" aria-valuenow="{value:g}" style="display: inline-block; '
        f"width: 16em; height: 0.9em; background: rgba(127, 127, 127, 0.25); "
        f'border-radius: 3px; vertical-align: middle; overflow: hidden">'
        f'<div style="width: {value:g}%; height: 100%; background: {colour}"></div></div>'
        f' <span style="font-variant-numeric: tabular-nums">{value:.0f}%</span>'
    )


def error_html(execution: Execution) -> str:
    """Return the execution's error (type, message, traceback folded), or ``""``."""
    error = execution.error
    if error is None:
        return ""
    traceback = (
        f"<details><summary>traceback</summary><pre>{esc(error.traceback)}</pre></details>"
        if error.traceback
        else ""
    )
    return (
        f'<div class="asyncjobs-error" style="color: {STATUS_COLOURS[ExecutionStatus.FAILED]}">'
        f"<b>{esc(error.type)}</b>: {esc(error.message)}</div>{traceback}"
    )


def execution_row(execution: Execution) -> str:
    """Return one line for an execution: badge, task, bar, progress message."""
    attempt = f" (attempt {execution.attempt})" if execution.attempt > 1 else ""
    message = (
        f' <span class="asyncjobs-message">{esc(execution.progress_message)}</span>'
        if execution.progress_message
        else ""
    )
    return (
        f"<div>{status_badge(execution.status)} <b>{esc(execution.task)}</b>{esc(attempt)} "
        f"{progress_bar(execution.progress, execution.status)}{message}</div>"
    )


def execution_html(execution: Execution) -> str:
    """Return an execution as HTML: status, progress bar and message, times, error."""
    times = [f"created {_time(execution.created_at)}"]  # _time() escapes already
    if execution.started_at is not None:
        times.append(f"started {_time(execution.started_at)}")
    if execution.ended_at is not None:
        times.append(f"ended {_time(execution.ended_at)}")
    when = ", ".join(times) + " UTC"
    if execution.ended_at is not None and execution.started_at is not None:
        when += f", took {(execution.ended_at - execution.started_at).total_seconds():.3g} s"
    result = ""
    if execution.status == ExecutionStatus.COMPLETED and execution.result is not None:
        result = f"<div>result: <code>{esc(_json(execution.result))}</code></div>"
    return (
        f'<div class="asyncjobs-execution" style="{_BOX}">{execution_row(execution)}'
        f'<div style="color: #6c757d; font-size: 12px">execution '
        f"<code>{esc(execution.id)}</code> of job <code>{esc(execution.job_id)}</code>, "
        f"{when}</div>{result}{error_html(execution)}</div>"
    )


def job_html(record: JobRecord, executions: Sequence[Execution] | None) -> str:
    """Return a job as HTML: name, status, schedule, and its latest executions if known."""
    schedule = describe_schedule(record.schedule)
    header = (
        f"<div><b>{esc(record.name)}</b> {status_badge(record.status)} "
        f'<span style="color: #6c757d; font-size: 12px">{esc(schedule)}, category '
        f"{esc(record.category)}, job <code>{esc(record.id)}</code></span></div>"
    )
    if executions is None:
        body = (
            '<div style="color: #6c757d; font-size: 12px">no execution read yet: '
            "<code>await job.watch()</code> follows it live</div>"
        )
    else:
        body = "".join(execution_row(e) + error_html(e) for e in executions)
    return f'<div class="asyncjobs-job" style="{_BOX}">{header}{body}</div>'


def describe_schedule(schedule: dict[str, Any]) -> str:
    """Return a short human description of a schedule's JSON form."""
    kind = schedule.get("kind")
    if kind == "cron":
        return f"cron {schedule.get('expr')} ({schedule.get('tz', 'UTC')})"
    if kind == "every":
        return f"every {schedule.get('interval'):g} s"
    if kind == "daemon":
        return f"daemon, restart {schedule.get('restart')}"
    return "once"


def logs_table(records: Sequence[LogRecord], caption: str = "") -> str:
    """Return log lines as a table: time, level, message, data."""
    rows = [
        f'<tr class="asyncjobs-log"><td style="{_CELL}; white-space: nowrap">{_time(r.at)}</td>'
        f'<td style="{_CELL}; color: {LEVEL_COLOURS.get(r.level, "inherit")}">'
        f"{esc(r.level.name.lower())}</td>"
        f'<td style="{_CELL}; white-space: pre-wrap">{esc(r.message)}</td>'
        f'<td style="{_CELL}"><code>{esc(_json(r.data)) if r.data else ""}</code></td></tr>'
        for r in records[:MAX_TABLE_ROWS]
    ]
    return _table(("time (UTC)", "level", "message", "data"), rows, caption, len(records))


def executions_table(executions: Sequence[Execution], caption: str = "") -> str:
    """Return executions as a table: status, task, progress, message, times, id."""
    rows = [
        f'<tr class="asyncjobs-execution"><td style="{_CELL}">{status_badge(e.status)}</td>'
        f'<td style="{_CELL}">{esc(e.task)}</td>'
        f'<td style="{_CELL}; white-space: nowrap">{progress_bar(e.progress, e.status)}</td>'
        f'<td style="{_CELL}">{esc(e.progress_message)}'
        f"{'<br>' + esc(e.error.type) + ': ' + esc(e.error.message) if e.error else ''}</td>"
        f'<td style="{_CELL}; white-space: nowrap">{_time(e.started_at)}</td>'
        f'<td style="{_CELL}"><code>{esc(e.id)}</code></td></tr>'
        for e in executions[:MAX_TABLE_ROWS]
    ]
    return _table(
        ("status", "task", "progress", "message", "started (UTC)", "id"),
        rows,
        caption,
        len(executions),
    )


def jobs_table(jobs: Sequence[JobRecord], caption: str = "") -> str:
    """Return jobs as a table: name, status, schedule, category, next fire, id."""
    rows = [
        f'<tr class="asyncjobs-job"><td style="{_CELL}"><b>{esc(j.name)}</b></td>'
        f'<td style="{_CELL}">{status_badge(j.status)}</td>'
        f'<td style="{_CELL}">{esc(describe_schedule(j.schedule))}</td>'
        f'<td style="{_CELL}">{esc(j.category)}</td>'
        f'<td style="{_CELL}; white-space: nowrap">{_time(j.next_fire_at)}</td>'
        f'<td style="{_CELL}"><code>{esc(j.id)}</code></td></tr>'
        for j in jobs[:MAX_TABLE_ROWS]
    ]
    return _table(
        ("name", "status", "schedule", "category", "next fire (UTC)", "id"),
        rows,
        caption,
        len(jobs),
    )


def categories_table(categories: Sequence[Category], caption: str = "") -> str:
    """Return categories as a table: name, jobs."""
    rows = [
        f'<tr><td style="{_CELL}">{esc(c.name)}</td><td style="{_CELL}">{c.jobs}</td></tr>'
        for c in categories[:MAX_TABLE_ROWS]
    ]
    return _table(("category", "jobs"), rows, caption, len(categories))


def items_html(items: Sequence[object], caption: str = "") -> str | None:
    """Return a table for a non-empty sequence of one kind of record, else ``None``."""
    # IPython calls this for every list it displays: give up at the first item if it can.
    if not items or not isinstance(_record_of(items[0]), _KINDS):
        return None
    records = [_record_of(item) for item in items]
    kinds = {type(record) for record in records}
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    if kind is LogRecord:
        return logs_table(records, caption)  # type: ignore[arg-type]
    if kind is Execution:
        return executions_table(records, caption)  # type: ignore[arg-type]
    if kind is JobRecord:
        return jobs_table(records, caption)  # type: ignore[arg-type]
    if kind is Category:
        return categories_table(records, caption)  # type: ignore[arg-type]
    return None


_KINDS = (LogRecord, Execution, JobRecord, Category)


def page_html(page: Page[Any]) -> str:
    """Return a page of records as a table, captioned with where the page is."""
    caption = f"page {page.page} of {page.pages}, {page.total} in all"
    table = items_html(page.items, caption)
    if table is not None:
        return table
    if not page.items:
        return f'<div style="{_BOX}; color: #6c757d">nothing here ({esc(caption)})</div>'
    listed = "".join(f"<li><code>{esc(repr(item))}</code></li>" for item in page.items)
    return f'<div style="{_BOX}">{esc(caption)}<ul>{listed}</ul></div>'


def execution_text(execution: Execution) -> str:
    """Return one plain line for an execution, for where there is no HTML."""
    value = (
        100.0
        if execution.status == ExecutionStatus.COMPLETED
        else clamp_progress(execution.progress)
    )
    line = f"{execution.task}: {execution.status.value} {value:.0f}%"
    if execution.progress_message:
        line += f" {execution.progress_message}"
    if execution.error is not None:
        line += f" ({execution.error.type}: {execution.error.message})"
    return line


class JobView:
    """What :func:`watch` displays: a job and its latest executions, as HTML or text."""

    def __init__(self, record: JobRecord, executions: Sequence[Execution]) -> None:
        self.record = record
        self.executions = tuple(executions)

    def _repr_html_(self) -> str:
        return job_html(self.record, self.executions)

    def __repr__(self) -> str:
        lines = [f"{self.record.name} [{self.record.status.value}]"]
        lines.extend("  " + execution_text(e) for e in self.executions)
        return "\n".join(lines)


async def watch(job: Job) -> None:
    """Display ``job`` and update the display until its latest firing has ended.

    In Jupyter this is one output that updates in place (an IPython display handle); without
    IPython each change is printed as text. Waits on the runtime's change notifications
    (every store write in this process, progress included, which is written at a bounded
    rate), and re-reads at least every ``poll_interval`` for writes by other processes.
    """
    from ._engine.changes import ANY
    from ._states import TERMINAL

    show = _display_function()
    handle: Any = None
    shown = ""
    while True:
        armed = job._rt._changes_arm(ANY)
        executions = await job._latest_executions()
        view = JobView(job.record, executions)
        text = view._repr_html_()
        if text != shown:  # re-draw only what changed: every update is a message to the page
            shown = text
            handle = show(view, handle)
        if executions and all(e.status in TERMINAL for e in executions):
            await job.refresh()
            view = JobView(job.record, executions)
            if view._repr_html_() != shown:
                show(view, handle)
            return
        await job._rt._changes_wait(armed)


def _display_function() -> Any:
    """Return ``show(view, handle) -> handle``: an IPython display handle, or print."""
    shell = _ipython_shell()
    if shell is None:
        # Not in IPython: plain text. (IPython is not imported here: importing it reads
        # many files, which would block the event loop.)
        def show_text(view: JobView, handle: object) -> object:
            print(repr(view), flush=True)  # noqa: T201 (the text fallback of a display)
            return True

        return show_text

    from IPython.display import display  # already imported: the shell is running

    def show_ipython(view: JobView, handle: Any) -> Any:
        if handle is None:
            return display(view, display_id=True)  # type: ignore[no-untyped-call]
        handle.update(view)
        return handle

    return show_ipython


def _ipython_shell() -> Any:
    """Return the running IPython shell, or ``None``; never imports IPython."""
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    return get_ipython() if get_ipython is not None else None


def register_ipython_formatters() -> None:
    """Make lists of logs, executions, jobs or categories render as tables in IPython.

    Does nothing unless IPython is already imported and a shell is running (this never
    imports IPython). Lists of anything else are left alone: the formatter returns ``None``.
    """
    shell = _ipython_shell()
    if shell is None:
        return
    formatter = shell.display_formatter.formatters.get("text/html")
    if formatter is not None:
        for kind in (list, tuple):
            formatter.for_type(kind, items_html)


def _record_of(item: object) -> object:
    # A Job handle stands for its record (if it was pushed).
    record = getattr(item, "_record", None)
    return record if isinstance(record, JobRecord) else item


def _table(headers: Sequence[str], rows: list[str], caption: str, total: int) -> str:
    if total > len(rows):
        more = f"{len(rows)} of {total} shown"
        caption = f"{caption}; {more}" if caption else more
    head = "".join(f'<th style="{_CELL}">{esc(h)}</th>' for h in headers)
    caption_html = (
        f'<caption style="caption-side: bottom; color: #6c757d; font-size: 12px">'
        f"{esc(caption)}</caption>"
        if caption
        else ""
    )
    return (
        f'<table class="asyncjobs-table" style="{_BOX}; border-collapse: collapse">'
        f"{caption_html}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _time(at: datetime | None) -> str:
    if at is None:
        return ""
    return esc(at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3])


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, separators=(", ", ": "))


def _value(status: object) -> str:
    return str(getattr(status, "value", status))
