"""Tasks the benchmarks run in process children (imported there by target)."""

from __future__ import annotations


def noop() -> None:
    return None
