"""The ``asyncjobs`` command."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``asyncjobs`` command line; return the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["run"]:
        # The child entry point, before anything else is imported: its start-up is a feature.
        from asyncjobs_runner._child import main as run_child

        return run_child(args_list[1:])
    from asyncjobs import __version__

    parser = argparse.ArgumentParser(
        prog="asyncjobs",
        description="asyncjobs: an asyncio-native job runtime.",
    )
    parser.add_argument("--version", action="version", version=f"asyncjobs {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run a few jobs with live progress on the embedded SQLite store",
        description="Run a few jobs with live progress, a retry and a failure, then a summary."
        "\n\nexample: asyncjobs demo --store sqlite:///demo.db",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--store",
        default=None,
        help="store URL (default: $ASYNCJOBS_STORE, else sqlite:///asyncjobs.db)",
    )
    commands.add_parser(
        "run",
        help="the child side of a process execution (started by a runtime, not by hand)",
    )
    args = parser.parse_args(args_list)
    if args.command == "demo":
        from .demo import run_demo

        try:
            return run_demo(args.store)
        except KeyboardInterrupt:
            return 130
        except Exception as exc:
            from asyncjobs import AsyncJobsError

            if isinstance(exc, AsyncJobsError | ValueError):
                print(f"asyncjobs: error: {exc}", file=sys.stderr)
                return 2
            raise
    parser.print_help()
    return 2
