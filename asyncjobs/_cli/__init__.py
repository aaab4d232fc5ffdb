"""The ``asyncjobs`` command.

``asyncjobs run`` (the child side of a process execution) is dispatched before anything else
is imported: a child's start-up time is a product feature. Every other command is parsed
here and run by its module: :mod:`.worker`, :mod:`.query`, :mod:`.demo`, :mod:`.serve`.

Exit codes: 0 success; 1 the thing waited for failed or was cancelled; 2 a user mistake
(bad option, unknown id, bad JSON, unknown store, module that cannot be imported), reported
as one line ``asyncjobs: error: ...`` on stderr, never as a traceback; 130/143 a worker
aborted by a second SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

STORE_ENV = "ASYNCJOBS_STORE"


class CommandError(Exception):
    """A user mistake: printed as ``asyncjobs: error: <message>``, exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``asyncjobs`` command line; return the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["run"]:
        # The child entry point, before anything else is imported: its start-up is a feature.
        from asyncjobs_runner._child import main as run_child

        return run_child(args_list[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
        handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
        if handler is None:
            parser.print_help(sys.stderr)
            return 2
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `asyncjobs executions list | head`: the reader left; that is not an error.
        sys.stderr.close()
        return 0
    except Exception as exc:
        message = user_error(exc)
        if message is None:
            raise
        print(f"asyncjobs: error: {message}", file=sys.stderr)
        return 2


def user_error(exc: BaseException) -> str | None:
    """The one-line message for an error that is the user's to fix, else ``None``."""
    from asyncjobs import AsyncJobsError

    if isinstance(exc, CommandError | AsyncJobsError | ValueError):
        return " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError):
        # The environment, not a bug: a file that cannot be written, a refused connection.
        return f"{type(exc).__name__}: {exc}"
    return None


def check_sqlite_path(url: str, *, must_exist: bool) -> None:
    """Refuse a SQLite store URL whose file (``must_exist``) or directory is missing.

    :raises CommandError: naming the path and what to do
    """
    from pathlib import Path

    if not url.startswith("sqlite:///"):
        return
    # Options (?synchronous=normal) are the store's to check, when it opens: not the file's.
    path = Path(url.removeprefix("sqlite:///").partition("?")[0])
    if must_exist and not path.exists():
        raise CommandError(
            f"no store at {str(path)!r}: give --store (or set ${STORE_ENV}) to the URL a "
            "worker serves, like sqlite:///jobs.db"
        )
    if not path.parent.is_dir():
        raise CommandError(
            f"cannot create the store {str(path)!r}: no directory {str(path.parent)!r}"
        )


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other error of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"asyncjobs: error: {message} (see '{self.prog} --help')\n")


def _help(summary: str, *examples: str) -> dict[str, Any]:
    lines = "\n".join(f"  {e}" for e in examples)
    return {
        "help": summary,
        "description": f"{summary[0].upper()}{summary[1:]}.",
        "epilog": f"example{'s' if len(examples) > 1 else ''}:\n{lines}",
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }


def _store_option(parser: argparse.ArgumentParser, *, worker: bool = False) -> None:
    if worker:
        parser.add_argument(
            "--store",
            metavar="URL",
            help="store URL, overriding the runtime's own (a Runtime() built without one "
            f"reads ${STORE_ENV}, else sqlite:///asyncjobs.db)",
        )
    else:
        parser.add_argument(
            "--store",
            metavar="URL",
            default=None,
            help=f"store URL: sqlite:///path.db, postgresql://... (default: ${STORE_ENV}, "
            "else sqlite:///asyncjobs.db)",
        )


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print JSON for scripts instead of a table"
    )


def _query_options(parser: argparse.ArgumentParser) -> None:
    _store_option(parser)
    _json_option(parser)


def _page_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--page", type=_page, default=1, help="page number (default: 1)")
    parser.add_argument(
        "--page-size", type=_page_size, default=20, help="rows per page (default: 20)"
    )


def _integer(text: str, low: int, high: int) -> int:
    """Return ``text`` as an int from ``low`` to ``high``, the bounds the Python API and the
    HTTP API apply to the same option."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is not None and low <= value <= high:
        return value
    expected = f"an integer from {low} to {high}"
    if low == 1 and (value is None or value < 1):
        expected = "a positive integer"
    raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")


def _page(text: str) -> int:
    from asyncjobs._types import MAX_PAGE

    return _integer(text, 1, MAX_PAGE)


def _page_size(text: str) -> int:
    from asyncjobs.stores.base import MAX_PAGE_SIZE

    return _integer(text, 1, MAX_PAGE_SIZE)


def _int32(text: str) -> int:
    from asyncjobs._types import INT32_MAX, INT32_MIN

    return _integer(text, INT32_MIN, INT32_MAX)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _seconds(text: str) -> float:
    from asyncjobs._types import as_seconds

    try:
        seconds = as_seconds(float(text), name="seconds")
    except ValueError:
        seconds = None
    if seconds is None:  # not a number, negative, not finite, or past 100 years
        raise argparse.ArgumentTypeError(f"expected seconds >= 0 (at most 100 years), got {text!r}")
    return seconds


def _task_name(text: str) -> str:
    from asyncjobs._tasks import check_name

    try:
        return check_name("task", text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def store_url(args: argparse.Namespace) -> str:
    """The store a command uses: ``--store``, else ``$ASYNCJOBS_STORE``, else the default."""
    from asyncjobs.stores import DEFAULT_URL

    return str(args.store or os.environ.get(STORE_ENV) or DEFAULT_URL)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the whole command tree."""
    from asyncjobs import __version__

    parser = _Parser(
        prog="asyncjobs",
        description="asyncjobs: an asyncio-native job runtime with progress, logs and "
        "subprocess isolation.",
        epilog="start here:\n  asyncjobs demo\n\n"
        "run a node for the tasks of a module, then query it from another shell:\n"
        "  asyncjobs worker myapp.tasks --store sqlite:///jobs.db\n"
        "  asyncjobs enqueue send_email --args '[\"a@example.org\"]' --store sqlite:///jobs.db\n"
        "  asyncjobs executions list --store sqlite:///jobs.db",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"asyncjobs {__version__}")
    commands = parser.add_subparsers(metavar="COMMAND", parser_class=_Parser)

    # -- worker --------------------------------------------------------------------------
    worker = commands.add_parser(
        "worker",
        **_help(
            "run a node that executes the tasks registered in MODULE",
            "asyncjobs worker myapp.tasks --workers 16 --store sqlite:///jobs.db",
            "asyncjobs worker path/to/tasks.py:rt",
        ),
    )
    worker.add_argument(
        "module",
        metavar="MODULE",
        help="pkg.module or path/to/file.py defining one asyncjobs.Runtime at module level; "
        "MODULE:attribute picks one of several",
    )
    _store_option(worker, worker=True)
    worker.add_argument(
        "--workers",
        type=_count,
        metavar="N",
        help="coroutine executions at once (default: the runtime's)",
    )
    worker.add_argument(
        "--process-workers",
        type=_count,
        metavar="N",
        help="process executions at once (default: the runtime's)",
    )
    worker.set_defaults(handler=_run("worker", "command_worker"))

    # -- jobs ----------------------------------------------------------------------------
    jobs = commands.add_parser(
        "jobs", **_help("list jobs, show one, or change its status", "asyncjobs jobs list")
    )
    jobs_commands = jobs.add_subparsers(metavar="ACTION", parser_class=_Parser)
    jobs.set_defaults(handler=_usage(jobs))
    jobs_list = jobs_commands.add_parser(
        "list",
        **_help(
            "list jobs, newest first",
            "asyncjobs jobs list --status active --category reports",
        ),
    )
    jobs_list.add_argument("--status", help="active, paused, finished, stopped or deleted")
    jobs_list.add_argument("--category", help="a category; includes its sub-categories")
    jobs_list.add_argument("--name", help="jobs with exactly this name")
    _page_options(jobs_list)
    _query_options(jobs_list)
    jobs_list.set_defaults(handler=_run("query", "jobs_list"))
    jobs_get = jobs_commands.add_parser(
        "get", **_help("show a job and its latest executions", "asyncjobs jobs get JOB_ID")
    )
    jobs_get.add_argument("job_id", metavar="JOB")
    _query_options(jobs_get)
    jobs_get.set_defaults(handler=_run("query", "jobs_get"))
    for action, summary in (
        ("stop", "stop a job for good and cancel its live executions"),
        ("pause", "pause a job: no new firing until it resumes"),
        ("resume", "resume a paused job"),
        ("destroy", "stop a job and mark it deleted (its history stays readable)"),
    ):
        command = jobs_commands.add_parser(
            action, **_help(summary, f"asyncjobs jobs {action} JOB_ID")
        )
        command.add_argument("job_id", metavar="JOB")
        _query_options(command)
        command.set_defaults(handler=_run("query", "jobs_set"), action=action)

    # -- executions ----------------------------------------------------------------------
    executions = commands.add_parser(
        "executions",
        **_help("list executions, show one, or cancel it", "asyncjobs executions list"),
    )
    executions_commands = executions.add_subparsers(metavar="ACTION", parser_class=_Parser)
    executions.set_defaults(handler=_usage(executions))
    executions_list = executions_commands.add_parser(
        "list",
        **_help(
            "list executions, newest first",
            "asyncjobs executions list --status failed",
            "asyncjobs executions list --job JOB_ID --json",
        ),
    )
    executions_list.add_argument(
        "--status",
        help="scheduled, queued, running, completed, failed, retrying or cancelled",
    )
    executions_list.add_argument("--job", metavar="JOB", help="the executions of one job")
    executions_list.add_argument("--task", help="the executions of one task (by name)")
    _page_options(executions_list)
    _query_options(executions_list)
    executions_list.set_defaults(handler=_run("query", "executions_list"))
    executions_get = executions_commands.add_parser(
        "get",
        **_help(
            "show an execution: status, progress, result or error, history",
            "asyncjobs executions get EXECUTION_ID",
        ),
    )
    executions_get.add_argument("execution_id", metavar="EXECUTION")
    _query_options(executions_get)
    executions_get.set_defaults(handler=_run("query", "executions_get"))
    executions_cancel = executions_commands.add_parser(
        "cancel",
        **_help(
            "cancel a waiting or running execution", "asyncjobs executions cancel EXECUTION_ID"
        ),
    )
    executions_cancel.add_argument("execution_id", metavar="EXECUTION")
    _query_options(executions_cancel)
    executions_cancel.set_defaults(handler=_run("query", "executions_cancel"))

    # -- logs ----------------------------------------------------------------------------
    logs = commands.add_parser(
        "logs",
        **_help(
            "print an execution's log lines",
            "asyncjobs logs EXECUTION_ID --level warn",
            "asyncjobs logs EXECUTION_ID --follow",
        ),
    )
    logs.add_argument("execution_id", metavar="EXECUTION")
    logs.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="keep printing new lines until the execution ends (JSON: one object a line)",
    )
    logs.add_argument(
        "--level", help="minimum level: trace, debug, info, warn, error, fatal, panic"
    )
    _query_options(logs)
    logs.set_defaults(handler=_run("query", "logs"))

    # -- enqueue -------------------------------------------------------------------------
    enqueue = commands.add_parser(
        "enqueue",
        **_help(
            "create a one-off job for a worker to run (this command runs nothing)",
            "asyncjobs enqueue send_email --args '[\"a@example.org\"]' --kwargs '{\"retry\": true}'",
            "asyncjobs enqueue myapp.tasks:resize --args '[800]' --module myapp.tasks --after 60",
        ),
    )
    enqueue.epilog = (enqueue.epilog or "") + (
        "\n\nWithout --module the task is known only by name: the worker that knows it "
        "binds the\narguments when it runs it (a mismatch fails the execution with "
        "InvalidArguments)\nand applies the task's own mode, retries and timeout. With "
        "--module MODULE (what the\nworker runs) the arguments are checked now, and the "
        "task's priority applies too."
    )
    enqueue.add_argument(
        "task", metavar="TASK", type=_task_name, help="the registered name of the task"
    )
    enqueue.add_argument(
        "--args", default="[]", metavar="JSON", help="positional arguments, a JSON array"
    )
    enqueue.add_argument(
        "--kwargs", default="{}", metavar="JSON", help="keyword arguments, a JSON object"
    )
    enqueue.add_argument(
        "--module",
        metavar="MODULE",
        help="import the worker's MODULE to check the arguments and use the task's options",
    )
    enqueue.add_argument(
        "--priority", type=_int32, metavar="N", help="lower runs first (default: the task's)"
    )
    enqueue.add_argument(
        "--after", type=_seconds, metavar="SECONDS", help="run after this many seconds"
    )
    enqueue.add_argument("--key", help="idempotency key: a live job with it is returned instead")
    enqueue.add_argument("--name", help="the job's name (default: the task's)")
    enqueue.add_argument("--category", help="the job's category (default: the task's)")
    _query_options(enqueue)
    enqueue.set_defaults(handler=_run("query", "enqueue"))

    # -- wait ----------------------------------------------------------------------------
    wait = commands.add_parser(
        "wait",
        **_help(
            "wait for an execution (or a job's latest run) to end, with a live progress bar",
            "asyncjobs wait EXECUTION_ID && echo done",
            "asyncjobs wait JOB_ID --json",
        ),
    )
    wait.epilog = (wait.epilog or "") + "\n\nExit code: 0 completed, 1 failed or cancelled."
    wait.add_argument("target", metavar="EXECUTION_OR_JOB")
    _query_options(wait)
    wait.set_defaults(handler=_run("query", "wait"))

    # -- demo, serve ---------------------------------------------------------------------
    demo = commands.add_parser(
        "demo",
        **_help(
            "run a tour of jobs with live progress on the embedded SQLite store",
            "asyncjobs demo",
            "asyncjobs demo --store sqlite:///demo.db",
        ),
    )
    _store_option(demo)
    demo.set_defaults(handler=_run("demo", "command_demo"))
    serve = commands.add_parser(
        "serve",
        **_help(
            "serve the HTTP API (queries, commands, live event streams) over a store",
            "asyncjobs serve --store sqlite:///jobs.db --port 8000",
            "ASYNCJOBS_TOKEN=... asyncjobs serve myapp.tasks --host 0.0.0.0",
        ),
    )
    serve.add_argument(
        "module",
        metavar="MODULE",
        nargs="?",
        help="also run the tasks of this module's runtime here (as 'worker MODULE' would)",
    )
    serve.add_argument(
        "--workers",
        type=_count,
        metavar="N",
        help="with MODULE: coroutine executions at once (0: none)",
    )
    serve.add_argument(
        "--process-workers",
        type=_count,
        metavar="N",
        help="with MODULE: process executions at once",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    serve.add_argument("--port", type=_count, default=8000, help="port (default: 8000)")
    serve.add_argument(
        "--token",
        default=None,
        help="bearer token the API requires; needed off loopback (default: $ASYNCJOBS_TOKEN, "
        "which is better: other users see a command line)",
    )
    _store_option(serve)
    serve.set_defaults(handler=_run("serve", "command_serve"))

    commands.add_parser(
        "run",
        help="the child side of a process execution (started by a runtime, not by hand)",
    )

    return parser


def _run(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        import importlib

        run: Callable[[argparse.Namespace], int] = getattr(
            importlib.import_module(f".{module}", __name__), function
        )
        return run(args)

    return handler


def _usage(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return handler
