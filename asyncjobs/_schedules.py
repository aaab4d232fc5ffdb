"""Schedules: when a job fires. Each firing creates one execution per step.

``Once`` fires once; ``Cron`` on a cron expression in a time zone; ``Every`` at a fixed
interval measured from the schedule (it does not drift); ``Daemon`` keeps one execution
alive and restarts it when it ends, like a supervisor.

Cron and daylight saving time, the rule (:meth:`Cron.next_fire`):

* a wall-clock time that does not exist (spring forward) fires at the first instant after
  the gap: ``30 2 * * *`` in Europe/Berlin fires at 03:00 on 2024-03-31;
* a wall-clock time that occurs twice (fall back) fires once, at its first occurrence,
  unless the expression fires every hour or more often: then it fires at both, so that it
  runs once per real hour (or per real 20 minutes...).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Literal, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._backoff import Backoff, as_backoff
from ._errors import InvalidSchedule
from ._types import as_seconds, check_int, from_datetime

if TYPE_CHECKING:
    from ._types import JSON

Misfire: TypeAlias = Literal["skip", "run_once", "run_all"]
Overlap: TypeAlias = Literal["skip", "allow", "queue"]
Restart: TypeAlias = Literal["always", "on_failure", "never"]
MISFIRES: tuple[Misfire, ...] = ("skip", "run_once", "run_all")
OVERLAPS: tuple[Overlap, ...] = ("skip", "allow", "queue")
RESTARTS: tuple[Restart, ...] = ("always", "on_failure", "never")


def _choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidSchedule(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _count(name: str, value: object, *, minimum: int) -> int:
    try:
        return check_int(name, value, minimum=minimum)
    except ValueError as exc:
        raise InvalidSchedule(str(exc)) from None


def _duration(
    name: str, value: float | timedelta | None, *, positive: bool = False
) -> float | None:
    try:
        return as_seconds(value, name=name, allow_zero=not positive)
    except ValueError as exc:
        raise InvalidSchedule(str(exc)) from None


def _zone(tz: str) -> tzinfo:
    # Checked before the cache: an unhashable value (a list) must get this error too.
    if not isinstance(tz, str) or not tz:
        raise InvalidSchedule(f"tz must be an IANA time zone name like 'Europe/Paris', got {tz!r}")
    return _load_zone(tz)


@functools.cache
def _load_zone(tz: str) -> tzinfo:
    # Cached: the first load of a zone reads a file, and it is asked for at every tick.
    if tz == "UTC":
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(
            f"unknown time zone {tz!r}; expected an IANA name like 'Europe/Paris' or 'UTC'"
        ) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Once:
    """Fire once: ``at`` a time, ``after`` seconds from when the job is pushed, or now.

    A naive ``at`` is a wall-clock time in ``tz`` (default UTC); a time in the past fires at
    once.
    """

    at: datetime | None = None
    after: float | timedelta | None = None
    tz: str = "UTC"

    def __post_init__(self) -> None:
        if self.at is not None and self.after is not None:
            raise InvalidSchedule(
                f"Once takes at= or after=, not both (got {self.at!r} and {self.after!r})"
            )
        if self.at is not None and not isinstance(self.at, datetime):
            raise InvalidSchedule(f"Once(at=...) must be a datetime, got {self.at!r}")
        _duration("after", self.after)
        _zone(self.tz)
        if self.at is not None:
            try:  # the time must be one that every listing can show again
                datetime.fromtimestamp(self.first_fire(0.0), UTC)
            except (OverflowError, ValueError, OSError):
                raise InvalidSchedule(
                    f"Once(at=...) must be a time from year 1 to 9999 in UTC, got {self.at!r}"
                ) from None

    def first_fire(self, now: float) -> float:
        """Return when the job fires, as Unix seconds."""
        if self.at is not None:
            at = self.at if self.at.tzinfo else self.at.replace(tzinfo=_zone(self.tz))
            return from_datetime(at)
        return now + (_duration("after", self.after) or 0.0)

    def to_json(self) -> dict[str, JSON]:
        return {"kind": "once"}


@dataclass(frozen=True, slots=True)
class Cron:
    """Fire on a five-field cron expression (or ``@hourly``, ``@daily``, ...) in ``tz``.

    A sixth field, after the weekday, gives the seconds (croniter's form):
    ``* * * * * */10`` fires every ten seconds.

    :param misfire: ticks missed while no runtime ran (or the job was paused): ``"skip"``
        (run at the next tick only), ``"run_once"`` (one catch-up run now) or ``"run_all"``
        (every missed tick, oldest first, at most ``max_catchup``)
    :param overlap: a tick that comes while the previous run still runs: ``"skip"`` it,
        ``"allow"`` both, or ``"queue"`` it until the previous run ends
    :param misfire_grace: seconds a tick may be late and still count as on time
    """

    expr: str
    tz: str = field(default="UTC", kw_only=True)
    misfire: Misfire = field(default="skip", kw_only=True)
    overlap: Overlap = field(default="skip", kw_only=True)
    max_catchup: int = field(default=100, kw_only=True)
    misfire_grace: float = field(default=60.0, kw_only=True)

    def __post_init__(self) -> None:
        from croniter import croniter

        if not isinstance(self.expr, str) or not croniter.is_valid(self.expr):
            raise InvalidSchedule(
                f"malformed cron expression {self.expr!r}; expected five fields "
                "'minute hour day month weekday' (like '30 2 * * *'), a sixth for seconds, "
                "or @hourly, @daily, @weekly, @monthly, @yearly"
            )
        if len(self.expr.split()) not in (1, 5, 6):
            raise InvalidSchedule(
                f"cron expression {self.expr!r} has {len(self.expr.split())} fields; "
                "expected five: 'minute hour day month weekday' (and optionally seconds)"
            )
        _zone(self.tz)
        _choice("misfire", self.misfire, MISFIRES)
        _choice("overlap", self.overlap, OVERLAPS)
        _count("max_catchup", self.max_catchup, minimum=1)
        _duration("misfire_grace", self.misfire_grace)

    def first_fire(self, now: float) -> float:
        return self.next_fire(now)

    def next_fire(self, after: float) -> float:
        """Return the first fire instant strictly after ``after`` (Unix seconds).

        :raises InvalidSchedule: if the expression never fires
        """
        from croniter import CroniterBadDateError, croniter

        zone = _zone(self.tz)
        minutes, hours = croniter(self.expr).expanded[:2]
        every_hour = _sub_hourly(minutes, hours)
        # Wall time is instant plus offset, so the first tick after ``after``'s wall time is
        # the answer, unless the offset changes soon: then the first tick of each side of the
        # change is a candidate too (a fall-back repeats wall times already passed). One
        # croniter step per candidate, however fine the expression (seconds included).
        seeds = [datetime.fromtimestamp(after, zone).replace(tzinfo=None)]
        change = _next_change(zone, after, 3 * 3600)
        if change is not None:
            # Ticks from the change's wall time on each side: just before it is a whole
            # second earlier (ticks fall on whole seconds, and croniter starts after its seed).
            at = datetime.fromtimestamp(change, UTC).replace(tzinfo=None) - timedelta(seconds=1)
            seeds += [at + _offset(zone, change - 1), at + _offset(zone, change)]
        best: float | None = None
        try:
            for seed in seeds:
                it = croniter(self.expr, seed)
                for _ in range(100_000):
                    wall = it.get_next(datetime)
                    found = [i for i in _instants(wall, zone, every_hour) if i > after]
                    if found:
                        best = min(found) if best is None else min(best, *found)
                        break
        except CroniterBadDateError:
            # croniter gives up after years without a matching date (February 30th).
            best = None
        if best is None:
            raise InvalidSchedule(
                f"cron expression {self.expr!r} never fires: no calendar date matches it "
                "(February 30th, April 31st...); expected one that matches a real date"
            )
        return best

    def to_json(self) -> dict[str, JSON]:
        return {
            "kind": "cron",
            "expr": self.expr,
            "tz": self.tz,
            "misfire": self.misfire,
            "overlap": self.overlap,
            "max_catchup": self.max_catchup,
            "misfire_grace": self.misfire_grace,
        }


def _offset(zone: tzinfo, instant: int) -> timedelta:
    offset = datetime.fromtimestamp(instant, zone).utcoffset()
    assert offset is not None
    return offset


def _next_change(zone: tzinfo, after: float, window: int) -> int | None:
    """Return the first whole second in ``(after, after + window]`` whose UTC offset differs
    from the one before it, or ``None`` (zones change at most once in a few hours)."""
    low, high = math.floor(after), math.ceil(after) + window
    before = _offset(zone, low)
    if _offset(zone, high) == before:
        return None
    while high - low > 1:  # offset(low) is the old one, offset(high) the new one
        middle = (low + high) // 2
        if _offset(zone, middle) == before:
            low = middle
        else:
            high = middle
    return high


def _sub_hourly(minutes: list[Any], hours: list[Any]) -> bool:
    """Whether the expression fires every hour or more often than hourly."""
    return minutes == ["*"] or len(minutes) > 1 or hours == ["*"] or len(hours) == 24


def _instants(wall: datetime, zone: tzinfo, every_hour: bool) -> list[float]:
    """Return the instants a wall-clock time stands for in ``zone`` (see the module rule)."""
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return [first.timestamp()]
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall:
        # In a gap: fire at the first wall-clock minute after it that exists.
        probe = wall
        for _ in range(24 * 60):
            probe += timedelta(minutes=1)
            candidate = probe.replace(tzinfo=zone)
            if candidate.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == probe:
                return [probe.replace(second=0, microsecond=0, tzinfo=zone).timestamp()]
        return []
    return [first.timestamp(), second.timestamp()] if every_hour else [first.timestamp()]


@dataclass(frozen=True, slots=True)
class Every:
    """Fire every ``interval`` (seconds or a timedelta), first one interval after the push.

    Fire times are counted from the first one, never from when a run ended, so they do not
    drift. ``misfire``, ``overlap`` and ``max_catchup`` work as for :class:`Cron`.
    """

    interval: float | timedelta
    misfire: Misfire = field(default="skip", kw_only=True)
    overlap: Overlap = field(default="skip", kw_only=True)
    max_catchup: int = field(default=100, kw_only=True)
    misfire_grace: float = field(default=60.0, kw_only=True)

    def __post_init__(self) -> None:
        _duration("interval", self.interval, positive=True)
        _choice("misfire", self.misfire, MISFIRES)
        _choice("overlap", self.overlap, OVERLAPS)
        _count("max_catchup", self.max_catchup, minimum=1)
        _duration("misfire_grace", self.misfire_grace)

    @property
    def seconds(self) -> float:
        value = _duration("interval", self.interval, positive=True)
        assert value is not None
        return value

    def first_fire(self, now: float) -> float:
        return now + self.seconds

    def to_json(self) -> dict[str, JSON]:
        return {
            "kind": "every",
            "interval": self.seconds,
            "misfire": self.misfire,
            "overlap": self.overlap,
            "max_catchup": self.max_catchup,
            "misfire_grace": self.misfire_grace,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Daemon:
    """Keep one execution running: start it at once and restart it when it ends.

    :param restart: ``"always"``, ``"on_failure"`` (not after a clean exit) or ``"never"``
    :param backoff: the delay before the n-th consecutive quick restart (default:
        exponential from 1 s, capped at 60 s); a run that lasted ``reset_after`` seconds
        resets the count
    :param max_restarts: stop restarting after this many restarts (``None``: no limit)
    """

    restart: Restart = "always"
    backoff: Backoff | float | timedelta | None = None
    max_restarts: int | None = None
    reset_after: float = 60.0

    def __post_init__(self) -> None:
        _choice("restart", self.restart, RESTARTS)
        if self.max_restarts is not None:
            _count("max_restarts", self.max_restarts, minimum=0)
        if self.backoff is not None:
            try:
                if as_backoff(self.backoff).kind == "custom":
                    raise InvalidSchedule("a daemon's backoff cannot be a function: it is stored")
            except ValueError as exc:
                raise InvalidSchedule(str(exc)) from None
        _duration("reset_after", self.reset_after)

    def policy(self) -> Backoff:
        if self.backoff is None:
            return Backoff.exponential(1.0, 60.0, jitter=0.1)
        return as_backoff(self.backoff)

    def first_fire(self, now: float) -> float:
        return now

    def to_json(self) -> dict[str, JSON]:
        return {
            "kind": "daemon",
            "restart": self.restart,
            "backoff": self.policy().to_json(),
            "max_restarts": self.max_restarts,
            "reset_after": self.reset_after,
        }


Schedule: TypeAlias = Once | Cron | Every | Daemon


def schedule_from_json(data: dict[str, JSON]) -> Schedule:
    """Rebuild a stored schedule (the inverse of ``to_json``)."""
    kind = data.get("kind")
    if kind == "cron":
        return Cron(
            str(data["expr"]),
            tz=str(data.get("tz", "UTC")),
            misfire=data.get("misfire", "skip"),  # type: ignore[arg-type]
            overlap=data.get("overlap", "skip"),  # type: ignore[arg-type]
            max_catchup=int(data.get("max_catchup", 100)),  # type: ignore[arg-type]
            misfire_grace=float(data.get("misfire_grace", 60.0)),  # type: ignore[arg-type]
        )
    if kind == "every":
        return Every(
            float(data["interval"]),  # type: ignore[arg-type]
            misfire=data.get("misfire", "skip"),  # type: ignore[arg-type]
            overlap=data.get("overlap", "skip"),  # type: ignore[arg-type]
            max_catchup=int(data.get("max_catchup", 100)),  # type: ignore[arg-type]
            misfire_grace=float(data.get("misfire_grace", 60.0)),  # type: ignore[arg-type]
        )
    if kind == "daemon":
        backoff = data.get("backoff")
        return Daemon(
            restart=data.get("restart", "always"),  # type: ignore[arg-type]
            backoff=Backoff.from_json(backoff) if isinstance(backoff, dict) else None,
            max_restarts=data.get("max_restarts"),  # type: ignore[arg-type]
            reset_after=float(data.get("reset_after", 60.0)),  # type: ignore[arg-type]
        )
    return Once()


for _cls in (Once, Cron, Every, Daemon):
    _cls.__module__ = "asyncjobs"
