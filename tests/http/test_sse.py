"""Server-Sent Events: read live while a job runs, resumed with Last-Event-ID, ended cleanly."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest

from asyncjobs.http import serve_async

from .conftest import make_runtime

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from anyio.abc import TaskStatus

    from .conftest import Api

pytestmark = pytest.mark.anyio


async def frames(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """Parse a text/event-stream: one dict per event, ``{"comment": ...}`` per comment line."""
    assert response.headers["content-type"].startswith("text/event-stream")
    frame: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if frame:
                yield frame
                frame = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            frame[name] = value.removeprefix(" ")
    assert not frame, f"the stream ended inside an event: {frame}"


async def events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The events of a stream (comments and the ``retry`` frame left out), checked."""
    async for frame in frames(response):
        if "data" in frame:
            data: dict[str, Any] = json.loads(frame["data"])
            assert frame["id"] == str(data["seq"])
            assert frame["event"] == data["type"]
            yield data


async def read_all(api: Api, path: str, **headers: str) -> list[dict[str, Any]]:
    async with api.client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        with anyio.fail_after(10):
            return [event async for event in events(response)]


async def test_progress_arrives_in_order_while_the_job_runs_then_the_final_state(
    api: Api,
) -> None:
    job = await api.create("steps", args=[4])
    execution_id = job["execution_id"]
    seen: list[dict[str, Any]] = []
    async with api.client.stream("GET", f"/executions/{execution_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        with anyio.fail_after(20):
            async for event in events(response):
                seen.append(event)
                assert event["execution_id"] == execution_id and event["job_id"] == job["id"]
                if event["type"] == "progress":
                    # Live: the task is still running, waiting for us to let it go on.
                    r = await api.client.get(f"/executions/{execution_id}")
                    assert r.json()["status"] == "running"
                    await api.gate.send(None)
    # The stream ended by itself after the final state.
    kinds = [(e["type"], e.get("status", e.get("progress"))) for e in seen]
    assert kinds[:2] == [("state", "queued"), ("state", "running")]
    progress = [e for e in seen if e["type"] == "progress"]
    assert [(e["progress"], e["message"]) for e in progress] == [
        (25.0, "step 1"),
        (50.0, "step 2"),
        (75.0, "step 3"),
        (100.0, "step 4"),
    ]
    assert seen[-1]["type"] == "state" and seen[-1]["status"] == "completed"
    assert seen.index(progress[-1]) < len(seen) - 1
    assert any(e["type"] == "log" and e["message"] == "all 4 steps done" for e in seen)
    ids = [e["seq"] for e in seen]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def test_last_event_id_resumes_after_that_event(api: Api) -> None:
    job = await api.create("noisy")
    await api.wait_ended(job["execution_id"])
    path = f"/executions/{job['execution_id']}/events"
    everything = await read_all(api, path)
    ids = [e["seq"] for e in everything]
    assert len(ids) >= 6  # queued, running, 4 log lines, completed

    assert [e["seq"] for e in await read_all(api, path, **{"Last-Event-ID": str(ids[1])})] == ids[
        2:
    ]
    assert [e["seq"] for e in await read_all(api, f"{path}?after={ids[3]}")] == ids[4:]
    # A reconnecting EventSource sends the header: it wins over the URL it reconnects to.
    resumed = await read_all(api, f"{path}?after={ids[0]}", **{"Last-Event-ID": str(ids[-2])})
    assert [e["seq"] for e in resumed] == ids[-1:]
    # After the final event there is nothing left: 204 tells EventSource to stop.
    r = await api.client.get(path, headers={"Last-Event-ID": str(ids[-1])})
    assert r.status_code == 204 and r.content == b""


async def test_a_job_stream_starts_now_keeps_alive_and_goes_on(api: Api) -> None:
    job = await api.create("steps", args=[2])
    execution_id = job["execution_id"]
    with anyio.fail_after(10):
        while (await api.rt.executions.get(execution_id)).progress != 50:
            await api.rt._changes_wait(api.rt._changes_arm(execution_id))
    async with api.client.stream("GET", "/events", params={"job_id": job["id"]}) as response:
        assert response.status_code == 200
        seen: list[dict[str, str]] = []
        with anyio.fail_after(10):
            async for frame in frames(response):
                seen.append(frame)
                if frame.get("comment") == "keep-alive" and len(seen) == 2:
                    # Nothing happened since the stream opened: only a keep-alive came.
                    await api.gate.send(None)
                    await api.gate.send(None)
                if '"completed"' in frame.get("data", ""):
                    break
    assert seen[0] == {"retry": "2000"}
    assert seen[1] == {"comment": "keep-alive"}
    data = [json.loads(f["data"]) for f in seen if "data" in f]
    # From now: the queued/running states and the first progress came before; not repeated.
    assert data[0]["type"] == "progress" and data[0]["progress"] == 100
    assert data[-1]["status"] == "completed"

    # From the start, with Last-Event-ID: 0.
    async with api.client.stream(
        "GET", f"/events?job_id={job['id']}", headers={"Last-Event-ID": "0"}
    ) as response:
        with anyio.fail_after(10):
            async for event in events(response):
                assert event["type"] == "state" and event["status"] == "queued"
                break


async def test_the_stream_of_every_job_sees_them_all(api: Api) -> None:
    first = await api.create("add", args=[1, 1])
    await api.wait_ended(first["execution_id"])
    second = await api.create("add", args=[2, 2])
    await api.wait_ended(second["execution_id"])
    jobs: set[str] = set()
    async with api.client.stream("GET", "/events", headers={"Last-Event-ID": "0"}) as response:
        with anyio.fail_after(10):
            async for event in events(response):
                jobs.add(event["job_id"])
                if event["job_id"] == second["id"] and event.get("status") == "completed":
                    break
    assert jobs == {first["id"], second["id"]}


async def test_head_of_a_stream_answers_at_once(api: Api) -> None:
    with anyio.fail_after(5):
        r = await api.client.head("/events")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")


async def test_open_streams_end_when_the_server_stops(tmp_path: Path) -> None:
    gate_send, gate_receive = anyio.create_memory_object_stream[None](1)
    rt = make_runtime(f"sqlite:///{tmp_path}/stop.db", gate_receive)
    server = anyio.CancelScope()

    async def run(*, task_status: TaskStatus[tuple[str, int]]) -> None:
        with server:
            await serve_async(
                rt, port=0, keepalive=30, log_level="warning", task_status=task_status
            )

    with gate_send, gate_receive:
        async with anyio.create_task_group() as tg:
            # No token: allowed on loopback.
            _, port = await tg.start(run)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                job = (
                    await client.post("/jobs", json={"task": "add", "args": [1, 2], "after": 60})
                ).json()
                async with client.stream("GET", f"/events?job_id={job['id']}") as response:
                    stream = frames(response)
                    assert await anext(stream) == {"retry": "2000"}
                    server.cancel()
                    with anyio.fail_after(10):
                        # Ends (instead of hanging the shutdown), with nothing but end of stream.
                        assert [f async for f in stream] == []
    assert rt._store is None  # serve_async started the runtime, so it stopped it
