from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import anyio
import pytest
from croniter import croniter

import asyncjobs as aj
from asyncjobs import ExecutionStatus as S
from asyncjobs._engine.scheduler import due_ticks
from asyncjobs.stores import NodeInfo

if TYPE_CHECKING:
    from pathlib import Path

BERLIN = ZoneInfo("Europe/Berlin")


def fires(schedule: aj.Cron, start: datetime, end: datetime) -> list[datetime]:
    out: list[datetime] = []
    t = start.timestamp()
    while True:
        t = schedule.next_fire(t)
        if t > end.timestamp():
            return out
        out.append(datetime.fromtimestamp(t, ZoneInfo(schedule.tz)))


# -- pure schedule rules ------------------------------------------------------------------


def test_daily_cron_fires_once_on_the_autumn_change_and_at_three_in_spring() -> None:
    cron = aj.Cron("30 2 * * *", tz="Europe/Berlin")
    autumn = fires(
        cron, datetime(2024, 10, 26, 12, tzinfo=BERLIN), datetime(2024, 10, 28, 12, tzinfo=BERLIN)
    )
    assert [f.isoformat() for f in autumn] == [
        "2024-10-27T02:30:00+02:00",
        "2024-10-28T02:30:00+01:00",
    ]
    spring = fires(
        cron, datetime(2024, 3, 30, 12, tzinfo=BERLIN), datetime(2024, 4, 1, 12, tzinfo=BERLIN)
    )
    assert [f.isoformat() for f in spring] == [
        "2024-03-31T03:00:00+02:00",
        "2024-04-01T02:30:00+02:00",
    ]


def test_hourly_cron_runs_once_per_real_hour_across_the_autumn_change() -> None:
    hourly = aj.Cron("0 * * * *", tz="Europe/Berlin")
    start = datetime(2024, 10, 27, 0, 30, tzinfo=BERLIN)
    got = fires(hourly, start, (start.astimezone(UTC) + timedelta(hours=5)))
    assert [f.astimezone(UTC).hour for f in got] == [23, 0, 1, 2, 3]  # five real hours
    assert len({f.timestamp() for f in got}) == 5


def test_a_year_in_a_dst_zone_matches_croniter_except_its_duplicate() -> None:
    # croniter itself yields 02:30 twice on the autumn change day; everything else agrees.
    year = (datetime(2024, 1, 1, tzinfo=BERLIN), datetime(2025, 1, 1, tzinfo=BERLIN))
    autumn = (datetime(2024, 10, 20, tzinfo=BERLIN), datetime(2024, 11, 3, tzinfo=BERLIN))
    for expr, (start, end) in (
        ("30 2 * * *", year),
        ("0 12 * * 1-5", year),
        ("0 0 1 * *", year),
        ("*/20 1-4 * * *", autumn),
    ):
        ours = fires(aj.Cron(expr, tz="Europe/Berlin"), start, end)
        it = croniter(expr, start)
        theirs: list[datetime] = []
        while (t := it.get_next(datetime)) <= end:
            wall = t.replace(tzinfo=None)
            if theirs and theirs[-1].replace(tzinfo=None) == wall and "*/" not in expr:
                continue  # a daily wall-clock time met twice: fires once
            theirs.append(t)
        assert [f.timestamp() for f in ours] == [f.timestamp() for f in theirs], expr
        stamps = [f.timestamp() for f in ours]
        assert stamps == sorted(set(stamps)), expr  # strictly increasing


def test_a_sixth_field_gives_seconds_and_matches_croniter() -> None:
    start = datetime(2024, 10, 27, 0, 59, 50, 250_000, tzinfo=BERLIN)
    end = start + timedelta(minutes=2)
    for expr in ("* * * * * *", "* * * * * */15", "*/2 * * * * 30"):
        ours = fires(aj.Cron(expr, tz="Europe/Berlin"), start, end)
        it = croniter(expr, start)
        theirs = []
        while (t := it.get_next(datetime)) <= end:
            theirs.append(t.timestamp())
        assert [f.timestamp() for f in ours] == theirs, expr
    every_second = fires(aj.Cron("* * * * * *"), start, end)
    assert len(every_second) == 120


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: aj.Cron("61 * * * *"), "malformed cron expression '61 \\* \\* \\* \\*'"),
        (lambda: aj.Cron("* * *"), "malformed cron expression"),
        (lambda: aj.Cron("0 * * * * * *"), "has 7 fields"),
        (lambda: aj.Cron("* * * * * 61"), "malformed cron expression"),
        (lambda: aj.Cron("0 2 * * *", tz="Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
        (
            lambda: aj.Cron("@daily", misfire="sometimes"),  # type: ignore[arg-type]
            "misfire must be one of skip",
        ),
        (
            lambda: aj.Cron("@daily", overlap="stack"),  # type: ignore[arg-type]
            "overlap must be one of skip, allow, queue",
        ),
        (lambda: aj.Every(0), "interval must be > 0"),
        (lambda: aj.Every(-5), "interval must be > 0"),
        (
            lambda: aj.Daemon(restart="sometimes"),  # type: ignore[arg-type]
            "restart must be one of always",
        ),
        (lambda: aj.Daemon(max_restarts=-1), "max_restarts must be"),
        (lambda: aj.Once(after=-1), "after must be >= 0"),
        # Far-future and non-finite durations: refused up front, never stored.
        (lambda: aj.Once(after=math.inf), r"after must be >= 0 seconds \(at most 100 years\)"),
        (lambda: aj.Once(after=1e20), r"after must be .*got 1e\+20"),
        (lambda: aj.Every(math.inf), r"interval must be > 0 seconds \(at most 100 years\)"),
        (lambda: aj.Every(1e300), r"interval must be .*got 1e\+300"),
        (lambda: aj.Every(math.nan), "interval must be .*got nan"),
        (lambda: aj.Cron("@daily", misfire_grace=math.inf), "misfire_grace must be .*got inf"),
        (lambda: aj.Daemon(reset_after=math.inf), "reset_after must be .*got inf"),
        (lambda: aj.Daemon(backoff=math.inf), "backoff must be .*got inf"),
        (
            lambda: aj.Once(at=datetime(9999, 12, 31, 23, 0), tz="America/New_York"),
            "Once\\(at=...\\) must be a time from year 1 to 9999",
        ),
        # A bool is not an integer here, and a time zone is a string.
        (lambda: aj.Cron("@daily", max_catchup=True), "max_catchup must be an integer, got True"),
        (lambda: aj.Every(5, max_catchup=0), "max_catchup must be >= 1, got 0"),
        (lambda: aj.Daemon(max_restarts=True), "max_restarts must be an integer, got True"),
        (
            lambda: aj.Cron("@daily", tz=["UTC"]),  # type: ignore[arg-type]
            r"tz must be an IANA time zone name like 'Europe/Paris', got \['UTC'\]",
        ),
    ],
)
def test_bad_schedules_are_refused_quoting_the_value(make: object, match: str) -> None:
    with pytest.raises(aj.InvalidSchedule, match=match):
        make()  # type: ignore[operator]


def test_misfire_policies_choose_the_missed_ticks() -> None:
    first, now = 1_000_000.0, 1_000_000.0 + 3600  # 61 ticks due, 60 of them missed
    for misfire, expected in (
        ("skip", [now]),
        ("run_once", [now]),
        ("run_all", [now - 60 * i for i in range(9, -1, -1)]),
    ):
        ticks, following = due_ticks(
            aj.Every(60, misfire=misfire, max_catchup=10),  # type: ignore[arg-type]
            first,
            now,
        )
        assert ticks == expected, misfire
        assert following == now + 60
    # Missed by more than the grace and nothing on time: skip runs nothing.
    ticks, following = due_ticks(aj.Every(7200, misfire="skip"), first, first + 3600)
    assert ticks == []
    assert following == first + 7200
    ticks, _ = due_ticks(aj.Every(7200, misfire="skip"), first, first + 30)
    assert ticks == [first]  # late, but within the grace
    ticks, _ = due_ticks(aj.Every(7200, misfire="run_once"), first, first + 3600)
    assert ticks == [first]


def test_a_huge_gap_is_not_walked_tick_by_tick() -> None:
    ticks, following = due_ticks(aj.Every(1, misfire="run_all", max_catchup=5), 0.0, 10**9)
    assert ticks == [10**9 - 4.0, 10**9 - 3.0, 10**9 - 2.0, 10**9 - 1.0, 10**9 * 1.0]
    assert following == 10**9 + 1.0
    cron_ticks, _ = due_ticks(
        aj.Cron("* * * * *", misfire="run_all", max_catchup=3), 0.0, 1_700_000_000.0
    )
    assert len(cron_ticks) == 3


# -- through a runtime, with a clock the test moves ---------------------------------------

pytestmark_anyio = pytest.mark.anyio
START = datetime(2024, 10, 20, 12, 0, tzinfo=UTC)


def runtime(store_url: str, clock: aj.ManualClock, **options: object) -> aj.Runtime:
    options.setdefault("workers", 4)
    options.setdefault("system_jobs", False)
    return aj.Runtime(
        store_url,
        clock=clock,
        poll_interval=0.05,
        progress_interval=0.01,
        **options,  # type: ignore[arg-type]
    )


async def wait_count(rt: aj.Runtime, job_id: str, n: int, status: str = "completed") -> None:
    with anyio.fail_after(10):
        while await rt.executions.count(job_id=job_id, status=status) < n:
            await anyio.sleep(0.005)


@pytest.mark.anyio
async def test_interval_job_carries_shared_data_across_100_runs(store_url: str) -> None:
    clock = aj.ManualClock(START)
    rt = runtime(store_url, clock)

    @rt.task
    async def tick(ctx: aj.Context) -> int:
        count = ctx.shared.get("count", 0)
        assert isinstance(count, int)
        ctx.shared["count"] = count + 1
        return count + 1

    async with rt:
        job = await rt.every(60, tick, shared={"count": 0})
        assert job.record.next_fire_at == START + timedelta(seconds=60)
        for n in range(1, 101):
            clock.advance(60)
            await wait_count(rt, job.id, n)
        await job.refresh()
        assert job.shared == {"count": 100}
        assert job.record.next_fire_at == START + timedelta(seconds=60 * 101)
        results = sorted(
            e.result for e in (await rt.executions.list(job_id=job.id, page_size=200)).items
        )  # type: ignore[type-var]
        assert results == list(range(1, 101))


@pytest.mark.anyio
async def test_cron_over_a_month_of_dst_fires_once_per_day_at_the_wall_time(
    store_url: str,
) -> None:
    clock = aj.ManualClock(datetime(2024, 10, 15, 12, tzinfo=BERLIN))
    rt = runtime(store_url, clock)

    @rt.task
    async def nightly() -> None: ...

    async with rt:
        job = await rt.cron("30 2 * * *", nightly, tz="Europe/Berlin")
        fired: list[str] = []
        for day in range(1, 31):
            # Time passes: the clock reaches each tick, then the morning after it.
            tick = job.record.next_fire_at
            assert tick is not None
            clock.set(tick)
            await wait_count(rt, job.id, day)
            fired.append(tick.astimezone(BERLIN).isoformat())
            clock.set(tick + timedelta(hours=8))
            await job.refresh()
        assert "2024-10-27T02:30:00+02:00" in fired and "2024-10-28T02:30:00+01:00" in fired
        assert all(f[11:19] == "02:30:00" for f in fired)
        executions = (await rt.executions.list(job_id=job.id, page_size=100)).items
        assert len(executions) == 30
        await job.refresh()
        last = job.record.last_fire_at
        assert last is not None
        assert last.astimezone(BERLIN).isoformat() == "2024-11-14T02:30:00+01:00"


@pytest.mark.anyio
async def test_a_clock_set_back_never_fires_a_tick_again(store_url: str) -> None:
    clock = aj.ManualClock(START)
    rt = runtime(store_url, clock)

    @rt.task
    async def hourly() -> None: ...

    async with rt:
        job = await rt.cron("0 * * * *", hourly)
        clock.set(START.replace(minute=0) + timedelta(hours=1))
        await wait_count(rt, job.id, 1)
        clock.set(START - timedelta(hours=3))  # back in time
        await anyio.sleep(0.2)
        clock.set(START.replace(minute=0) + timedelta(hours=1, minutes=30))
        await anyio.sleep(0.2)
        assert await rt.executions.count(job_id=job.id) == 1
        clock.set(START.replace(minute=0) + timedelta(hours=2))
        await wait_count(rt, job.id, 2)


@pytest.mark.anyio
@pytest.mark.parametrize(("misfire", "expected"), [("skip", 0), ("run_once", 1), ("run_all", 5)])
async def test_restart_mid_schedule_follows_the_misfire_policy(
    tmp_path: Path, misfire: str, expected: int
) -> None:
    url = f"sqlite:///{tmp_path}/misfire.db"
    clock = aj.ManualClock(datetime(2024, 5, 1, 9, 30, tzinfo=UTC))

    def build() -> aj.Runtime:
        rt = runtime(url, clock)

        @rt.task(name="report")
        async def report() -> None: ...

        return rt

    async with build() as rt:
        job = await rt.cron("0 * * * *", "report", misfire=misfire)
    clock.set(datetime(2024, 5, 1, 14, 30, tzinfo=UTC))  # 10:00 ... 14:00 missed
    async with build() as rt:
        await anyio.sleep(0.3)
        if expected:
            await wait_count(rt, job.id, expected)
        await anyio.sleep(0.1)
        assert await rt.executions.count(job_id=job.id) == expected
        again = await rt.jobs.get(job.id)
        assert again.record.next_fire_at == datetime(2024, 5, 1, 15, 0, tzinfo=UTC)


@pytest.mark.anyio
@pytest.mark.parametrize("overlap", ["skip", "allow", "queue"])
async def test_overlap_policy_when_the_previous_run_is_still_running(
    store_url: str, overlap: str
) -> None:
    clock = aj.ManualClock(START)
    rt = runtime(store_url, clock)
    release = anyio.Event()

    @rt.task
    async def slow() -> None:
        await release.wait()

    async with rt:
        job = await rt.every(60, slow, overlap=overlap)
        clock.advance(60)
        await wait_count(rt, job.id, 1, "running")
        clock.advance(60)  # the second tick comes while the first still runs
        await anyio.sleep(0.3)
        live = await rt.executions.count(job_id=job.id)
        assert live == (2 if overlap == "allow" else 1)
        release.set()
        await wait_count(rt, job.id, 2 if overlap in ("allow", "queue") else 1)
        await anyio.sleep(0.2)
        assert await rt.executions.count(job_id=job.id) == (1 if overlap == "skip" else 2)


@pytest.mark.anyio
async def test_daemon_killed_three_times_restarts_three_times_with_growing_delays(
    store_url: str,
) -> None:
    rt = aj.Runtime(store_url, workers=4, poll_interval=0.02, system_jobs=False)
    crashes = 0

    @rt.task
    async def watcher(ctx: aj.Context) -> None:
        nonlocal crashes
        if crashes < 3:
            crashes += 1
            raise ConnectionResetError(f"crash {crashes}")
        await anyio.sleep_forever()

    async with rt:
        job = await rt.daemon(watcher, backoff=aj.Backoff.exponential(0.05, 10, jitter=0))
        await wait_count(rt, job.id, 3, "failed")
        await wait_count(rt, job.id, 1, "running")
        executions = sorted(
            (await rt.executions.list(job_id=job.id)).items, key=lambda e: e.created_at
        )
        assert [e.status for e in executions] == [S.FAILED, S.FAILED, S.FAILED, S.RUNNING]
        gaps = [
            (nxt.created_at - prev.ended_at).total_seconds()  # type: ignore[operator]
            for prev, nxt in itertools.pairwise(executions)
        ]
        assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2
        logs = await rt.logs.list(job_id=job.id, level="warn")
        assert [r.message.split(";")[1].strip().split(" in ")[0] for r in logs.items] == [
            "restart 1",
            "restart 2",
            "restart 3",
        ]
        await job.refresh()
        assert job.record.state["restarts"] == 3
        stopped = await rt.jobs.stop(job.id)
        assert stopped.status == aj.JobStatus.STOPPED
        await wait_count(rt, job.id, 1, "cancelled")
        await anyio.sleep(0.2)
        assert await rt.executions.count(job_id=job.id) == 4


@pytest.mark.anyio
async def test_daemon_restart_policies_and_max_restarts(store_url: str) -> None:
    rt = aj.Runtime(store_url, workers=4, poll_interval=0.02, system_jobs=False)

    @rt.task
    async def exits() -> str:
        return "done"

    async with rt:
        never = await rt.daemon(exits, restart="never")
        limited = await rt.daemon(exits, max_restarts=2, backoff=0)
        clean = await rt.daemon(exits, restart="on_failure")
        with anyio.fail_after(10):
            for job in (never, limited, clean):
                while (await job.refresh()).status != aj.JobStatus.FINISHED:
                    await anyio.sleep(0.01)
        assert await rt.executions.count(job_id=never.id) == 1
        assert await rt.executions.count(job_id=limited.id) == 3
        assert await rt.executions.count(job_id=clean.id) == 1
        last = (await rt.logs.list(job_id=limited.id)).items[-1]
        assert "max_restarts=2 reached" in last.message


@pytest.mark.anyio
async def test_daemon_pause_stops_it_and_resume_restarts_it(store_url: str) -> None:
    rt = aj.Runtime(store_url, workers=4, poll_interval=0.02, system_jobs=False)
    starts = 0

    @rt.task
    async def serve() -> None:
        nonlocal starts
        starts += 1
        await anyio.sleep_forever()

    async def began(count: int) -> None:
        with anyio.fail_after(5):  # claimed as running, then its body begins
            while starts < count:
                await anyio.sleep(0.01)

    async with rt:
        job = await rt.daemon(serve, backoff=0)
        await wait_count(rt, job.id, 1, "running")
        await began(1)
        await rt.jobs.pause(job.id)
        await wait_count(rt, job.id, 1, "cancelled")
        await anyio.sleep(0.2)
        assert await rt.executions.count(job_id=job.id, status="running") == 0
        await rt.jobs.resume(job.id)
        await wait_count(rt, job.id, 1, "running")
        await began(2)
    assert starts == 2


@pytest.mark.anyio
async def test_a_daemon_that_always_crashes_backs_off_without_a_busy_loop(
    store_url: str,
) -> None:
    rt = aj.Runtime(store_url, workers=4, poll_interval=0.02, system_jobs=False)

    @rt.task
    async def broken() -> None:
        raise RuntimeError("bad config")

    async with rt:
        job = await rt.daemon(broken, backoff=aj.Backoff.exponential(0.02, 0.16, jitter=0))
        await anyio.sleep(1.0)
        runs = await rt.executions.count(job_id=job.id)
        # 0.02 + 0.04 + 0.08 + 0.16 + 0.16 ... : about 8 runs in a second, never hundreds.
        assert 4 <= runs <= 12, runs
        await rt.jobs.stop(job.id)


@pytest.mark.anyio
async def test_system_jobs_are_scheduled_once_per_store_and_can_be_reconfigured(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/system.db"
    async with aj.Runtime(url, workers=0) as rt:
        system = (await rt.jobs.list(category="system")).items
        assert sorted(j.name for j in system) == ["health check", "retention cleanup"]
        health = next(j for j in system if j.name == "health check")
        assert health.record.schedule["interval"] == 300
        await rt.jobs.pause(health.id)
    async with aj.Runtime(url, workers=0) as rt:
        assert await rt.jobs.count(category="system") == 2
        assert (await rt.jobs.get(health.id)).status == aj.JobStatus.PAUSED
    async with aj.Runtime(url, workers=0, health_interval=60) as rt:
        live = (await rt.jobs.list(category="system", status="active")).items
        assert {j.name: j.record.schedule["interval"] for j in live} == {
            "health check": 60,
            "retention cleanup": 3600,
        }
        assert (await rt.jobs.get(health.id)).status == aj.JobStatus.STOPPED


@pytest.mark.anyio
async def test_retention_cleanup_deletes_old_executions_and_logs_what_it_did(
    store_url: str,
) -> None:
    clock = aj.ManualClock(START)
    rt = runtime(store_url, clock, retention=timedelta(days=90), log_retention=timedelta(days=7))

    @rt.task
    async def work(ctx: aj.Context) -> None:
        ctx.log.info("working")

    async with rt:
        old = await rt.once(work)
        await old.wait()
        clock.advance(timedelta(days=30).total_seconds())
        recent = await rt.once(work)
        await recent.wait()
        clock.advance(timedelta(days=70).total_seconds())
        cleanup = await rt.once(
            "asyncjobs.retention",
            kwargs={"retention": 90 * 86400.0, "log_retention": 7 * 86400.0},
        )
        assert await cleanup.result() == {"executions": 1, "logs": 2}
        assert await rt.executions.count(job_id=old.id) == 0
        assert await rt.executions.count(job_id=recent.id) == 1
        assert (await rt.logs.list(job_id=recent.id)).total == 0
        (ex,) = await cleanup.executions()
        messages = [r.message for r in (await rt.logs.list(execution_id=ex.id)).items]
        assert messages == [
            (
                "deleted 1 ended executions older than 90 days, 0:00:00 and 2 log lines older "
                "than 7 days, 0:00:00"
            )
        ]


@pytest.mark.anyio
async def test_once_at_a_naive_time_is_taken_in_the_zone_and_the_past_runs_now(
    store_url: str,
) -> None:
    clock = aj.ManualClock(datetime(2024, 7, 1, 6, 0, tzinfo=UTC))
    rt = runtime(store_url, clock)

    @rt.task
    async def noop() -> str:
        return "ran"

    async with rt:
        paris = await rt.once(noop, at=datetime(2024, 7, 1, 9, 30), tz="Europe/Paris")
        (ex,) = await paris.executions()
        assert ex.scheduled_for == datetime(2024, 7, 1, 7, 30, tzinfo=UTC)
        assert ex.status == S.SCHEDULED
        past = await rt.once(noop, at=datetime(2020, 1, 1, tzinfo=UTC))
        with anyio.fail_after(5):
            assert await past.result() == "ran"
        with pytest.raises(aj.InvalidSchedule, match="unknown time zone 'Nowhere'"):
            await rt.once(noop, at=datetime(2024, 7, 1, 9, 30), tz="Nowhere")


@pytest.mark.anyio
async def test_health_check_recovers_the_executions_of_a_dead_node(store_url: str) -> None:
    rt = aj.Runtime(
        store_url, workers=1, system_jobs=False, heartbeat_interval=60, node_timeout=120
    )

    @rt.task(name="stuck")
    async def stuck(ctx: aj.Context) -> int:
        return ctx.attempt

    async with rt:
        rt.resize(0)  # let the ghost node claim the job first
        job = await rt.once("stuck")
        now = rt._clock.time()
        ghost = NodeInfo(
            id="ghost", host="elsewhere", pid=1, started_at=now, heartbeat_at=now - 600
        )
        await rt.store.register_node(ghost)
        (claim,) = await rt.store.claim(ghost, 1, now)
        assert claim.execution.job_id == job.id
        rt.resize(1)
        check = await rt.once("asyncjobs.health")
        with anyio.fail_after(10):
            assert await check.result() == {"recovered": 1}
            assert await job.result() == 2  # re-queued as a new attempt, then run here
        (ex,) = await check.executions()
        logs = [r.message for r in (await rt.logs.list(execution_id=ex.id)).items]
        assert logs == [
            f"execution {claim.execution.id} of job {job.id} had lost its worker: now retrying"
        ]
        assert "ghost" not in {node.id for node in await rt.store.list_nodes()}


@pytest.mark.anyio
async def test_a_schedule_that_cannot_fire_or_be_stored_is_refused_and_nothing_is_lost(
    store_url: str,
) -> None:
    clock = aj.ManualClock(datetime(2024, 7, 1, 6, 0, tzinfo=UTC))
    rt = runtime(store_url, clock)

    @rt.task
    async def add(a: int) -> int:
        return a

    async with rt:
        good = await rt.once(add, 1)
        with anyio.fail_after(5):
            assert await good.result() == 1
        with pytest.raises(aj.InvalidSchedule, match=r"cron expression '0 0 30 2 \*' never fires"):
            await rt.cron("0 0 30 2 *", add, 1)  # February 30th
        with pytest.raises(
            aj.InvalidSchedule, match=r"after must be >= 0 seconds \(at most 100 years\), got inf"
        ):
            await rt.once(add, 1, after=math.inf)
        with pytest.raises(aj.InvalidSchedule, match=r"after must be .*got 1e\+20"):
            await rt.once(add, 1, after=1e20)
        with pytest.raises(aj.InvalidSchedule, match=r"interval must be .*got inf"):
            await rt.every(math.inf, add, 1)
        with pytest.raises(aj.InvalidSchedule, match=r"interval must be .*got 1e\+300"):
            await rt.every(1e300, add, 1)
        with pytest.raises(aj.InvalidSchedule, match="unknown time zone 'Nowhere'"):
            await rt.once(add, 1, tz="Nowhere")  # checked without at= too
        with pytest.raises(
            aj.InvalidSchedule,
            match=r"schedule must be an aj.Once, aj.Cron.*write schedule=aj.Cron\('0 0 \* \* \*'\)",
        ):
            rt.job("nightly", schedule="0 0 * * *")  # type: ignore[arg-type]
        with pytest.raises(
            TypeError, match=r"Runtime.every\(\) got an unexpected keyword argument 'after'"
        ):
            await rt.every(5, add, 1, after=3)
        # Nothing was stored, and what was stays readable: no time out of range in a listing.
        assert await rt.jobs.count() == 1
        assert [e.job_id for e in (await rt.executions.list()).items] == [good.id]
        assert [j.id for j in (await rt.jobs.list()).items] == [good.id]
