"""What the ``asyncjobs`` command prints: JSON documents, tables and live progress bars.

Standard library and ANSI escapes only. Live drawing (cursor movement, colour) happens only
on a terminal; redirected output gets plain lines that a script or a log file can read.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from asyncjobs import ExecutionStatus, Job, LogLevel

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import TextIO

    from asyncjobs import Execution, LogRecord, LogWritten

_STATUS_COLOURS = {
    "completed": "32",  # green
    "failed": "31",  # red
    "cancelled": "35",  # magenta
    "retrying": "33",  # yellow
    "running": "36",  # cyan
    "active": "32",
    "paused": "33",
    "stopped": "35",
    "deleted": "2",
}


def jsonable(value: object) -> Any:
    """Return ``value`` (records, handles, enums, times) as plain JSON values."""
    if isinstance(value, Job):
        return jsonable(value.record)
    if isinstance(value, LogLevel):
        return value.name.lower()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_json = getattr(value, "to_json", None)
        if callable(to_json):
            return to_json()
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple (Transition)
        return {name: jsonable(item) for name, item in zip(value._fields, value, strict=True)}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def dump(value: object, stream: TextIO, *, line: bool = False) -> None:
    """Write ``value`` as one JSON document (``line``: compact, on one line)."""
    if line:
        stream.write(json.dumps(jsonable(value), separators=(",", ":")) + "\n")
    else:
        stream.write(json.dumps(jsonable(value), indent=2) + "\n")
    stream.flush()


def colour_enabled(stream: TextIO) -> bool:
    """Whether to colour ``stream``: a terminal, and ``$NO_COLOR`` not set."""
    return _isatty(stream) and "NO_COLOR" not in os.environ


def paint(text: str, status: str, enabled: bool) -> str:
    """Colour ``text`` after a status name, if ``enabled``."""
    code = _STATUS_COLOURS.get(status)
    return f"\x1b[{code}m{text}\x1b[0m" if enabled and code else text


def when(value: datetime | None) -> str:
    """A time in the local zone, to the second; ``-`` for none."""
    return "-" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(start: datetime | None, end: datetime | None) -> str:
    """How long between two times, short (``1.2s``, ``3m04s``); ``-`` if not both known."""
    if start is None or end is None:
        return "-"
    seconds = (end - start).total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def outcome(execution: Execution) -> str:
    """The result or error of an execution, on one short line."""
    if execution.error is not None:
        return f"{execution.error.type}: {execution.error.message}".splitlines()[0]
    if execution.status == ExecutionStatus.COMPLETED:
        return json.dumps(execution.result)
    if execution.progress_message:
        return execution.progress_message
    return ""


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    stream: TextIO,
    *,
    status_column: int | None = None,
) -> None:
    """Write an aligned table; the last column is cut to fit a terminal's width."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    coloured = colour_enabled(stream)
    total = shutil.get_terminal_size((200, 24)).columns if _isatty(stream) else None
    lines = [_row(headers, widths, None, False, total)]
    lines.extend(_row(row, widths, status_column, coloured, total) for row in rows)
    stream.write("\n".join(lines) + "\n")
    stream.flush()


def _row(
    cells: Sequence[str],
    widths: Sequence[int],
    status_column: int | None,
    coloured: bool,
    total: int | None,
) -> str:
    parts = []
    used = 0
    for i, cell in enumerate(cells):
        last = i == len(cells) - 1
        text = cell if last else cell.ljust(widths[i])
        if last and total is not None and used + len(text) > total:
            text = text[: max(1, total - used - 1)] + "…"
        used += len(text) + 2
        if i == status_column:
            text = paint(text, cell, coloured)
        parts.append(text)
    return "  ".join(parts).rstrip()


def log_line(record: LogRecord | LogWritten, stream: TextIO) -> str:
    """One log record (or live log event) as a line: time, level, message and its data."""
    level = record.level.name.lower()
    data = f" {json.dumps(record.data)}" if record.data else ""
    stamp = record.at.astimezone().strftime("%H:%M:%S.%f")[:-3]
    colour = {"warn": "33", "error": "31", "fatal": "31", "panic": "31", "debug": "2"}.get(level)
    shown = f"\x1b[{colour}m{level:<5}\x1b[0m" if colour and colour_enabled(stream) else level
    return f"{stamp} {shown:<5} {record.message}{data}"


@dataclasses.dataclass
class _Bar:
    label: str
    kind: str = ""
    progress: float = 0.0
    message: str = ""
    status: str = "queued"
    attempt: int = 1


class LiveBars:
    """Progress bars for a few executions, redrawn in place on a terminal.

    Off a terminal nothing is redrawn: a line is written when a bar changes status, and
    :meth:`close` writes the bars once, so that redirected output stays readable.
    """

    def __init__(self, stream: TextIO, *, width: int = 24, label_width: int = 24) -> None:
        self._stream = stream
        self._live = _isatty(stream)
        self._colour = colour_enabled(stream)
        self._width = width
        self._label_width = label_width
        self._bars: dict[str, _Bar] = {}
        self._kind_width = 0
        self._drawn = 0
        self._last_draw = 0.0
        encoding = (getattr(stream, "encoding", None) or "").lower()
        self._full, self._empty = ("█", "░") if "utf" in encoding else ("#", "-")

    @property
    def is_live(self) -> bool:
        return self._live

    def add(
        self,
        key: str,
        label: str,
        *,
        kind: str = "",
        status: str = "queued",
        progress: float = 0.0,
    ) -> None:
        """Add a bar (a no-op if ``key`` has one); ``kind`` is a short tag after the label."""
        if key not in self._bars:
            self._bars[key] = _Bar(label=label, kind=kind, status=status, progress=progress)
            self._label_width = max(self._label_width, min(len(label), 40))
            self._kind_width = max(self._kind_width, len(kind))

    def __contains__(self, key: str) -> bool:
        return key in self._bars

    def update(
        self,
        key: str,
        *,
        progress: float | None = None,
        message: str | None = None,
        status: str | None = None,
        attempt: int | None = None,
    ) -> None:
        """Change a bar and redraw (at most 20 times a second on a terminal)."""
        bar = self._bars.get(key)
        if bar is None:
            return
        if progress is not None:
            bar.progress = max(0.0, min(100.0, progress))
        if message is not None:
            bar.message = message
        if attempt is not None:
            bar.attempt = attempt
        if status is not None and status != bar.status:
            bar.status = status
            if status == "completed":
                bar.progress = 100.0
            if not self._live:
                self._stream.write(f"  {bar.label}: {status}\n")
                self._stream.flush()
            self.draw(force=True)
            return
        self.draw()

    def draw(self, *, force: bool = False) -> None:
        """Redraw the bars in place (on a terminal only)."""
        if not self._live:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.05:
            return
        self._last_draw = now
        out = [f"\x1b[{self._drawn}F"] if self._drawn else []
        out.extend("\x1b[2K" + self._line(bar) + "\n" for bar in self._bars.values())
        self._drawn = len(self._bars)
        self._stream.write("".join(out))
        self._stream.flush()

    def close(self) -> None:
        """Draw the final state: in place on a terminal, else once as plain lines."""
        if self._live:
            self.draw(force=True)
        else:
            self._stream.write("".join(self._line(bar) + "\n" for bar in self._bars.values()))
            self._stream.flush()

    def _line(self, bar: _Bar) -> str:
        filled = round(self._width * bar.progress / 100)
        gauge = self._full * filled + self._empty * (self._width - filled)
        label = bar.label[: self._label_width].ljust(self._label_width)
        if self._kind_width:
            label += " " + bar.kind.ljust(self._kind_width)
        status = paint(f"{bar.status:<9}", bar.status, self._colour)
        retry = f" (attempt {bar.attempt})" if bar.attempt > 1 else ""
        message = (bar.message + retry)[:40]
        return f"  {label} {gauge} {bar.progress:5.1f}%  {status} {message}"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
