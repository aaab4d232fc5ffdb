"""The parent side of process mode: spawn a child, speak protocol v1 with it, stop it for real.

A child runs in a session of its own, so that a cancel or timeout reaches its whole process
group (grandchildren included): ``cancel`` on stdin, ``kill_grace`` seconds, SIGTERM to the
group, ``term_grace`` seconds, SIGKILL. Its stdout and stderr are drained continuously and
every line is bounded, so a child can neither block on a full pipe nor make the parent hold
more than a line's worth of its output.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from asyncjobs_runner import protocol
from asyncjobs_runner.protocol import check_progress

from .._models import ErrorInfo
from .._states import LogLevel

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from anyio.abc import ByteReceiveStream, Process

    from .._context import Context
    from .._models import StepSpec
    from .._tasks import ProcessLimits
    from .writer import Writer

# Variables a child inherits from the runtime; nothing else does (no store URL, no token, no
# cloud credentials). Locale and time-zone variables are matched by prefix.
ENV_ALLOWLIST = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TZ", "TMPDIR", "TEMP", "TMP",
     "VIRTUAL_ENV", "SYSTEMROOT", "PYTHONUTF8", "PYTHONIOENCODING", "PYTHONDONTWRITEBYTECODE"}
)  # fmt: skip
MAX_ENV_VALUE = 100_000  # one variable of 128 KiB already makes exec fail with E2BIG


@dataclass(slots=True)
class ChildOutcome:
    """What a child's run came to, before retries and hooks."""

    result: Any = None
    error: ErrorInfo | None = None


class _Violation(Exception):
    """A child went past a limit or broke the protocol: fails the execution at its end."""


def child_env(ctx: Context, spec: StepSpec, extra: dict[str, str] | None) -> dict[str, str]:
    """Return the environment of a child: the allowlist, ``JOB_*``, then ``extra``.

    :raises ValueError: naming the variable, if one is too large to pass to exec
    """
    env = {k: v for k, v in os.environ.items() if k in ENV_ALLOWLIST or k.startswith("LC_")}
    # The child must import what this process imports: give it our module search path.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    shared = dict(ctx.shared)
    env.update(
        {
            "JOB_ID": ctx.job_id,
            "JOB_EXECUTION_ID": ctx.execution_id,
            "JOB_ATTEMPT": str(ctx.attempt),
            "JOB_NAME": spec.task,
            "JOB_SHARED": protocol.shared_env_value(shared),
        }
    )
    for key, value in shared.items():
        env[protocol.shared_env_name(key)] = protocol.shared_env_value(value)
    env.update(extra or {})
    for name, value in env.items():
        if len(name) + len(value) > MAX_ENV_VALUE:
            raise ValueError(
                f"environment variable {name} is {len(value)} bytes, more than exec accepts "
                f"({MAX_ENV_VALUE}); keep large data out of shared data or arguments"
            )
    return env


async def run_child(
    argv: list[str],
    *,
    ctx: Context,
    spec: StepSpec,
    writer: Writer,
    run: int,
    limits: ProcessLimits,
    start: dict[str, Any] | None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    on_spawn: Callable[[int, str | None], Awaitable[None]] | None = None,
) -> ChildOutcome:
    """Run one child to its end and return its outcome.

    ``start`` is the start message for a Python child (``None`` for a plain command, whose
    stdin is closed at once). Cancelling the caller runs the cancel ladder, shielded, and then
    re-raises: the child and its group are gone when this returns or raises.
    """
    process = await anyio.open_process(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(ctx, spec, env),
        cwd=cwd,
        start_new_session=True,
    )
    state = _ChildState(ctx=ctx, writer=writer, run=run, limits=limits)
    try:
        if on_spawn is not None:
            started = await anyio.to_thread.run_sync(process_started, process.pid)
            await on_spawn(process.pid, started)
        assert process.stdin is not None
        if start is not None:
            await process.stdin.send(protocol.encode(start))
        else:
            await process.stdin.aclose()
        assert process.stdout is not None and process.stderr is not None
        stdout, stderr = process.stdout, process.stderr

        async def watch_stdout() -> None:
            await _read_lines(stdout, limits.max_line_bytes, state.on_stdout)
            # Its stdout is closed: a child that does not exit now can report nothing more.
            with anyio.move_on_after(limits.kill_grace):
                await process.wait()
            if process.returncode is None:
                state.violation = (
                    "the child closed its stdout but kept running; it was stopped "
                    f"after kill_grace={limits.kill_grace:g}s"
                )
                await stop_child(process, limits, polite=False)

        async with anyio.create_task_group() as tg:
            tg.start_soon(_read_lines, stderr, limits.max_line_bytes, state.on_stderr)
            tg.start_soon(watch_stdout)
            await process.wait()
            # The child is gone, and its group goes with it: no grandchild outlives the
            # execution or holds our pipes open.
            _kill_group(process.pid, signal.SIGKILL)
            # What is left in the pipes is drained; a descendant that escaped the group
            # (a new session of its own) cannot keep us here.
            tg.cancel_scope.deadline = anyio.current_time() + 5
    except BaseException:
        with anyio.CancelScope(shield=True):
            await stop_child(process, limits, polite=start is not None)
        raise
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                # The ladder was cut short: a native cancel (task.cancel(), as a stop gives
                # what outlives its wait) goes through any shield. aclose() waits for the
                # child, so the child must die first, or both outlive us.
                _kill_group(process.pid, signal.SIGKILL)
            await process.aclose()
    return state.outcome(process.returncode)


async def stop_child(process: Process, limits: ProcessLimits, *, polite: bool) -> None:
    """The cancel ladder: ``cancel`` on stdin, grace, SIGTERM to the group, grace, SIGKILL."""
    if process.returncode is None and polite and process.stdin is not None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await process.stdin.send(protocol.encode({"type": "cancel"}))
        with anyio.move_on_after(limits.kill_grace):
            await process.wait()
    for sig, grace in ((signal.SIGTERM, limits.term_grace), (signal.SIGKILL, 5.0)):
        if process.returncode is not None:
            break
        _kill_group(process.pid, sig)
        with anyio.move_on_after(grace):
            await process.wait()
    # Grandchildren may outlive a child that exited by itself: the group goes too.
    _kill_group(process.pid, signal.SIGKILL)


def process_started(pid: int) -> str | None:
    """Return when ``pid`` started (clock ticks since boot, from /proc), or ``None`` where
    there is no /proc: with the pid, it names one process even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def kill_leftover(pid: int, started: str | None) -> bool:
    """Kill the process group a dead node's child left, if that child is still the same
    process; return whether it was."""
    if started is None or process_started(pid) != started:
        return False
    _kill_group(pid, signal.SIGKILL)
    return True


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _read_lines(stream: ByteReceiveStream, max_line: int, on_line: Any) -> None:
    """Call ``on_line(line, oversize)`` per line; drain without limit, keep at most
    ``max_line`` bytes of any line (``oversize`` says the rest was discarded)."""
    pending = bytearray()
    oversize = False
    while True:
        try:
            chunk = await stream.receive(65536)
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            break
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                room = max_line - len(pending)
                piece = chunk[start:]
                if len(piece) > room:
                    pending += piece[: max(room, 0)]
                    oversize = True
                else:
                    pending += piece
                break
            piece = chunk[start:end]
            room = max_line - len(pending)
            if len(piece) > room:
                pending += piece[: max(room, 0)]
                oversize = True
            else:
                pending += piece
            on_line(bytes(pending), oversize)
            pending.clear()
            oversize = False
            start = end + 1
    if pending or oversize:
        on_line(bytes(pending), oversize)


@dataclass(slots=True, kw_only=True)
class _ChildState:
    ctx: Context
    writer: Writer
    run: int
    limits: ProcessLimits
    result: Any = None
    has_result: bool = False
    error: ErrorInfo | None = None
    violation: str | None = None
    logs: int = 0
    dropped: int = 0
    stderr_tail: deque[bytes] | None = None
    stderr_bytes: int = 0

    def _log(self, level: LogLevel, message: str, data: dict[str, Any] | None = None) -> None:
        self.logs += 1
        if self.logs > self.limits.max_log_lines:
            self.dropped += 1
            if self.violation is None:
                self.violation = (
                    f"the child wrote more than {self.limits.max_log_lines} log lines "
                    "(max_log_lines); the rest were dropped"
                )
            return
        self.writer.log(self.ctx.execution_id, self.ctx.job_id, level, message, data or {})

    def on_stdout(self, line: bytes, oversize: bool) -> None:
        if oversize:
            if self.violation is None:
                self.violation = (
                    f"the child wrote a stdout line longer than {self.limits.max_line_bytes} "
                    "bytes (max_line_bytes); it was cut"
                )
            self._log(LogLevel.ERROR, f"a {self.limits.max_line_bytes}+ byte line was discarded")
            return
        message = protocol.decode(line)
        if message is None:
            self._log(LogLevel.INFO, line.decode(errors="replace"))
            return
        try:
            self._handle(message)
        except (TypeError, ValueError, KeyError) as exc:
            if self.violation is None:
                self.violation = (
                    f"the child sent a malformed {message.get('type')!r} message: {exc}"
                )

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "progress":
            value, text = check_progress(message.get("progress"), message.get("message", ""))
            self.ctx.last_progress = (value, text)
            self.writer.progress(self.ctx.execution_id, self.run, value, text)
        elif kind == "log":
            level = LogLevel.parse(message.get("level", "info"))
            data = message.get("data") or {}
            if not isinstance(data, dict):
                raise TypeError(f"log data must be an object, got {data!r}")
            self._log(level, str(message.get("message", "")), data)
        elif kind == "shared":
            key = message["key"]
            if not isinstance(key, str):
                raise TypeError(f"a shared key must be a string, got {key!r}")
            self.ctx.shared[key] = message.get("value")
        elif kind == "result":
            self.result, self.has_result = message.get("value"), True
        elif kind == "error":
            self.error = ErrorInfo(
                type=str(message.get("error_type") or "Error"),
                message=str(message.get("message", "")),
                traceback=str(message.get("traceback", "")),
            )

    def on_stderr(self, line: bytes, oversize: bool) -> None:
        if self.stderr_tail is None:
            self.stderr_tail = deque()
        self.stderr_tail.append(line)
        self.stderr_bytes += len(line) + 1
        while self.stderr_bytes > self.limits.stderr_tail_bytes and len(self.stderr_tail) > 1:
            self.stderr_bytes -= len(self.stderr_tail.popleft()) + 1
        self._log(LogLevel.ERROR, line.decode(errors="replace") + (" [cut]" if oversize else ""))

    def tail(self) -> str:
        text = b"\n".join(self.stderr_tail or ()).decode(errors="replace")
        return text[-self.limits.stderr_tail_bytes :]

    def outcome(self, returncode: int | None) -> ChildOutcome:
        if self.dropped:
            self.writer.log(
                self.ctx.execution_id,
                self.ctx.job_id,
                LogLevel.WARN,
                f"{self.dropped} log lines dropped past max_log_lines={self.limits.max_log_lines}",
                {"dropped": self.dropped},
            )
        if self.violation is not None:
            return ChildOutcome(error=ErrorInfo(type="ProtocolError", message=self.violation))
        if self.error is not None:
            return ChildOutcome(error=self.error)
        if returncode == 0:
            return ChildOutcome(result=self.result if self.has_result else None)
        if returncode is not None and returncode < 0:
            try:
                name = signal.Signals(-returncode).name
            except ValueError:
                name = f"signal {-returncode}"
            what = f"the child was killed by {name}"
        else:
            what = f"the child exited with code {returncode}"
        tail = self.tail()
        message = f"{what} before sending a result" + (
            f"; stderr ends with:\n{tail}" if tail else ""
        )
        return ChildOutcome(error=ErrorInfo(type="ProcessExited", message=message, traceback=tail))
