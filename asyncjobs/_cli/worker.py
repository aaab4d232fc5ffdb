"""``asyncjobs worker MODULE``: a node that runs the tasks a module registers.

The module is imported, its :class:`asyncjobs.Runtime` found at module level, and run on
uvloop where available until SIGTERM or SIGINT. The first signal drains: no new claims, and
running executions get the runtime's ``shutdown_timeout`` to finish before they are put back
in the queue (exit 0). A second signal aborts the drain at once (exit 128 + the signal).
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asyncjobs import ExecutionStatus, Runtime

from . import CommandError, check_sqlite_path

if TYPE_CHECKING:
    import argparse
    from types import ModuleType

    from asyncjobs import Execution

logger = logging.getLogger("asyncjobs.worker")


def load_runtime(spec: str) -> Runtime:
    """Import ``spec`` and return the runtime it defines.

    ``spec`` is ``pkg.module`` or ``path/to/file.py``, optionally followed by ``:attribute``
    to pick one runtime among several. The current directory is importable, as for
    ``python -m``; a file's directory is importable too, here and in process children.

    :raises CommandError: saying what is wrong, if the module cannot be imported or does
        not define exactly one runtime (or the attribute is not one)
    """
    where, _, attribute = spec.partition(":")
    if not where:
        raise CommandError(f"expected MODULE or MODULE:attribute, got {spec!r}")
    module = _import(where)
    if attribute:
        try:
            value = getattr(module, attribute)
        except AttributeError:
            raise CommandError(f"module {where!r} has no attribute {attribute!r}") from None
        if not isinstance(value, Runtime):
            raise CommandError(f"{spec!r} is a {type(value).__name__}, not an asyncjobs.Runtime")
        return value
    found: dict[int, tuple[str, Runtime]] = {}
    for name, value in vars(module).items():
        if isinstance(value, Runtime):
            found.setdefault(id(value), (name, value))
    if not found:
        raise CommandError(
            f"module {where!r} defines no asyncjobs.Runtime at module level; "
            "add 'rt = asyncjobs.Runtime()' and register the tasks on it"
        )
    if len(found) > 1:
        names = sorted(name for name, _ in found.values())
        raise CommandError(
            f"module {where!r} defines {len(names)} runtimes ({', '.join(names)}); "
            f"pick one with {where}:{names[0]}"
        )
    return next(iter(found.values()))[1]


def _import(where: str) -> ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    if where.endswith(".py") or "/" in where or os.sep in where:
        path = Path(where)
        if not path.is_file():
            raise CommandError(f"no such file: {where!r}")
        if path.suffix != ".py":
            raise CommandError(f"expected a .py file or a module name, got {where!r}")
        directory = str(path.resolve().parent)
        sys.path.insert(0, directory)
        # Process children import the tasks by 'module:function' too: they need the
        # directory on their path, and they inherit this environment.
        paths = os.environ.get("PYTHONPATH", "")
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (directory, paths) if p)
        name = path.stem
    else:
        name = where
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise CommandError(f"cannot import module {where!r}: {exc}") from None
        raise CommandError(f"importing {where!r} failed: {_where(exc)}") from None
    except Exception as exc:
        raise CommandError(f"importing {where!r} failed: {_where(exc)}") from None


def _where(exc: BaseException) -> str:
    """The error and the line of the user's code that raised it, on one line."""
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if "importlib" not in f.filename]
    at = f" (at {user[-1].filename}:{user[-1].lineno})" if user else ""
    if isinstance(exc, SyntaxError):
        at = f" (at {exc.filename}:{exc.lineno})"
    return f"{type(exc).__name__}: {exc}{at}"


def command_worker(args: argparse.Namespace) -> int:
    """Run ``asyncjobs worker``; return the exit code."""
    rt = load_runtime(args.module)
    rt.configure(store=args.store, workers=args.workers, process_workers=args.process_workers)
    if isinstance(rt._store_spec, str):
        check_sqlite_path(rt._store_spec, must_exist=False)
    _configure_logging()
    import anyio

    options: dict[str, Any] = {}
    try:
        import uvloop  # noqa: F401

        options["use_uvloop"] = True
    except ImportError:
        pass
    return anyio.run(_serve, rt, "uvloop" if options else "asyncio", backend_options=options)


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    root = logging.getLogger("asyncjobs")
    root.addHandler(handler)
    root.setLevel(logging.INFO)


async def _serve(rt: Runtime, loop_name: str) -> int:
    import anyio

    stopping = False
    aborted: int | None = None
    started: dict[str, float] = {}
    previous = rt._hooks.get("on_state_change")

    async def on_state_change(execution: Execution, status: ExecutionStatus) -> None:
        # One line per start and per end of an execution that this node runs.
        if status == ExecutionStatus.RUNNING:
            started[execution.id] = time.monotonic()
            logger.info(
                "start     %s %s attempt %d (job %s)",
                execution.id,
                execution.task,
                execution.attempt,
                execution.job_id,
            )
        else:
            took = time.monotonic() - started.pop(execution.id, time.monotonic())
            detail = ""
            if status == ExecutionStatus.RETRYING and stopping:
                detail = ": the worker stopped; put back in the queue"
            elif status != ExecutionStatus.COMPLETED:
                current = await rt.executions.get(execution.id)
                if current.error is not None:
                    detail = f": {current.error.type}: {current.error.message}".splitlines()[0]
            logger.info(
                "%-9s %s %s in %.3fs%s", status.value, execution.id, execution.task, took, detail
            )
        if previous is not None:
            result = previous(execution, status)
            if hasattr(result, "__await__"):
                await result

    rt._hooks["on_state_change"] = on_state_change
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        # The receiver is open before the runtime starts: a signal during start-up is
        # not lost, and never kills the node half-started.
        await rt.start()
        stats = rt.statistics()
        tasks = sorted(n for n in rt._registry.names() if not n.startswith("asyncjobs."))
        logger.info(
            "asyncjobs worker ready: node %s, %d workers, %d process workers, %s loop, "
            "store %s, tasks: %s",
            stats.node,
            stats.workers,
            rt._process_workers,
            loop_name,
            rt.store.url,
            ", ".join(tasks) or "(none)",
        )
        async with anyio.create_task_group() as tg:

            async def stop() -> None:
                await rt.stop()
                tg.cancel_scope.cancel()

            async for signum in signals:
                name = signal.Signals(signum).name
                if not stopping:
                    stopping = True
                    logger.info(
                        "%s: draining; running executions get %gs to finish "
                        "(send it again to abort)",
                        name,
                        rt._shutdown_timeout,
                    )
                    tg.start_soon(stop)
                else:
                    aborted = signum
                    logger.warning(
                        "%s again: aborting; running executions go back in the queue", name
                    )
                    tg.start_soon(rt.stop)
    logger.info("asyncjobs worker stopped%s", " (aborted)" if aborted else "")
    return 0 if aborted is None else 128 + aborted
