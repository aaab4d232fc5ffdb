"""Run the benchmarks and print absolute figures with ratios to same-run peers and ceilings.

Usage: ``python -m benchmarks [--suite all|pool|process|peers|postgres] [--n 2000]
[--concurrency 50] [--runs 3] [--install]`` (``just bench`` passes its arguments on).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

import anyio

from benchmarks import compare, pool, process


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--n", type=int, default=2000, help="executions per run")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--uvloop", action="store_true", help="run the pool suite on uvloop")
    parser.add_argument(
        "--suite",
        choices=("all", "pool", "process", "peers", "postgres"),
        default="all",
        help="what to run: pool (asyncjobs vs bare anyio), process (process mode), peers "
        "(memory and SQLite against huey, arq, saq, taskiq and the aiosqlite ceiling), "
        "postgres (PostgreSQL workers against procrastinate and the asyncpg ceiling)",
    )
    parser.add_argument("--samples", type=int, default=100, help="latency samples per run")
    parser.add_argument(
        "--xproc-samples", type=int, default=30, help="latency samples per run, other process"
    )
    parser.add_argument("--rss-n", type=int, default=100_000, help="queued for the RSS figure")
    parser.add_argument("--rss-window", type=float, default=5.0, help="seconds the RSS worker runs")
    parser.add_argument(
        "--install",
        action="store_true",
        help="apt-get install redis-server if it is missing (needs root)",
    )
    args = parser.parse_args()
    if args.suite in ("all", "pool"):
        run_pool(args)
    if args.suite == "process":
        run_process(max(10, args.n // 100))
    if args.suite in ("all", "peers", "postgres"):
        suites = {"peers", "postgres", "process"} if args.suite == "all" else {args.suite}
        compare.run(args, suites)


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
        # An enqueue runs nothing: the task group's executions are no ceiling for it.
        versus = "-" if "enqueue" in name else f"{rate / ceiling:.3f}"
        print(f"{name:<{width}}  {rate:>12,.0f}  {versus:>10}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
