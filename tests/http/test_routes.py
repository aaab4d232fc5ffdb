"""Every route of the HTTP API, and every error status, against a real server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import pytest

if TYPE_CHECKING:
    from .conftest import Api

pytestmark = pytest.mark.anyio

MISSING = "01a2117e-fc31-7000-8058-3aa21bffbb10"


def error_of(response: Any, status: int) -> dict[str, Any]:
    """Assert the status and the JSON error body; return the error."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    assert isinstance(error["type"], str) and isinstance(error["message"], str)
    return error


async def test_a_job_created_over_http_runs_and_every_query_route_shows_it(api: Api) -> None:
    job = await api.create("add", args=[2, 3])
    assert job["status"] == "active"
    assert job["steps"][0]["task"] == "add" and job["steps"][0]["args"] == [2, 3]
    execution = await api.wait_ended(job["execution_id"])
    assert execution["status"] == "completed" and execution["result"] == 5
    assert execution["job_id"] == job["id"]
    assert execution["started_at"] and execution["ended_at"]

    r = await api.client.get(f"/jobs/{job['id']}")
    assert r.status_code == 200 and r.json()["status"] == "finished"
    # Ids are accepted in either case (they are UUIDs).
    r = await api.client.get(f"/jobs/{job['id'].upper()}")
    assert r.status_code == 200 and r.json()["id"] == job["id"]

    r = await api.client.get("/jobs", params={"status": "finished", "name": "add"})
    page = r.json()
    assert r.status_code == 200
    assert [j["id"] for j in page["items"]] == [job["id"]]
    assert (page["page"], page["page_size"], page["total"], page["pages"]) == (1, 50, 1, 1)
    r = await api.client.get("/jobs", params={"status": "active"})
    assert r.json()["total"] == 0

    r = await api.client.get("/executions", params={"job_id": job["id"], "status": "completed"})
    assert [e["id"] for e in r.json()["items"]] == [job["execution_id"]]
    r = await api.client.get("/executions", params={"task": "nope"})
    assert r.json()["items"] == []

    r = await api.client.get(f"/executions/{job['execution_id']}/history")
    assert [t["status"] for t in r.json()["items"]] == ["queued", "running", "completed"]
    assert all(datetime.fromisoformat(t["at"]).tzinfo is not None for t in r.json()["items"])

    r = await api.client.get("/categories")
    assert r.json() == {"items": [{"name": "default", "jobs": 1}]}
    r = await api.client.get("/tasks")
    assert [t["name"] for t in r.json()["items"]] == ["add", "fail", "hang", "noisy", "steps"]
    assert r.json()["items"][0] == {
        "name": "add",
        "mode": "coroutine",
        "is_async": True,
        "timeout": None,
        "retries": 0,
        "priority": 0,
        "category": "default",
    }


async def test_a_failed_execution_shows_its_error(api: Api) -> None:
    job = await api.create("fail")
    execution = await api.wait_ended(job["execution_id"])
    assert execution["status"] == "failed"
    assert execution["error"]["type"] == "ValueError"
    assert execution["error"]["message"] == "boom"
    assert "Traceback" in execution["error"]["traceback"]


async def test_logs_filter_by_level_and_page(api: Api) -> None:
    job = await api.create("noisy")
    await api.wait_ended(job["execution_id"])
    path = f"/executions/{job['execution_id']}/logs"

    r = await api.client.get(path)
    assert [line["level"] for line in r.json()["items"]] == ["debug", "info", "warn", "error"]
    r = await api.client.get(path, params={"level": "warn"})
    assert [line["message"] for line in r.json()["items"]] == ["a warning line", "an error line"]
    r = await api.client.get(path, params={"page_size": 1, "page": 2})
    body = r.json()
    assert [line["message"] for line in body["items"]] == ["an info line"]
    assert (body["total"], body["pages"]) == (4, 4)

    r = await api.client.get(
        "/logs", params={"execution_id": job["execution_id"], "level": "error"}
    )
    assert [line["message"] for line in r.json()["items"]] == ["an error line"]
    r = await api.client.get("/logs", params={"job_id": job["id"]})
    assert r.json()["total"] == 4
    first = r.json()["items"][0]
    assert first["job_id"] == job["id"] and first["execution_id"] == job["execution_id"]
    assert isinstance(first["seq"], int) and first["data"] == {}


async def test_pages_are_bounded_and_counted(api: Api) -> None:
    ids = [(await api.create("add", args=[i, i]))["id"] for i in range(3)]
    r = await api.client.get("/jobs", params={"page_size": 2})
    body = r.json()
    # Newest first.
    assert [j["id"] for j in body["items"]] == ids[::-1][:2]
    assert (body["total"], body["pages"]) == (3, 2)
    r = await api.client.get("/jobs", params={"page_size": 2, "page": 2})
    assert [j["id"] for j in r.json()["items"]] == ids[:1]
    r = await api.client.get("/jobs", params={"page": 99})
    assert r.json()["items"] == [] and r.json()["total"] == 3
    r = await api.client.get("/jobs", params={"page_size": 1000})
    assert r.status_code == 200
    error = error_of(await api.client.get("/jobs", params={"page_size": 1001}), 400)
    assert error["parameter"] == "page_size" and "1001" in error["message"]


async def test_create_job_takes_the_usual_options(api: Api) -> None:
    at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    job = await api.create(
        "add",
        args=[1],
        kwargs={"b": 2},
        name="later",
        category="reports/daily",
        priority=-5,
        at=at.isoformat(),
        key="once-only",
        shared={"k": [1, 2]},
        timeout=30,
        retries=2,
    )
    assert (job["name"], job["category"], job["priority"], job["key"]) == (
        "later",
        "reports/daily",
        -5,
        "once-only",
    )
    assert job["shared"] == {"k": [1, 2]}
    assert job["steps"][0]["kwargs"] == {"b": 2}
    assert (job["steps"][0]["timeout"], job["steps"][0]["retries"]) == (30, 2)
    r = await api.client.get(f"/executions/{job['execution_id']}")
    execution = r.json()
    assert execution["status"] == "scheduled"
    assert datetime.fromisoformat(execution["scheduled_for"]) == at

    # The same live key returns the same job.
    again = await api.create("add", args=[7, 8], key="once-only")
    assert again["id"] == job["id"]

    later = await api.create("add", args=[1, 1], after=3600, tz="Europe/Paris", mode="coroutine")
    r = await api.client.get(f"/executions/{later['execution_id']}")
    assert r.json()["status"] == "scheduled"
    r = await api.client.get("/categories")
    names = [c["name"] for c in r.json()["items"]]
    assert "reports" in names and "reports/daily" in names


async def wait_status(api: Api, execution_id: str, status: str) -> None:
    with anyio.fail_after(10):
        while (await api.rt.executions.get(execution_id)).status != status:
            await api.rt._changes_wait(api.rt._changes_arm(execution_id))


async def test_job_commands_pause_resume_stop_destroy(api: Api) -> None:
    job = await api.create("hang")
    await wait_status(api, job["execution_id"], "running")
    base = f"/jobs/{job['id']}"

    r = await api.client.post(f"{base}/pause")
    assert r.status_code == 200 and r.json()["status"] == "paused"
    r = await api.client.post(f"{base}/resume")
    assert r.status_code == 200 and r.json()["status"] == "active"
    r = await api.client.post(f"{base}/stop")
    assert r.status_code == 200 and r.json()["status"] == "stopped"
    await wait_status(api, job["execution_id"], "cancelled")

    error = error_of(await api.client.post(f"{base}/pause"), 409)
    assert error["type"] == "Conflict" and "stopped" in error["message"]
    r = await api.client.post(f"{base}/destroy")
    assert r.status_code == 200 and r.json()["status"] == "deleted"
    # DELETE is the same command; doing it twice changes nothing.
    r = await api.client.delete(base)
    assert r.status_code == 200 and r.json()["status"] == "deleted"


async def test_cancel_an_execution(api: Api) -> None:
    job = await api.create("hang")
    await wait_status(api, job["execution_id"], "running")
    path = f"/executions/{job['execution_id']}/cancel"
    r = await api.client.post(path)
    assert r.status_code == 200
    await wait_status(api, job["execution_id"], "cancelled")
    # An ended execution is returned unchanged.
    r = await api.client.post(path)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"

    waiting = await api.create("add", args=[1, 2], after=3600)
    r = await api.client.post(f"/executions/{waiting['execution_id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"


async def test_trigger_runs_a_live_job_now(api: Api) -> None:
    job = await api.create("add", args=[20, 22], after=3600)
    r = await api.client.post(f"/jobs/{job['id']}/trigger")
    assert r.status_code == 200, r.text
    (triggered,) = r.json()["items"]
    assert triggered["job_id"] == job["id"] and triggered["id"] != job["execution_id"]
    assert triggered["status"] in ("queued", "running", "completed")
    assert (await api.wait_ended(triggered["id"]))["result"] == 42
    r = await api.client.get(f"/executions/{job['execution_id']}")
    assert r.json()["status"] == "scheduled"  # the schedule did not move

    # An ended job does not run again.
    await api.client.post(f"/jobs/{job['id']}/stop")
    error = error_of(await api.client.post(f"/jobs/{job['id']}/trigger"), 409)
    assert "stopped" in error["message"]

    # A daemon always runs: triggering it is refused, naming why.
    daemon = await api.rt.daemon("hang")
    error = error_of(await api.client.post(f"/jobs/{daemon.id}/trigger"), 409)
    assert "daemon" in error["message"]
    assert (await api.client.post(f"/jobs/{daemon.id}/stop")).status_code == 200


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/jobs", {"page": "0"}, "page"),
        ("/jobs", {"page": "x"}, "page"),
        ("/jobs", {"page": "99999999999999999999999"}, "page"),
        ("/jobs", {"page_size": "0"}, "page_size"),
        ("/jobs", {"status": "running"}, "status"),
        ("/jobs", {"category": "a//b"}, "category"),
        ("/jobs", {"name": "a\x00b"}, "name"),
        ("/jobs", {"name": "x" * 201}, "name"),
        ("/jobs", {"sort": "id"}, "sort"),
        ("/jobs", {"id": "1; DROP TABLE jobs"}, "id"),
        ("/executions", {"job_id": "42"}, "job_id"),
        ("/executions", {"status": "active"}, "status"),
        ("/logs", {"level": "loud"}, "level"),
        ("/logs", {"execution_id": "not-an-id"}, "execution_id"),
        ("/jobs/not-an-id", {}, "job_id"),
        ("/executions/1", {}, "execution_id"),
        ("/executions/x'--/history", {}, "execution_id"),
        (f"/executions/{MISSING}/logs", {"level": "WARNING"}, "level"),
        (f"/executions/{MISSING}/events", {"after": "-1"}, "after"),
        ("/events", {"job_id": "zzz"}, "job_id"),
        ("/categories", {"page": "1"}, "page"),
    ],
)
async def test_bad_query_or_path_is_a_400_naming_the_parameter(
    api: Api, path: str, params: dict[str, str], parameter: str
) -> None:
    error = error_of(await api.client.get(path, params=params), 400)
    assert error["type"] == "InvalidParameter"
    assert error["parameter"] == parameter


async def test_a_repeated_parameter_and_a_bad_last_event_id_are_400(api: Api) -> None:
    error = error_of(await api.client.get("/jobs?page=1&page=2"), 400)
    assert "more than once" in error["message"]
    error = error_of(await api.client.get("/events", headers={"Last-Event-ID": "abc"}), 400)
    assert error["parameter"] == "Last-Event-ID"


@pytest.mark.parametrize(
    "path",
    [
        f"/jobs/{MISSING}",
        f"/executions/{MISSING}",
        f"/executions/{MISSING}/history",
        f"/executions/{MISSING}/logs",
        f"/executions/{MISSING}/events",
        f"/events?job_id={MISSING}",
        f"/logs?execution_id={MISSING}",
        "/nowhere",
        "/jobs/a/b/c",
    ],
)
async def test_what_does_not_exist_is_a_404(api: Api, path: str) -> None:
    error = error_of(await api.client.get(path), 404)
    if "nowhere" not in path and "/a/b/c" not in path:
        assert MISSING in error["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"/jobs/{MISSING}/stop"),
        ("POST", f"/jobs/{MISSING}/pause"),
        ("POST", f"/jobs/{MISSING}/resume"),
        ("POST", f"/jobs/{MISSING}/destroy"),
        ("POST", f"/jobs/{MISSING}/trigger"),
        ("DELETE", f"/jobs/{MISSING}"),
        ("POST", f"/executions/{MISSING}/cancel"),
    ],
)
async def test_commands_on_what_does_not_exist_are_404(api: Api, method: str, path: str) -> None:
    error = error_of(await api.client.request(method, path), 404)
    assert MISSING in error["message"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", f"/jobs/{MISSING}/stop", "POST"),
        ("GET", f"/jobs/{MISSING}/pause", "POST"),
        ("GET", f"/jobs/{MISSING}/resume", "POST"),
        ("GET", f"/jobs/{MISSING}/destroy", "POST"),
        ("GET", f"/jobs/{MISSING}/trigger", "POST"),
        ("GET", f"/executions/{MISSING}/cancel", "POST"),
        ("PUT", "/jobs", "GET, HEAD, POST"),
        ("POST", f"/jobs/{MISSING}", "DELETE, GET, HEAD"),
        ("POST", "/events", "GET, HEAD"),
    ],
)
async def test_wrong_methods_are_405_and_say_which_are_allowed(
    api: Api, method: str, path: str, allowed: str
) -> None:
    error = error_of(await api.client.request(method, path), 405)
    assert error["type"] == "MethodNotAllowed"
    r = await api.client.request(method, path)
    assert sorted(r.headers["allow"].split(", ")) == allowed.split(", ")


@pytest.mark.parametrize(
    ("body", "parameter", "words"),
    [
        ({"task": "nope"}, "task", "no task named 'nope'"),
        ({}, "task", "task is required"),
        ({"task": "add", "args": [1]}, "b", "missing"),
        ({"task": "add", "args": ["x", 2]}, "a", "int"),
        ({"task": "add", "args": [1, 2, 3]}, "args", "takes 2 positional"),
        ({"task": "add", "kwargs": {"c": 1}, "args": [1, 2]}, "c", "unexpected"),
        ({"task": "add", "args": [1, 2], "priority": "high"}, "priority", "integer"),
        ({"task": "add", "args": [1, 2], "priority": 2**40}, "priority", "integer"),
        ({"task": "add", "args": [1, 2], "retries": -1}, "retries", "integer"),
        ({"task": "add", "args": [1, 2], "after": -1}, "after", "seconds"),
        ({"task": "add", "args": [1, 2], "after": 1e300}, "after", "100 years"),
        ({"task": "add", "args": [1, 2], "timeout": 0}, "timeout", "> 0"),
        ({"task": "add", "args": [1, 2], "at": "tomorrow"}, "at", "ISO 8601"),
        ({"task": "add", "args": [1, 2], "at": "0001-01-01T00:00:00"}, "at", "1900"),
        ({"task": "add", "args": [1, 2], "tz": "../../etc/passwd"}, "tz", "time zone"),
        ({"task": "add", "args": [1, 2], "tz": "Mars/Olympus"}, "tz", "unknown time zone"),
        ({"task": "add", "args": [1, 2], "mode": "thread"}, "mode", "coroutine"),
        ({"task": "add", "args": [1, 2], "category": "a//b"}, "category", "category"),
        ({"task": "add", "args": [1, 2], "name": ""}, "name", "non-empty"),
        ({"task": "add", "args": {"a": 1}}, "args", "array"),
        ({"task": "add", "args": [1, 2], "shared": [1]}, "shared", "object"),
        ({"task": "add", "args": [1, 2], "colour": "red"}, "colour", "unknown field"),
        ({"task": "asyncjobs.retention"}, "task", "system task"),
        (
            {
                "task": "add",
                "args": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
            },
            "args",
            "nested",
        ),
    ],
)
async def test_a_bad_body_is_a_422_naming_the_field(
    api: Api, body: dict[str, Any], parameter: str | None, words: str
) -> None:
    error = error_of(await api.client.post("/jobs", json=body), 422)
    assert error.get("parameter") == parameter, error
    assert words in error["message"], error
    # Nothing was stored.
    assert (await api.client.get("/jobs")).json()["total"] == 0


async def test_a_body_that_is_not_json_is_refused(api: Api) -> None:
    error = error_of(
        await api.client.post(
            "/jobs", content=b"{not json", headers={"content-type": "application/json"}
        ),
        400,
    )
    assert error["type"] == "InvalidJSON"
    error = error_of(await api.client.post("/jobs", json=[1, 2]), 422)
    assert "JSON object" in error["message"]
    error = error_of(await api.client.post("/jobs", data={"task": "add"}), 415)
    assert "application/json" in error["message"]
    error = error_of(
        await api.client.post(
            "/jobs", content=b"NaN", headers={"content-type": "application/json"}
        ),
        400,
    )
    big = b'{"task": "add", "args": ["' + b"x" * (1 << 20) + b'"]}'
    error = error_of(
        await api.client.post("/jobs", content=big, headers={"content-type": "application/json"}),
        413,
    )
    assert (await api.client.get("/jobs")).json()["total"] == 0
