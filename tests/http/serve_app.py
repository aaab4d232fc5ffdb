"""Run by test_serve.py: serve a small runtime as ``asyncjobs serve`` does, until Ctrl+C.

Usage: ``python -m tests.http.serve_app STORE_URL`` (the token comes from $ASYNCJOBS_TOKEN).
"""

from __future__ import annotations

import sys

import asyncjobs as aj
from asyncjobs.http import serve

rt = aj.Runtime(sys.argv[1] if len(sys.argv) > 1 else "memory://", system_jobs=False)


@rt.task(name="add")
def add(a: int, b: int) -> int:
    return a + b


if __name__ == "__main__":
    serve(rt, port=0)
    print("serve returned", flush=True)
