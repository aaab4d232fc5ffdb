"""A worker that runs one process task which starts a grandchild; the test SIGKILLs it.

Run as: python -m tests.process.orphan_child URL MARKER task|command
"""

from __future__ import annotations

import sys

import anyio

import asyncjobs as aj
from tests.process import tasks


async def main(url: str, marker: str, kind: str) -> None:
    rt = aj.Runtime(url, workers=2, system_jobs=False)
    rt.task(mode="process")(tasks.with_grandchild)
    async with rt:
        if kind == "task":
            await rt.once(tasks.with_grandchild, marker)
        else:  # a command watches no stdin: it outlives the worker until someone kills it
            code = "import time; time.sleep(600)"
            await rt.command([sys.executable, "-c", code, f"{marker}-grandchild"])
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3])
