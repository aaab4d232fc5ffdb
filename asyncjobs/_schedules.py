"""Schedules: when a job fires."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeAlias

from ._errors import InvalidSchedule
from ._types import as_seconds, from_datetime

if TYPE_CHECKING:
    from ._types import JSON


@dataclass(frozen=True, slots=True, kw_only=True)
class Once:
    """Fire once: at ``at`` (an aware datetime; a naive one is taken as UTC), or ``after``
    seconds from when the job is pushed, or now. A time in the past fires at once.
    """

    at: datetime | None = None
    after: float | timedelta | None = None

    def __post_init__(self) -> None:
        if self.at is not None and self.after is not None:
            raise InvalidSchedule(
                f"Once takes at= or after=, not both (got {self.at!r} and {self.after!r})"
            )
        if self.at is not None and not isinstance(self.at, datetime):
            raise InvalidSchedule(f"Once(at=...) must be a datetime, got {self.at!r}")
        try:
            as_seconds(self.after, name="after")
        except ValueError as exc:
            raise InvalidSchedule(str(exc)) from None

    def first_fire(self, now: float) -> float:
        """Return when the job fires, as Unix seconds."""
        if self.at is not None:
            return from_datetime(self.at)
        return now + (as_seconds(self.after, name="after") or 0.0)

    def to_json(self, now: float) -> dict[str, JSON]:
        fire = self.first_fire(now)
        return {"kind": "once", "at": datetime.fromtimestamp(fire, UTC).isoformat()}


Schedule: TypeAlias = Once

Once.__module__ = "asyncjobs"
_ = timedelta
