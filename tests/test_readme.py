from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "runner")])
    env.pop("ASYNCJOBS_STORE", None)
    return env


def test_readme_starts_with_exactly_two_commands() -> None:
    first_block = re.search(r"```bash\n(.*?)```", README, re.DOTALL)
    assert first_block is not None
    commands = [line for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == [
        "python3 -m pip install . && asyncjobs demo",
        'python3 -m pip install -e ".[dev]" && just test',
    ]
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci


def test_every_python_snippet_in_the_readme_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.DOTALL)
    assert blocks
    output = ""
    for index, block in enumerate(blocks):
        script = tmp_path / f"snippet_{index}.py"
        script.write_text(block)
        result = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        output += result.stdout
    assert "200\n" in output
    assert "completed 42" in output
    assert "['scheduled', 'queued', 'running', 'completed']" in output
    assert "{'runs': 3}" in output
    assert "['health check', 'retention cleanup']" in output


def test_the_demo_runs_on_the_sqlite_default(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "asyncjobs", "demo"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "asyncjobs.db").exists()
    assert "third time lucky" in result.stdout
    assert "FileNotFoundError" in result.stdout
    assert "queued -> running -> retrying -> queued -> running" in result.stdout
