"""``asyncjobs serve [MODULE]``: the HTTP API over a store, with :func:`asyncjobs.http.serve`.

With MODULE, the module's runtime is served: its tasks are known (``POST /jobs`` checks
their arguments) and it runs executions in this process as a worker would (unless
``--workers 0 --process-workers 0``). Without one, a
runtime with no workers and no system jobs serves the store: queries, commands and event
streams, while workers elsewhere run the tasks.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from asyncjobs import Runtime

from . import CommandError, store_url
from .worker import load_runtime

if TYPE_CHECKING:
    import argparse


def command_serve(args: argparse.Namespace) -> int:
    """Run ``asyncjobs serve``; return the exit code."""
    if importlib.util.find_spec("starlette") is None or importlib.util.find_spec("uvicorn") is None:
        raise CommandError("the HTTP API needs the http extra: pip install 'asyncjobs[http]'")
    from asyncjobs.http import serve

    if args.module:
        rt = load_runtime(args.module)
        rt.configure(store=args.store, workers=args.workers, process_workers=args.process_workers)
    elif args.workers or args.process_workers:
        raise CommandError("--workers and --process-workers need the MODULE whose tasks run")
    else:
        url = store_url(args)
        if url.startswith("memory:"):
            raise CommandError(
                "serving memory:// without MODULE shows a store that nothing else can reach; "
                "give the MODULE whose tasks it runs, or a shared store like sqlite:///jobs.db"
            )
        rt = Runtime(url, workers=0, process_workers=0, system_jobs=False)
    serve(rt, host=args.host, port=args.port, token=args.token)
    return 0
