"""Every example runs: scripts as real subprocesses, the notebook on a real Jupyter kernel.

Each script's docstring ends its "You should see" paragraph with an indented block of lines;
the test reads those lines from the docstring itself and checks the script printed each one,
so the documentation and the behaviour cannot drift apart.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py"))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "runner")])
    env.pop("ASYNCJOBS_STORE", None)
    return env


def expected_lines(script: Path) -> list[str]:
    """Return the indented lines after "You should see...::" in the script's docstring."""
    docstring = ast.get_docstring(ast.parse(script.read_text())) or ""
    found = re.search(r"You should see[^\n]*::\n\n((?:    [^\n]*\n?)+)", docstring)
    assert found is not None, f"{script.name}: no 'You should see ...::' block in its docstring"
    return [line.strip() for line in found.group(1).splitlines() if line.strip()]


def test_there_is_an_example_for_each_topic() -> None:
    assert set(SCRIPTS) >= {
        "quickstart.py",
        "process_isolation.py",
        "commands.py",
        "cron_and_daemons.py",
        "web_starlette.py",
        "two_workers_postgres.py",
    }
    assert (EXAMPLES / "notebook.ipynb").is_file()


@pytest.mark.parametrize("name", SCRIPTS)
def test_example_script_prints_what_its_docstring_promises(
    name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    script = EXAMPLES / name
    docstring = ast.get_docstring(ast.parse(script.read_text())) or ""
    assert f"python examples/{name}" in docstring, "the docstring says how to run it"
    args = []
    if name == "two_workers_postgres.py":  # it takes a database: the tests' throwaway server
        args.append(request.getfixturevalue("pg_server").url())
    result = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=tmp_path,  # an example leaves no file behind where it is run
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for line in expected_lines(script):
        assert line in result.stdout, f"{name} did not print {line!r}:\n{result.stdout}"
    assert list(tmp_path.iterdir()) == []


def test_expected_lines_are_read_from_the_docstring(tmp_path: Path) -> None:
    script = tmp_path / "x.py"
    script.write_text('"""Shows x.\n\nYou should see::\n\n    one\n    two\n\nMore.\n"""\n')
    assert expected_lines(script) == ["one", "two"]
    script.write_text('"""Shows nothing to check."""\n')
    with pytest.raises(AssertionError, match=r"x\.py: no 'You should see"):
        expected_lines(script)


# -- the notebook -------------------------------------------------------------------------


SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGCHLD")
PROBE = (
    "import signal as _s\n"
    f"print('signal handlers:', [repr(_s.getsignal(getattr(_s, n))) for n in {SIGNALS!r}])"
)
KERNEL = "asyncjobs-test-python"


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kernelspec for this very interpreter, and Jupyter's files kept under ``tmp_path``.

    Works in a fresh clone, as root, with no display and no Jupyter configuration: the spec
    is written here rather than relying on whichever ``python3`` kernel a machine has.
    """
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    for name, value in {
        "JUPYTER_PATH": str(tmp_path / "jupyter"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "PYTHONPATH": _env()["PYTHONPATH"],
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ASYNCJOBS_STORE", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    return work


def execute_notebook(work: Path) -> tuple[Any, int]:
    """Run examples/notebook.ipynb top to bottom; return it with outputs, and the number of
    in-place display updates the kernel sent."""
    import nbformat
    from nbclient import NotebookClient

    # nbformat is not fully typed: its two functions are used through Any.
    read: Any = nbformat.read
    new_code_cell: Any = nbformat.v4.new_code_cell
    notebook: Any = read(EXAMPLES / "notebook.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells), "commit it without outputs"
    # Probes of the kernel's signal handlers: before the runtime starts, while it runs, and
    # after it has stopped.
    started = next(i for i, c in enumerate(notebook.cells) if "await rt.start()" in c.source)
    notebook.cells.insert(started + 1, new_code_cell(PROBE))
    notebook.cells.insert(0, new_code_cell(PROBE))
    notebook.cells.append(new_code_cell(PROBE))

    class Client(NotebookClient):
        updates = 0

        def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
            if msg["header"]["msg_type"] == "update_display_data":
                Client.updates += 1
            return super().process_message(msg, cell, cell_index)

    client = Client(
        notebook, timeout=60, kernel_name=KERNEL, resources={"metadata": {"path": str(work)}}
    )
    client.execute()
    return notebook, Client.updates


def outputs_of(notebook: Any, first_line: str) -> list[dict[str, Any]]:
    for cell in notebook.cells:
        if cell.cell_type == "code" and cell.source.startswith(first_line):
            return list(cell.outputs)
    raise AssertionError(f"no cell starts with {first_line!r}")


def html_of(outputs: list[dict[str, Any]]) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in outputs)


def text_of(outputs: list[dict[str, Any]]) -> str:
    return "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")


def test_the_notebook_runs_top_to_bottom_on_a_real_kernel(kernel_env: Path) -> None:
    notebook, updates = execute_notebook(kernel_env)
    errors = [
        o for cell in notebook.cells for o in cell.get("outputs", []) if o["output_type"] == "error"
    ]
    assert errors == []

    # The live view: one output, updated in place while the job ran, ending completed.
    watched = outputs_of(notebook, "job = await rt.once(train")
    assert [o["output_type"] for o in watched] == ["display_data"]
    assert updates >= 2
    live = html_of(watched)
    assert ">completed</span>" in live
    assert 'aria-valuenow="100"' in live and "width: 100%" in live
    assert "epoch 10/10" in live

    execution = html_of(outputs_of(notebook, "execution = await job.wait()"))
    assert 'class="asyncjobs-execution"' in execution and ">completed</span>" in execution
    assert "result: <code>{&quot;loss&quot;: 0.1074}</code>" in execution

    logs = html_of(outputs_of(notebook, "logs = await rt.logs.list("))
    assert 'class="asyncjobs-table"' in logs
    assert logs.count('<tr class="asyncjobs-log">') == 10
    assert "epoch 10 done" in logs and "page 1 of 1, 10 in all" in logs

    failed = html_of(outputs_of(notebook, "@rt.task\nasync def load("))
    assert ">failed</span>" in failed
    assert "<b>FileNotFoundError</b>: no such file: &#x27;data/2024.csv&#x27;" in failed

    listed = html_of(outputs_of(notebook, "await broken.executions()"))  # a plain list
    assert listed.count('<tr class="asyncjobs-execution">') == 1 and ">failed</span>" in listed

    refusal = text_of(outputs_of(notebook, "def crunch("))
    for task in ("crunch", "train"):  # at registration, and when a job asks for process mode
        assert (
            f"task '__main__:{task}': {task} is defined in a notebook cell or an interactive "
            "session: a child process cannot import it; put it in a module (a .py file) and "
            "import it"
        ) in refusal

    assert "stopped:" in text_of(outputs_of(notebook, "await rt.stop()"))

    # No signal handler was left behind in a loop the runtime does not own.
    probes = [text_of(c.outputs) for c in notebook.cells if c.source == PROBE]
    assert len(probes) == 3
    assert probes[0].startswith("signal handlers:")
    assert probes[1] == probes[0] and probes[2] == probes[0]
    assert list(kernel_env.iterdir()) == []
