"""``asyncjobs serve``: the HTTP API over a store that a worker serves, as a real process."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx

from tests.cli.helpers import ROOT, env, ok_json, user_error


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_answers_queries_about_what_the_worker_ran(store: str) -> None:
    created = ok_json("enqueue", "add", "--args", "[4, 5]", store=store)
    execution_id = created["execution"]["id"]
    ok_json("wait", execution_id, store=store)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "asyncjobs", "serve", "--store", store, "--port", str(port)],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            while True:
                try:
                    response = client.get(f"/executions/{execution_id}")
                    break
                except httpx.TransportError:
                    assert server.poll() is None, "asyncjobs serve exited early"
                    assert time.monotonic() < deadline, "asyncjobs serve did not listen"
                    time.sleep(0.1)
            assert response.status_code == 200
            assert response.json()["result"] == 9
            jobs = client.get("/jobs", params={"page_size": 100}).json()
            assert created["job"]["id"] in [job["id"] for job in jobs["items"]]
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=15)
        assert "Traceback" not in stderr, stderr
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


def test_serve_refuses_a_public_address_without_a_token(store: str) -> None:
    message = user_error("serve", "--host", "0.0.0.0", store=store)
    assert "token" in message
