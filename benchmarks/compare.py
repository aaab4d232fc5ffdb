"""asyncjobs against its peers and ceilings, in one run: the ``peers`` and ``postgres`` suites.

Prints two tables: every contender's absolute figures (medians of its runs), then each target
of the benchmark issue as a ratio of two figures from this same run, with PASS or MISS.
"""

from __future__ import annotations

import multiprocessing
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from benchmarks import ceilings, peers, pool, process, rss, servers

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    """One line of the targets table."""

    figure: str
    value: float | None
    unit: str
    versus: str
    ratio: float | None
    goal: str
    ok: bool | None


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


class Figures:
    """Medians of one contender's raw runs (``None`` where it has none)."""

    def __init__(self, result: peers.Result, n: int) -> None:
        self.result = result
        self.n = n
        self.raw = result.figures

    def _runs(self, key: str) -> list[Any]:
        return list(self.raw.get(key, []))

    def enqueue_drain(self) -> float | None:
        runs = self._runs("enqueue_drain")
        return self.n / _median([e + d for e, d in runs]) if runs else None

    def drain(self) -> float | None:
        runs = self._runs("enqueue_drain")
        return self.n / _median([d for _, d in runs]) if runs else None

    def e2e(self) -> float | None:
        runs = self._runs("e2e")
        return self.n / _median(runs) if runs else None

    def latency(self, key: str = "latency", which: int = 0) -> float | None:
        runs = self._runs(key)
        return _median([run[which] for run in runs]) if runs else None

    def procs(self, k: int) -> float | None:
        runs = self._runs(f"procs_drain_{k}")
        return self.n / _median(runs) if runs else None


def _fmt(value: float | None, unit: str = "/s") -> str:
    if value is None:
        return "-"
    if unit in ("ms", "MB", "x"):
        return f"{value:,.2f}"
    return f"{value:,.0f}"


def contenders_table(rows: list[Figures], extra: list[tuple[str, str, list[str]]]) -> str:
    """The absolute figures: one line per contender (``extra``: ceilings, already formatted)."""
    head = [
        "contender", "version", "enq+drain/s", "drain/s", "e2e/s", "lat p50 ms", "lat p99 ms",
        "xproc p50", "xproc p99", "1 proc drain/s", "3 procs drain/s",
    ]  # fmt: skip
    lines: list[list[str]] = []
    notes: list[str] = []
    for f in rows:
        r = f.result
        line = [
            r.contender.name,
            r.version,
            _fmt(f.enqueue_drain()),
            _fmt(f.drain()),
            _fmt(f.e2e()),
            _fmt(f.latency(), "ms"),
            _fmt(f.latency(which=1), "ms"),
            _fmt(f.latency("latency_xproc"), "ms"),
            _fmt(f.latency("latency_xproc", 1), "ms"),
            _fmt(f.procs(1)),
            _fmt(f.procs(3)),
        ]
        if r.error is not None:
            notes.append(f"  {r.contender.name}: {r.error}")
            if not r.figures:
                line = [r.contender.name, r.version, "NOT RUN (see below)"]
        lines.append(line)
    for name, version, cells in extra:
        lines.append([name, version, *cells])
    return _table(head, lines) + ("\n" + "\n".join(notes) if notes else "")


def _table(head: list[str], lines: list[list[str]]) -> str:
    widths = [len(h) for h in head]
    for line in lines:
        for i, cell in enumerate(line[: len(head)]):
            widths[i] = max(widths[i], len(cell))
    out = []
    for line in [head, *lines]:
        cells = [
            cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def targets_table(targets: list[Target]) -> str:
    head = ["figure", "value", "versus", "ratio", "target", "verdict"]
    lines = []
    for t in targets:
        value = "-" if t.value is None else f"{_fmt(t.value, t.unit)} {t.unit}"
        ratio = "-" if t.ratio is None else f"{t.ratio:.2f}"
        verdict = "n/a" if t.ok is None else ("PASS" if t.ok else "MISS")
        lines.append([t.figure, value, t.versus, ratio, t.goal, verdict])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(head))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(widths[i]) for i, c in enumerate(line)).rstrip() for line in lines]
    return "\n".join(out)


def at_least(
    figure: str, ours: float | None, versus: str, theirs: float | None, factor: float
) -> Target:
    """A rate target: ``ours >= factor x theirs``."""
    ratio = None if ours is None or not theirs else ours / theirs
    goal = f">= {factor:g}x"
    return Target(
        figure, ours, "/s", versus, ratio, goal, None if ratio is None else ratio >= factor
    )


def faster_than(
    figure: str, ours: float | None, bound: float, peers_p50: dict[str, float | None]
) -> list[Target]:
    """A latency target: ``ours <= bound`` ms, and below every peer's figure."""
    out = [Target(figure, ours, "ms", "absolute", None, f"<= {bound:g} ms",
                  None if ours is None else ours <= bound)]  # fmt: skip
    known = {name: v for name, v in peers_p50.items() if v is not None}
    if known:
        name, best = min(known.items(), key=lambda item: item[1])
        ratio = None if ours is None else ours / best
        out.append(Target(figure, ours, "ms", f"fastest peer: {name}", ratio, "< 1 (lower)",
                          None if ratio is None else ratio < 1))  # fmt: skip
    return out


def run(args: argparse.Namespace, suites: set[str]) -> None:
    """Start the servers these suites need, run every contender, print both tables."""
    started = time.monotonic()
    n, c = args.n, args.concurrency
    options = {
        "n": n,
        "concurrency": c,
        "runs": 1,  # per round: see the rounds below
        "samples": args.samples,
        "xproc_samples": args.xproc_samples,
    }
    contenders: list[peers.Contender] = []
    if "peers" in suites:
        contenders += [a for a in peers.ASYNCJOBS if a.server != "postgres"]
        contenders += [p for p in peers.PEERS if p.server != "postgres"]
    if "postgres" in suites:
        contenders += [a for a in peers.ASYNCJOBS if a.server == "postgres"]
        contenders += [p for p in peers.PEERS if p.server == "postgres"]
    urls: dict[str, str | None] = {}
    versions: list[str] = []
    results: dict[str, Figures] = {}
    extra: list[tuple[str, str, list[str]]] = []
    targets: list[Target] = []
    with ExitStack() as stack:
        if any(x.server == "redis" for x in contenders):
            why = servers.ensure_redis(install=args.install)
            if why is None:
                redis = stack.enter_context(servers.RedisServer())
                urls["redis"] = redis.url(1)
                versions.append(f"Redis {servers.redis_version()}")
            else:
                print(f"Redis: {why}")
        pg: servers.PostgresServer | None = None
        if any(x.server == "postgres" for x in contenders):
            try:
                pg = stack.enter_context(servers.PostgresServer())
            except RuntimeError as exc:
                print(f"PostgreSQL: {exc}")
            else:
                versions.append(f"PostgreSQL {servers.postgres_version(pg)}")
                base = f"postgresql://postgres@127.0.0.1:{pg.port}/postgres?sslmode=disable"
                urls["postgres"] = base
        # Rounds: every contender runs once per round, each run in a process of its own, and
        # a figure is the median over the rounds. On a shared VM one vCPU can run at half
        # speed for minutes (steal) while the other does not, and a process mostly stays
        # where it started: all runs of one contender in one process could all land on the
        # slow one, and its ratio to a peer that did not would be off by 2x.
        raw: dict[str, peers.Result] = {}
        ceiling_runs: dict[str, list[Any]] = {"anyio": [], "aiosqlite": [], "asyncpg": []}
        for round_ in range(1, args.runs + 1):
            for contender in contenders:
                merged = raw.setdefault(contender.name, peers.Result(contender))
                if merged.error is not None and not merged.figures:
                    continue  # it never ran (not installed, no server): once is enough
                url_map = dict(urls)
                if contender.driver == "peer_procrastinate.py" and pg is not None:
                    name = f"procrastinate_{round_}"
                    url_map["postgres"] = servers.create_database(pg, name)
                print(f"  round {round_}/{args.runs}: {contender.name} ...", flush=True)
                merged.add(peers.run(contender, url_map, **options))
            if "peers" in suites:
                ceiling_runs["anyio"].append(_in_new_process(_bare_anyio_once, n, c))
                ceiling_runs["aiosqlite"].append(_in_new_process(_aiosqlite_once, n, c))
            if "postgres" in suites and pg is not None:
                dsn = urls["postgres"] or ""
                ceiling_runs["asyncpg"].append(_in_new_process(_asyncpg_once, dsn, n, c))
        results = {name: Figures(result, n) for name, result in raw.items()}
        if "peers" in suites:
            extra.append(_bare_anyio(n, ceiling_runs["anyio"]))
            extra.append(_aiosqlite(n, ceiling_runs["aiosqlite"]))
        if "postgres" in suites and pg is not None:
            extra.append(_asyncpg(n, ceiling_runs["asyncpg"]))
        if "peers" in suites:
            print("  measuring worker RSS with a deep queue ...", flush=True)
            memory = rss.run(args.rss_n, c, args.rss_window)
    targets = _targets(results, extra, suites)
    if "peers" in suites:
        targets.append(Target(
            f"worker RSS, {args.rss_n:,} queued (SQLite), above idle", memory["above_idle_mb"],
            "MB", f"idle worker {memory['idle_mb']:.1f} MB", None, "< 50 MB",
            memory["above_idle_mb"] < 50))  # fmt: skip
    if "process" in suites:
        print("  process mode ...", flush=True)
        rows = process.run(max(10, n // 100))
        for name, value, unit in rows:
            print(f"  {name:<52} {value:>10.2f} {unit}")
        ratio = rows[2][1]
        targets.append(Target("process mode: execution / bare spawn", ratio, "x",
                               'python -c "import orjson"', ratio, "<= 1.5", ratio <= 1.5))  # fmt: skip
    print(
        f"\nn={n}, concurrency={c}, median of {args.runs} runs; latency: {args.samples} samples "
        f"per run in-process, {args.xproc_samples} from another process; " + ", ".join(versions)
    )
    print(contenders_table(list(results.values()), extra))
    if "peers" in suites:
        print(
            f"worker RSS: idle {memory['idle_mb']:.1f} MB, with {args.rss_n:,} queued "
            f"{memory['loaded_mb']:.1f} MB (peak over {args.rss_window:g} s, "
            f"{memory['ran_in_window']:.0f} run meanwhile); enqueued at "
            f"{memory['fill_per_s']:,.0f}/s as jobs of {rss.STEPS_PER_JOB} steps"
        )
    print()
    print(targets_table(targets))
    print(f"\n(total {time.monotonic() - started:.0f} s)")


def _in_new_process(fn: Callable[..., T], *args: object) -> T:
    """Run ``fn(*args)`` in a new process (a new draw of vCPU, as each contender's run)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as executor:
        return executor.submit(fn, *args).result()


def _bare_anyio_once(n: int, c: int) -> float:
    return anyio.run(pool.bare_anyio, n, c)


def _bare_anyio(n: int, times: list[float]) -> tuple[str, str, list[str]]:
    rate = n / _median(times)
    return ("bare anyio task group (ceiling)", anyio_version(), ["-", _fmt(rate), _fmt(rate)])


def anyio_version() -> str:
    from importlib.metadata import version

    return version("anyio")


def _aiosqlite_once(n: int, c: int) -> tuple[float, float]:
    folder = Path(tempfile.mkdtemp(prefix="asyncjobs-ceiling-"))
    try:
        return anyio.run(ceilings.aiosqlite_loop, folder / "ceiling.db", n, c)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _aiosqlite(n: int, times: list[tuple[float, float]]) -> tuple[str, str, list[str]]:
    both = n / _median([e + d for e, d in times])
    drain = n / _median([d for _, d in times])
    import aiosqlite

    return ("aiosqlite job loop (ceiling)", aiosqlite.__version__, [_fmt(both), _fmt(drain)])


def _asyncpg_once(dsn: str, n: int, c: int) -> float:
    return anyio.run(ceilings.asyncpg_claim_loop, dsn, n, c, 3)


def _asyncpg(n: int, times: list[float]) -> tuple[str, str, list[str]]:
    import asyncpg

    rate = _fmt(n / _median(times))
    return ("asyncpg SKIP LOCKED loop, 3 conns (ceiling)", asyncpg.__version__,
            ["-", "-", "-", "-", "-", "-", "-", "-", rate])  # fmt: skip


def _number(text: str) -> float | None:
    return None if text in ("-", "") else float(text.replace(",", ""))


def _targets(
    results: dict[str, Figures], extra: list[tuple[str, str, list[str]]], suites: set[str]
) -> list[Target]:
    out: list[Target] = []
    get = results.get
    ceiling = {name: cells for name, _, cells in extra}
    if "peers" in suites:
        memory, sqlite = get("asyncjobs memory"), get("asyncjobs SQLite")
        taskiq, huey = get("taskiq (in-memory broker)"), get("huey (SQLite)")
        arq, saq, taskiq_redis = get("arq (Redis)"), get("saq (Redis)"), get("taskiq (Redis)")
        if memory and taskiq:
            out.append(
                at_least(
                    "memory enqueue+drain",
                    memory.enqueue_drain(),
                    "taskiq in-memory",
                    taskiq.enqueue_drain(),
                    0.5,
                )
            )
            out.append(at_least("memory e2e", memory.e2e(), "taskiq in-memory", taskiq.e2e(), 0.5))
        if sqlite:
            ours = sqlite.enqueue_drain()
            if huey:
                out.append(
                    at_least("SQLite enqueue+drain", ours, "huey SQLite", huey.enqueue_drain(), 3)
                )
            for label, peer in (("arq", arq), ("saq", saq), ("taskiq on Redis", taskiq_redis)):
                if peer:
                    out.append(
                        at_least("SQLite enqueue+drain", ours, label, peer.enqueue_drain(), 1)
                    )
            cells = ceiling.get("aiosqlite job loop (ceiling)")
            if cells:
                out.append(
                    at_least(
                        "SQLite enqueue+drain", ours, "aiosqlite job loop", _number(cells[0]), 0.5
                    )
                )
                if huey:
                    # Context, not a target: what 3x huey asks of any loop that commits each
                    # enqueue before returning, measured by the ceiling itself.
                    context = at_least(
                        "aiosqlite job loop (ceiling) enqueue+drain",
                        _number(cells[0]),
                        "huey SQLite",
                        huey.enqueue_drain(),
                        3,
                    )
                    out.append(replace(context, goal="(context)", ok=None))
            if huey:
                out.append(
                    at_least(
                        "SQLite e2e (enqueue while draining)",
                        sqlite.e2e(),
                        "huey SQLite",
                        huey.e2e(),
                        3,
                    )
                )
            # The persistent peers: a broker that keeps nothing is no latency peer of a store.
            stored = {
                k: f
                for k, f in results.items()
                if not k.startswith("asyncjobs") and f.result.contender.persistent
            }
            local = {name: f.latency() for name, f in stored.items()}
            remote = {name: f.latency("latency_xproc") for name, f in stored.items()}
            out += faster_than("SQLite latency p50, in-process", sqlite.latency(), 1, local)
            out += faster_than(
                "SQLite latency p50, other process", sqlite.latency("latency_xproc"), 5, remote
            )
    if "postgres" in suites:
        ours_pg, procr = get("asyncjobs PostgreSQL"), get("procrastinate (PostgreSQL)")
        if ours_pg:
            if procr:
                one = at_least(
                    "PostgreSQL drain, 1 worker process",
                    ours_pg.procs(1),
                    "procrastinate, 1 process",
                    procr.procs(1),
                    1,
                )
                out.append(replace(one, goal="(context)", ok=None))
                out.append(
                    at_least(
                        "PostgreSQL drain, 3 worker processes",
                        ours_pg.procs(3),
                        "procrastinate, 3 processes",
                        procr.procs(3),
                        3,
                    )
                )
            cells = ceiling.get("asyncpg SKIP LOCKED loop, 3 conns (ceiling)")
            if cells:
                out.append(
                    at_least(
                        "PostgreSQL drain, 3 worker processes",
                        ours_pg.procs(3),
                        "asyncpg SKIP LOCKED loop",
                        _number(cells[-1]),
                        0.5,
                    )
                )
    return out  # fmt: skip
