"""Jupyter display: the HTML of executions, jobs and logs, the live view, and no signals."""

from __future__ import annotations

import ast
import re
import signal
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

import asyncjobs as aj
from asyncjobs import ExecutionStatus as S
from asyncjobs._display import (
    clamp_progress,
    execution_html,
    items_html,
    logs_table,
    progress_bar,
    register_ipython_formatters,
)
from asyncjobs._types import ExecutionId, JobId

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
EVIL = "<script>alert('x')</script> & \"quoted\""


def execution(**changes: object) -> aj.Execution:
    base = aj.Execution(
        id=ExecutionId("ex-1"),
        job_id=JobId("job-1"),
        step=0,
        task="train",
        args=(),
        kwargs={},
        attempt=1,
        status=S.RUNNING,
        priority=0,
        progress=40.0,
        progress_message="epoch 2",
        result=None,
        error=None,
        created_at=T0,
        scheduled_for=T0,
        started_at=T0 + timedelta(seconds=1),
        ended_at=None,
        node="n",
        pid=1,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def log(message: str, level: aj.LogLevel = aj.LogLevel.INFO, **data: object) -> aj.LogRecord:
    return aj.LogRecord(
        execution_id=ExecutionId("ex-1"),
        job_id=JobId("job-1"),
        seq=1,
        at=T0,
        level=level,
        message=message,
        data=data,  # type: ignore[arg-type]
    )


def bar_width(html: str) -> str:
    found = re.search(r'role="progressbar".*?<div style="width: ([^%]+)%', html)
    assert found is not None, html
    return found.group(1)


@pytest.mark.parametrize(
    ("progress", "status", "width"),
    [
        (40.0, S.RUNNING, "40"),
        (12.5, S.RUNNING, "12.5"),
        (-3.0, S.RUNNING, "0"),
        (250.0, S.RUNNING, "100"),
        (float("nan"), S.RUNNING, "0"),
        (30.0, S.COMPLETED, "100"),  # completed is a full bar, whatever was last reported
        (30.0, S.FAILED, "30"),  # a failure shows where it stopped
    ],
)
def test_progress_bar_width_follows_progress_within_bounds(
    progress: float, status: S, width: str
) -> None:
    html = progress_bar(progress, status)
    assert bar_width(html) == width
    assert f'aria-valuenow="{width}"' in html


def test_clamp_progress_keeps_values_within_0_and_100() -> None:
    assert [clamp_progress(v) for v in (-1, 0, 55.5, 100, 1e9)] == [0, 0, 55.5, 100, 100]


@pytest.mark.parametrize("status", list(S))
def test_every_status_has_its_own_badge(status: S) -> None:
    html = execution_html(execution(status=status))
    assert f">{status.value}</span>" in html
    assert 'class="asyncjobs-status"' in html


def test_badge_colours_tell_statuses_apart() -> None:
    colours = {
        re.search(r"background: (#[0-9a-f]{6})", execution_html(execution(status=s))).group(1)  # type: ignore[union-attr]
        for s in (S.RUNNING, S.COMPLETED, S.FAILED, S.RETRYING)
    }
    assert len(colours) == 4


def test_execution_html_escapes_every_user_string() -> None:
    failed = execution(
        status=S.FAILED,
        task=EVIL,
        progress_message=EVIL,
        error=aj.ErrorInfo(type=EVIL, message=EVIL, traceback=EVIL),
    )
    html = execution_html(failed)
    assert "<script>" not in html
    # task, progress message, error type, error message, traceback
    assert html.count("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;") == 5
    assert "<details><summary>traceback</summary>" in html


def test_completed_execution_shows_its_result_and_duration() -> None:
    done = execution(
        status=S.COMPLETED,
        progress=100.0,
        result={"loss": 0.25, "note": EVIL},
        ended_at=T0 + timedelta(seconds=3),
    )
    html = execution_html(done)
    assert "result: <code>{&quot;loss&quot;: 0.25" in html
    assert "took 2 s" in html
    assert "<script>" not in html
    assert done._repr_html_() == html


def test_logs_table_has_one_escaped_row_per_line_with_level_and_data() -> None:
    records = [
        log("first"),
        log(EVIL, aj.LogLevel.ERROR, url=EVIL),
        log("third", aj.LogLevel.WARN),
    ]
    page = aj.Page(items=tuple(records), page=1, page_size=50, total=3)
    html = page._repr_html_()
    assert html.count('<tr class="asyncjobs-log">') == 3
    assert "<th" in html and ">level</th>" in html and ">message</th>" in html
    assert ">error</td>" in html and ">warn</td>" in html
    assert "<script>" not in html
    assert "&quot;url&quot;: &quot;&lt;script&gt;" in html
    assert "page 1 of 1, 3 in all" in html
    assert records[0]._repr_html_() == logs_table([records[0]])


def test_long_tables_are_cut_and_say_so() -> None:
    html = logs_table([log(f"line {i}") for i in range(250)])
    assert html.count('<tr class="asyncjobs-log">') == 200
    assert "200 of 250 shown" in html


def test_lists_of_records_become_tables_and_other_lists_do_not() -> None:
    assert items_html([log("a"), log("b")]) is not None
    executions = items_html([execution(), execution(status=S.QUEUED)])
    assert executions is not None and executions.count('<tr class="asyncjobs-execution">') == 2
    assert items_html([]) is None
    assert items_html([1, 2]) is None
    assert items_html([log("a"), execution()]) is None


def test_an_empty_page_says_so() -> None:
    page: aj.Page[aj.LogRecord] = aj.Page(items=(), page=1, page_size=50, total=0)
    assert "nothing here (page 1 of 1, 0 in all)" in page._repr_html_()


def test_formatters_are_left_alone_without_a_running_ipython() -> None:
    register_ipython_formatters()  # no shell here: must neither fail nor import IPython


def test_rendering_never_imports_ipython() -> None:
    code = (
        "import sys, asyncjobs as aj\n"
        "from asyncjobs._display import execution_html, logs_table\n"
        "rt = aj.Runtime('memory://')\n"
        "print(sorted(sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert not {m for m in ast.literal_eval(out) if m.split(".")[0] == "IPython"}


# -- against a running runtime ------------------------------------------------------------


def runtime() -> aj.Runtime:
    rt = aj.Runtime("memory://", system_jobs=False, poll_interval=0.05, progress_interval=0.01)

    @rt.task(name="steps")
    async def steps(ctx: aj.Context, n: int) -> int:
        for i in range(n):
            ctx.progress(100 * (i + 1) / n, f"step {i + 1} <of> {n}")
            ctx.log.info("did step %d", i + 1, step=i + 1)
            await anyio.sleep(0.02)
        return n

    @rt.task(name="broken")
    async def broken(ctx: aj.Context) -> None:
        raise ValueError(EVIL)

    return rt


async def test_job_handle_shows_its_latest_firing_after_wait() -> None:
    rt = runtime()
    async with rt:
        job = await rt.once("steps", 3)
        assert "no execution read yet" in job._repr_html_()
        with anyio.fail_after(10):
            await job.wait()
        html = job._repr_html_()
        assert ">completed</span>" in html
        assert bar_width(html) == "100"
        assert "step 3 &lt;of&gt; 3" in html
        failing = await rt.once("broken")
        with anyio.fail_after(10):
            await failing.wait()
        html = failing._repr_html_()
        assert ">failed</span>" in html and "<b>ValueError</b>" in html
        assert "<script>" not in html
        logs = await rt.logs.list(execution_id=(await job.wait()).id)
        assert logs._repr_html_().count('<tr class="asyncjobs-log">') == 3


async def test_watch_without_a_notebook_prints_each_change_until_the_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rt = runtime()
    async with rt:
        job = await rt.once("steps", 5)
        with anyio.fail_after(10):
            assert await job.watch() is None  # type: ignore[func-returns-value]
        lines = capsys.readouterr().out.splitlines()
        assert lines[-1] == "  steps: completed 100% step 5 <of> 5"
        assert len([line for line in lines if line.startswith("steps [")]) >= 2
        assert job.status == aj.JobStatus.FINISHED


async def test_watch_gives_up_after_its_timeout_on_a_job_that_has_not_fired(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = aj.ManualClock(T0)  # never moved: the cron job never fires
    rt = aj.Runtime("memory://", system_jobs=False, clock=clock, poll_interval=0.01)
    rt.task(name="nothing")(subprocess_friendly_sleep)
    async with rt:
        job = await rt.cron("0 3 * * *", "nothing", 0)
        with pytest.raises(TimeoutError):
            await job.watch(timeout=0.1)
    assert capsys.readouterr().out == "nothing [active]\n"
    assert "no execution read yet" not in job._repr_html_()  # read: there is none


async def test_starting_a_runtime_installs_no_signal_handler() -> None:
    import asyncio

    watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD)
    before = {sig: signal.getsignal(sig) for sig in watched}
    rt = runtime()
    rt.task(mode="process", name="sleep")(subprocess_friendly_sleep)
    async with rt:
        job = await rt.once("sleep", 0.01)
        with anyio.fail_after(30):
            await job.result()
        assert {sig: signal.getsignal(sig) for sig in watched} == before
        handlers = getattr(asyncio.get_running_loop(), "_signal_handlers", {})
        assert not handlers
    assert {sig: signal.getsignal(sig) for sig in watched} == before


def subprocess_friendly_sleep(seconds: float) -> str:
    import time

    time.sleep(seconds)
    return "slept"
