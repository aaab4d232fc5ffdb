"""Safe by default: the token on every route, the Host allowlist, Origin, CORS, no secret logged."""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

import anyio
import httpx
import pytest

import asyncjobs as aj
from asyncjobs.http import asgi_app, serve, serve_async

from .conftest import make_runtime, served

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import Api

pytestmark = pytest.mark.anyio

MISSING = "01a2117e-fc31-7000-8058-3aa21bffbb10"


async def every_operation(api: Api) -> list[tuple[str, str]]:
    """(method, path) of every operation the OpenAPI document lists, ids filled in."""
    document = (await api.client.get("/openapi.json")).json()
    operations = []
    for path, item in document["paths"].items():
        for method in item:
            if method != "parameters":
                filled = path.replace("{job_id}", MISSING).replace("{execution_id}", MISSING)
                operations.append((method.upper(), filled))
    return operations


async def test_every_route_refuses_a_missing_or_wrong_token(api: Api) -> None:
    operations = await every_operation(api)
    assert len(operations) == 20
    assert ("GET", "/openapi.json") in operations and ("GET", "/events") in operations
    wrong = api.token[:-1] + ("A" if api.token[-1] != "A" else "B")
    async with api.anonymous(timeout=10) as anonymous:
        for method, path in operations:
            for headers in (
                {},
                {"Authorization": f"Bearer {wrong}"},
                {"Authorization": f"Basic {api.token}"},
                {"Authorization": api.token},
            ):
                r = await anonymous.request(method, path, headers=headers)
                assert r.status_code == 401, (method, path, headers, r.text)
                assert r.headers["www-authenticate"].startswith("Bearer")
                assert r.json()["error"]["type"] == "Unauthorized"
                assert wrong not in r.text and api.token not in r.text
            # The scheme's case does not matter (RFC 7235); the token's does.
            # (Streamed: /events would not end.)
            headers = {"Authorization": f"bearer {api.token}"}
            async with anonymous.stream(method, path, headers=headers) as r:
                assert r.status_code != 401, (method, path)


async def test_the_token_opens_the_event_streams(api: Api) -> None:
    job = await api.create("add", args=[1, 2])
    await api.wait_ended(job["execution_id"])
    path = f"/executions/{job['execution_id']}/events"
    async with api.anonymous(timeout=10) as anonymous:
        r = await anonymous.get(path)
        assert r.status_code == 401
    async with api.client.stream("GET", path) as stream:
        assert stream.status_code == 200
        text = (await stream.aread()).decode()
    assert "event: state" in text


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:80", "127.0.0.2", "localhost.evil.example", "[::2]"]
)
async def test_a_foreign_host_header_is_refused_even_with_the_token(api: Api, host: str) -> None:
    for path in ("/jobs", "/openapi.json", "/events"):
        r = await api.client.get(path, headers={"Host": host})
        assert r.status_code == 403, (host, path)
        error = r.json()["error"]
        assert error["type"] == "ForbiddenHost"
        assert "127.0.0.1" in error["message"]


async def test_loopback_host_names_are_allowed(api: Api) -> None:
    port = api.url.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST"):
        r = await api.client.get("/jobs", headers={"Host": host})
        assert r.status_code == 200, host


async def test_a_command_from_a_foreign_origin_is_refused_and_no_cors_is_sent(api: Api) -> None:
    job = await api.create("add", args=[1, 2], after=3600)
    evil = {"Origin": "http://evil.example"}
    # A web page's form post (CSRF): refused before it reaches the route.
    r = await api.client.post(f"/jobs/{job['id']}/stop", headers=evil)
    assert r.status_code == 403 and r.json()["error"]["type"] == "ForbiddenOrigin"
    r = await api.client.post("/jobs", json={"task": "add", "args": [1, 2]}, headers=evil)
    assert r.status_code == 403
    assert (await api.client.get(f"/jobs/{job['id']}")).json()["status"] == "active"
    # Reads work, but without CORS headers a browser will not show them to the page.
    r = await api.client.get("/jobs", headers=evil)
    assert r.status_code == 200
    assert not any(name.startswith("access-control-") for name in r.headers)
    # The API's own origin may post.
    r = await api.client.post(f"/jobs/{job['id']}/pause", headers={"Origin": api.url})
    assert r.status_code == 200 and r.json()["status"] == "paused"


async def test_cors_only_for_the_configured_origins(tmp_path: Path, token: str) -> None:
    gate_send, gate_receive = anyio.create_memory_object_stream[None](1)
    rt = make_runtime(f"sqlite:///{tmp_path}/cors.db", gate_receive)
    app_origin = "http://app.example:3000"
    with gate_send, gate_receive:
        async with (
            served(rt, token=token, cors_origins=[app_origin]) as url,
            httpx.AsyncClient(base_url=url, timeout=10) as client,
        ):
            auth = {"Authorization": f"Bearer {token}"}
            preflight = {
                "Origin": app_origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            }
            # Preflights carry no credentials, by design: answered before the token check.
            r = await client.options("/jobs", headers=preflight)
            assert r.status_code == 200
            assert r.headers["access-control-allow-origin"] == app_origin
            assert "POST" in r.headers["access-control-allow-methods"]
            r = await client.options(
                "/jobs", headers={**preflight, "Origin": "http://evil.example"}
            )
            assert r.status_code == 400
            assert "access-control-allow-origin" not in r.headers

            r = await client.post(
                "/jobs",
                json={"task": "add", "args": [1, 2]},
                headers={**auth, "Origin": app_origin},
            )
            assert r.status_code == 201
            assert r.headers["access-control-allow-origin"] == app_origin
            r = await client.get("/jobs", headers={"Origin": app_origin})
            assert r.status_code == 401  # CORS is not authentication
            r = await client.get("/jobs", headers={**auth, "Origin": "http://evil.example"})
            assert "access-control-allow-origin" not in r.headers


async def test_tokens_never_appear_in_logs(
    tmp_path: Path, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gate_send, gate_receive = anyio.create_memory_object_stream[None](1)
    rt = make_runtime(f"sqlite:///{tmp_path}/logs.db", gate_receive)
    wrong = secrets.token_urlsafe(24)
    with gate_send, gate_receive:
        # "trace" makes uvicorn log every request and connection event it has.
        async with (
            served(rt, token=token, log_level="trace") as url,
            httpx.AsyncClient(base_url=url, timeout=10) as client,
        ):
            auth = {"Authorization": f"Bearer {token}"}
            r = await client.post("/jobs", json={"task": "add", "args": [1, 2]}, headers=auth)
            assert r.status_code == 201
            r = await client.get("/executions", params={"job_id": r.json()["id"]}, headers=auth)
            execution_id = r.json()["items"][0]["id"]
            with anyio.fail_after(10):
                while not (await rt.executions.get(execution_id)).is_terminal:
                    await rt._changes_wait(rt._changes_arm(execution_id))
            async with client.stream(
                "GET", f"/executions/{execution_id}/events", headers=auth
            ) as stream:
                await stream.aread()
            for headers in ({"Authorization": f"Bearer {wrong}"}, {"Authorization": wrong}):
                assert (await client.get("/jobs", headers=headers)).status_code == 401
    assert "GET /jobs" in caplog.text  # the access log was captured...
    assert token not in caplog.text  # ...and holds neither token
    assert wrong not in caplog.text


async def test_bad_tokens_are_refused_without_quoting_them(tmp_path: Path) -> None:
    rt = aj.Runtime("memory://", system_jobs=False)
    for bad, words in (
        ("short", "16 to 4096 characters, got 5"),
        ("a token with spaces in it", "visible ASCII"),
        ("é" * 20, "visible ASCII"),
    ):
        with pytest.raises(ValueError, match=words) as caught:
            asgi_app(rt, token=bad)
        assert bad not in str(caught.value)
    with pytest.raises(ValueError, match="allowed_hosts"):
        asgi_app(rt, allowed_hosts="localhost")
    with pytest.raises(ValueError, match="cors_origins"):
        asgi_app(rt, cors_origins=["app.example/path"])


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.0.2.10", "example.org"])
async def test_serving_beyond_loopback_needs_a_token(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ASYNCJOBS_TOKEN", raising=False)
    rt = aj.Runtime("memory://", system_jobs=False)
    with pytest.raises(ValueError, match=f"refusing to serve on {host!r} without a token"):
        serve(rt, host=host, port=0)
    with pytest.raises(ValueError, match="without a token"):
        await serve_async(rt, host=host, port=0)
    assert rt._store is None  # nothing was started
