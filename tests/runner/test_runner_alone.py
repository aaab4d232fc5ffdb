"""The runner works alone: copied into an environment that has no asyncjobs at all."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

TASK = """
import sys
from asyncjobs_runner import Context

def work(ctx: Context, n: int) -> dict:
    ctx.progress(10, "started")
    ctx.log.info("working on %d", n)
    ctx.shared["seen"] = n
    print("a plain print")
    return {"n": n + 1, "asyncjobs_loaded": "asyncjobs" in sys.modules,
            "asyncio_loaded": "asyncio" in sys.modules, "attempt": ctx.attempt}
"""


def test_a_copied_runner_runs_a_task_without_asyncjobs(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "runner" / "asyncjobs_runner", tmp_path / "asyncjobs_runner")
    (tmp_path / "standalone.py").write_text(TASK)
    start = json.dumps({"type": "start", "target": "standalone:work", "args": [41]})
    # -S: no site-packages, so neither asyncjobs nor anything third-party is importable.
    result = subprocess.run(
        [sys.executable, "-S", "-m", "asyncjobs_runner", "run", "standalone:work"],
        input=start + "\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "JOB_ATTEMPT": "2", "JOB_SHARED": '{"a": 1}'},
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    messages = [json.loads(line) for line in result.stdout.splitlines()]
    assert messages[-1] == {
        "type": "result",
        "value": {"n": 42, "asyncjobs_loaded": False, "asyncio_loaded": False, "attempt": 2},
    }
    kinds = {(m["type"], m.get("message") or m.get("key")) for m in messages[:-1]}
    assert kinds == {
        ("progress", "started"),
        ("log", "working on 41"),
        ("shared", "seen"),
        ("log", "a plain print"),
    }


def test_a_target_that_does_not_exist_exits_2_with_an_error_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "asyncjobs_runner", "run", "no_such_module:f"],
        input='{"type": "start"}\n',
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    error = json.loads(result.stdout.splitlines()[-1])
    assert error["type"] == "error" and error["error_type"] == "TargetError"
    assert "cannot import 'no_such_module'" in error["message"]
