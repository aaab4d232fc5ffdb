"""A fuzz pass: schemathesis drives the live API from its own /openapi.json; no 5xx allowed.

It also checks every answer against the document (status codes, content types, response
schemas), so the document stays accurate. The seed is fixed: a failure reproduces, and the
run takes the same time in CI as here (about 15 s).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import asyncjobs as aj

from .conftest import served

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
SCHEMATHESIS = "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())"


@pytest.fixture
def anyio_backend() -> object:
    # One event loop is enough: the server's code is the same on both.
    return "asyncio"


async def schemathesis(cwd: Path, url: str, token: str, *options: str) -> None:
    command = [
        sys.executable,
        "-c",
        SCHEMATHESIS,
        "run",
        f"{url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        ",".join(CHECKS),
        "--seed",
        "20261125",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--generation-database",
        "none",
        "--no-color",
        *options,
    ]
    env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""}
    result = await anyio.run_process(command, cwd=cwd, env=env, check=False)
    output = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    assert token not in output
    assert result.returncode == 0, output
    assert "Tested: " in output, output


async def test_no_input_makes_a_server_error(tmp_path: Path, token: str) -> None:
    # Tasks that end at once: the stateful phase creates and triggers jobs for them with
    # fuzzed arguments, then follows the links to their executions.
    rt = aj.Runtime(
        f"sqlite:///{tmp_path}/fuzz.db", poll_interval=0.05, progress_interval=0, system_jobs=False
    )

    @rt.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    @rt.task(name="echo")
    def echo(ctx: aj.Context, value: Any = None, *, note: str = "") -> Any:
        ctx.progress(50, note)
        ctx.log.info("echo %r", value, note=note)
        return value

    @rt.task(name="fail")
    async def fail(message: str = "boom") -> None:
        raise ValueError(message)

    async with served(rt, token=token) as url:
        with anyio.fail_after(100):
            # Everything but the streams, every phase (the stateful one follows links
            # from created jobs to their executions and commands).
            await schemathesis(
                tmp_path,
                url,
                token,
                "--max-examples",
                "25",
                "--exclude-path-regex",
                "events$",
                "--suppress-health-check",
                "all",
            )
            # The stream of one execution, without the stateful phase: fuzzed ids and
            # cursors, never a stream that would wait for a live execution.
            await schemathesis(
                tmp_path,
                url,
                token,
                "--max-examples",
                "25",
                "--include-path",
                "/executions/{execution_id}/events",
                "--phases",
                "examples,coverage,fuzzing",
            )
