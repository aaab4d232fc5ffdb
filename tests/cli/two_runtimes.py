"""A module with two runtimes: ``asyncjobs worker`` must be told which one to run."""

from __future__ import annotations

import asyncjobs as aj

first = aj.Runtime("memory://")
second = aj.Runtime("memory://")
