"""Protocol v1: how a process execution talks to its parent (the full text: PROTOCOL.md).

Parent -> child: the environment (``JOB_ID``, ``JOB_EXECUTION_ID``, ``JOB_ATTEMPT``,
``JOB_NAME``, ``JOB_SHARED`` and one ``JOB_SHARED_<KEY>`` per key), then JSON lines on stdin:
one ``{"type": "start", "target": ..., "args": [...], "kwargs": {...}}``, later perhaps
``{"type": "cancel"}``. Closing stdin means the parent is gone.

Child -> parent: one JSON object per stdout line, each with a ``type``: ``progress``
(``progress``, ``message``), ``log`` (``level``, ``message``, ``data``), ``shared``
(``key``, ``value``), ``result`` (``value``), ``error`` (``error_type``, ``message``,
``traceback``). Receivers ignore fields they do not know. A stdout line that is not such an
object is plain output (an info log); stderr lines are error logs.

Standard library only: this module is imported by every child.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ._convert import storable_text

PROTOCOL_VERSION = 1

MAX_LINE_BYTES = 1024 * 1024
"""Default cap on one stdout line; the parent discards the rest and fails the execution."""

MESSAGE_TYPES = frozenset({"progress", "log", "shared", "result", "error"})
LEVELS = ("trace", "debug", "info", "warn", "error", "fatal", "panic")


def encode(message: dict[str, Any]) -> bytes:
    """Return ``message`` as one protocol line (compact JSON, no raw newlines, ``\\n``)."""
    # ensure_ascii keeps every line valid UTF-8 whatever the strings hold, and json never
    # emits a raw newline inside a value, so one message is always exactly one line.
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any] | None:
    """Return the protocol message on ``line``, or ``None`` if it is plain output.

    A line is a message when it is a JSON object whose ``type`` is a known message type.
    """
    stripped = line.strip()
    if not stripped.startswith(b"{"):
        return None
    try:
        message = json.loads(stripped)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or message.get("type") not in MESSAGE_TYPES:
        return None
    return message


_KEY = re.compile(r"[^A-Z0-9_]")


def shared_env_name(key: str) -> str:
    """Return the ``JOB_SHARED_<KEY>`` variable name of a shared-data key."""
    return "JOB_SHARED_" + _KEY.sub("_", key.upper())


def shared_env_value(value: Any) -> str:
    """Strings travel raw, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def check_progress(value: object, message: object) -> tuple[float, str]:
    """Return a valid ``(progress, message)``.

    :raises ValueError: naming the value, unless it is a number from 0 to 100 and the message
        a string
    """
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not 0 <= value <= 100
    ):
        raise ValueError(f"progress must be a number from 0 to 100, got {value!r}")
    if not isinstance(message, str):
        raise ValueError(f"the progress message must be a string, got {message!r}")
    return float(value), storable_text(message)
