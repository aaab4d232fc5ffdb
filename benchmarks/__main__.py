"""Run the benchmarks and print absolute figures with ratios to the same-run ceiling.

Usage: ``python -m benchmarks [--n 5000] [--concurrency 50] [--runs 3] [--uvloop]``
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

import anyio

from benchmarks import pool, process


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--n", type=int, default=5000, help="executions per run")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument(
        "--suite", choices=("all", "pool", "process"), default="all", help="what to run"
    )
    args = parser.parse_args()
    if args.suite in ("all", "pool"):
        run_pool(args)
    if args.suite in ("all", "process"):
        run_process(max(10, args.n // 100))


def run_process(n: int) -> None:
    print(f"\nprocess mode: median of {n} sequential runs; throughput over {2 * n}")
    for name, value, unit in process.run(n):
        print(f"{name:<52} {value:>10.2f} {unit}")


def run_pool(args: argparse.Namespace) -> None:
    backend_options = {"use_uvloop": args.uvloop}
    print(
        f"no-op coroutine executions: n={args.n}, concurrency={args.concurrency}, "
        f"median of {args.runs}; Python {platform.python_version()} on {os.cpu_count()} CPUs, "
        f"{'uvloop' if args.uvloop else 'asyncio'}"
    )
    rows = anyio.run(
        pool.run,
        args.n,
        args.concurrency,
        args.runs,
        backend="asyncio",
        backend_options=backend_options,
    )
    ceiling = rows[0][1]
    width = max(len(name) for name, _ in rows)
    print(f"{'':<{width}}  {'per second':>12}  {'vs ceiling':>10}")
    for name, rate in rows:
        print(f"{name:<{width}}  {rate:>12,.0f}  {rate / ceiling:>10.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
