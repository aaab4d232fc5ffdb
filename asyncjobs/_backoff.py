"""How long to wait before a retry."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from ._types import duration

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._types import JSON


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """A retry delay policy: fixed, exponential (capped, with jitter) or a function.

    Build one with :meth:`fixed`, :meth:`exponential` or :meth:`custom`; ``delay(n)`` is the
    wait before attempt ``n + 1`` after attempt ``n`` failed (``n`` starts at 1).
    """

    kind: Literal["fixed", "exponential", "custom"]
    base: float = 1.0
    cap: float = 3600.0
    jitter: float = 0.0
    function: Callable[[int], float | timedelta] | None = None

    @classmethod
    def fixed(cls, seconds: float | timedelta) -> Backoff:
        """Wait the same time before every retry.

        :raises ValueError: if ``seconds`` is not a duration from 0 to 100 years
        """
        return cls(kind="fixed", base=duration(seconds, name="Backoff.fixed(seconds)"))

    @classmethod
    def exponential(
        cls, base: float | timedelta = 1.0, cap: float | timedelta = 3600.0, *, jitter: float = 0.1
    ) -> Backoff:
        """Wait ``base * 2**(n-1)`` seconds, at most ``cap``, spread by ``±jitter`` (a fraction).

        :raises ValueError: if a duration is negative or past 100 years, ``cap`` is below
            ``base``, or ``jitter`` is not a number from 0 to 1
        """
        if not isinstance(jitter, int | float) or isinstance(jitter, bool) or not 0 <= jitter <= 1:
            raise ValueError(
                f"Backoff.exponential(jitter=...) must be a fraction from 0 to 1, got {jitter!r}"
            )
        base_seconds = duration(base, name="Backoff.exponential(base=...)")
        cap_seconds = duration(cap, name="Backoff.exponential(cap=...)")
        if cap_seconds < base_seconds:
            raise ValueError(
                f"Backoff.exponential(cap=...) must be at least base ({base!r}), got {cap!r}"
            )
        return cls(kind="exponential", base=base_seconds, cap=cap_seconds, jitter=float(jitter))

    @classmethod
    def custom(cls, function: Callable[[int], float | timedelta]) -> Backoff:
        """Ask ``function(attempt)`` for the delay (seconds or a timedelta)."""
        if not callable(function):
            raise ValueError(f"Backoff.custom needs a callable, got {function!r}")
        return cls(kind="custom", function=function)

    def delay(self, attempt: int) -> float:
        """Return the seconds to wait after attempt ``attempt`` (1-based) failed."""
        if self.kind == "fixed":
            return self.base
        if self.kind == "custom":
            assert self.function is not None
            return duration(self.function(attempt), name="the custom backoff's delay")
        raw = min(self.cap, self.base * 2.0 ** min(attempt - 1, 64))
        if self.jitter:
            raw *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, min(raw, self.cap * (1 + self.jitter)))

    def to_json(self) -> dict[str, JSON] | None:
        """Return the policy as JSON, or ``None`` for a custom function (kept in the task)."""
        if self.kind == "custom":
            return None
        return {"kind": self.kind, "base": self.base, "cap": self.cap, "jitter": self.jitter}

    @classmethod
    def from_json(cls, data: dict[str, JSON]) -> Backoff:
        """Rebuild a policy written by :meth:`to_json`."""
        kind = data.get("kind")
        base, cap, jitter = data.get("base", 1.0), data.get("cap", 3600.0), data.get("jitter", 0)
        assert isinstance(base, int | float)
        assert isinstance(cap, int | float)
        assert isinstance(jitter, int | float)
        if kind == "fixed":
            return cls(kind="fixed", base=float(base))
        return cls(kind="exponential", base=float(base), cap=float(cap), jitter=float(jitter))


def as_backoff(value: Backoff | float | timedelta | Callable[[int], float | timedelta]) -> Backoff:
    """Accept a :class:`Backoff`, a fixed delay, or a function of the attempt."""
    if isinstance(value, Backoff):
        return value
    if isinstance(value, int | float | timedelta) and not isinstance(value, bool):
        return Backoff(kind="fixed", base=duration(value, name="backoff"))
    if callable(value):
        return Backoff.custom(value)
    raise ValueError(
        f"backoff must be an aj.Backoff, seconds, a timedelta or a function, got {value!r}"
    )


DEFAULT_BACKOFF = Backoff.exponential(1.0, 300.0, jitter=0.1)

Backoff.__module__ = "asyncjobs"
