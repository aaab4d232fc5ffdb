from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import asyncjobs as aj

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"asyncio", "anyio", "aiosqlite", "asyncpg", "croniter", "orjson", "sqlite3"}


def test_every_public_name_resolves_and_belongs_to_asyncjobs() -> None:
    for name in aj.__all__:
        value = getattr(aj, name)
        module = getattr(value, "__module__", "asyncjobs")
        if isinstance(value, type):
            assert module == "asyncjobs", (name, module)


def test_the_surface_is_pinned() -> None:
    assert set(aj.__all__) == {
        "AsyncJobsError", "Backoff", "Category", "Clock", "Context", "Cron", "Daemon",
        "ErrorInfo", "Event", "Every", "Execution", "ManualClock", "SystemClock", "Command",
        "ProcessLimits",
        "ExecutionCancelled", "ExecutionFailed", "ExecutionNotFound", "ExecutionStatus",
        "ExecutionTimeout", "InvalidArguments", "InvalidSchedule", "InvalidStoreURL", "Job",
        "JobNotFound", "JobStatus", "LogLevel", "LogRecord", "LogWritten", "Once", "Page",
        "ProgressReported", "ProtocolError", "Runtime", "SchemaVersionError", "StateChanged",
        "Statistics", "StoreError", "Transition", "UnknownTask", "__version__",
    }  # fmt: skip


def test_errors_form_one_hierarchy() -> None:
    for name in aj.__all__:
        value = getattr(aj, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, aj.AsyncJobsError), name
    assert issubclass(aj.ExecutionTimeout, aj.ExecutionFailed)
    assert issubclass(aj.ExecutionTimeout, TimeoutError)
    assert issubclass(aj.InvalidArguments, TypeError)
    assert issubclass(aj.JobNotFound, LookupError)


def test_import_and_runtime_construction_load_no_heavy_module() -> None:
    # A process child imports the user's module, which imports asyncjobs and builds a
    # Runtime: neither may pull in asyncio, anyio, aiosqlite, croniter or orjson.
    code = (
        "import sys, asyncjobs as aj\n"
        "rt = aj.Runtime('sqlite:///unused.db')\n"
        "@rt.task\n"
        "async def f(ctx: aj.Context, n: int) -> int: return n\n"
        "print(sorted(sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    loaded = set(ast.literal_eval(out))
    assert not (loaded & HEAVY), sorted(loaded & HEAVY)


def test_no_pickle_anywhere_in_the_package() -> None:
    banned = {"pickle", "marshal", "shelve", "dill", "cloudpickle"}
    for path in [*ROOT.joinpath("asyncjobs").rglob("*.py"), *ROOT.joinpath("runner").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not (names & banned), f"{path}: imports {names & banned}"
