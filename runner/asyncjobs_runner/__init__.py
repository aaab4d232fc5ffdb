"""asyncjobs_runner: the child side of asyncjobs' process mode (standard library only)."""

from __future__ import annotations

__version__ = "0.1.0"
