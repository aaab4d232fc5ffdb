"""Small shared types and the conversions done once at the edge: ids, times, durations."""

from __future__ import annotations

import math
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Literal, NewType, TypeAlias

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None
JobId = NewType("JobId", str)
ExecutionId = NewType("ExecutionId", str)
Mode: TypeAlias = Literal["coroutine", "process"]
WorkerLostPolicy: TypeAlias = Literal["retry", "fail"]

MODES: tuple[Mode, ...] = ("coroutine", "process")
WORKER_LOST_POLICIES: tuple[WorkerLostPolicy, ...] = ("retry", "fail")

# The bounds every way in (Python API, CLI, HTTP API) applies, so that a value one accepts
# the others accept too, and every store can keep it.
MAX_SECONDS = 100 * 365.25 * 86400
"""The longest delay, interval, timeout or retention accepted (a hundred years): a time that
far ahead is still a valid datetime, so every listing can show it."""
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
"""The range of stored integers (priority, retries...): PostgreSQL keeps them as int4."""
MAX_PAGE = 1_000_000
"""The highest page number asked for (offsets stay far from any integer limit)."""

_uuid_lock = threading.Lock()
_uuid_last = (0, 0)  # (milliseconds, counter) of the last id made in this process
_random: list[int] = []  # 64-bit values read from os.urandom ahead, one id takes one


def _forget_random() -> None:
    _random.clear()  # a forked child must not make the ids its parent makes


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork either
    os.register_at_fork(after_in_child=_forget_random)


def new_id() -> str:
    """Return a UUIDv7 as text: time-ordered, and strictly increasing within this process.

    The 12 ``rand_a`` bits hold a counter within the millisecond (RFC 9562, method 1), so
    ``ORDER BY id`` is creation order for ids made here, which the FIFO claim order relies on.
    The 62 ``rand_b`` bits come from ``os.urandom``, read 4 KiB at a time.
    """
    global _uuid_last
    with _uuid_lock:
        ms = time.time_ns() // 1_000_000
        last_ms, counter = _uuid_last
        if ms <= last_ms:
            ms, counter = last_ms, counter + 1
            if counter > 0xFFF:
                ms, counter = ms + 1, 0
        else:
            counter = 0
        _uuid_last = (ms, counter)
        if not _random:
            _random.extend(memoryview(os.urandom(4096)).cast("Q"))
        rand = _random.pop()
    # 48 bits of time, version 7, the counter; variant 0b10 and 62 random bits.
    return "%08x-%04x-7%03x-%04x-%012x" % (  # noqa: UP031 (one format: the fastest here)
        ms >> 16,
        ms & 0xFFFF,
        counter,
        0x8000 | (rand >> 50),
        rand & 0xFFFF_FFFF_FFFF,
    )


def now() -> float:
    """Return the wall-clock time as Unix seconds (the stores' time unit)."""
    return time.time()


_last_datetime = (math.nan, datetime.fromtimestamp(0, UTC))


def to_datetime(seconds: float | None) -> datetime | None:
    """Return Unix ``seconds`` as an aware UTC datetime (``None`` stays ``None``)."""
    global _last_datetime
    if seconds is None:
        return None
    # One instant is often asked for several times in a row (a claim's rows share their
    # start); datetimes are immutable, so the last one is shared.
    last, value = _last_datetime
    if seconds != last:
        value = datetime.fromtimestamp(seconds, UTC)
        _last_datetime = (seconds, value)
    return value


def from_datetime(value: datetime) -> float:
    """Return ``value`` as Unix seconds; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def as_seconds(
    value: float | timedelta | None, *, name: str, allow_zero: bool = True
) -> float | None:
    """Return a duration given as seconds or a timedelta as float seconds.

    :raises ValueError: naming ``name`` and the value, if it is not a duration, negative (or
        zero, unless ``allow_zero``), not finite, or longer than :data:`MAX_SECONDS`
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            seconds = math.inf
    else:
        raise ValueError(f"{name} must be seconds or a timedelta, got {value!r}")
    # ``not 0 <= seconds`` is also true for NaN.
    if not 0 <= seconds <= MAX_SECONDS or (seconds == 0 and not allow_zero):
        expected = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {expected} seconds (at most 100 years), got {value!r}")
    return seconds


def duration(value: float | timedelta, *, name: str, allow_zero: bool = True) -> float:
    """:func:`as_seconds` for a duration that must be given (``None`` is refused too).

    :raises ValueError: as :func:`as_seconds`, and naming ``name`` if ``value`` is None
    """
    result = as_seconds(value, name=name, allow_zero=allow_zero)
    if result is None:
        raise ValueError(f"{name} must be seconds or a timedelta, got None")
    return result


def check_int(
    name: str, value: object, *, minimum: int = INT32_MIN, maximum: int = INT32_MAX
) -> int:
    """Return ``value`` if it is an int from ``minimum`` to ``maximum`` (a bool is not).

    The default bounds are a stored integer's (:data:`INT32_MIN`, :data:`INT32_MAX`).

    :raises ValueError: naming ``name``, the value and the bound it breaks
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}")
    return value
