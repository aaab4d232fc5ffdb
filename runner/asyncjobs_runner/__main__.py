"""``python -m asyncjobs_runner run TARGET`` is ``asyncjobs run TARGET``."""

from __future__ import annotations

import sys


def _main() -> int:
    argv = sys.argv[1:]
    if not argv or argv[0] != "run":
        sys.stderr.write("usage: python -m asyncjobs_runner run TARGET\n")
        return 2
    from ._child import main

    return main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(_main())
