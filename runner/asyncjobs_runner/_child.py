"""The child side of a process execution: ``asyncjobs run TARGET``.

Reads the start line, resolves and binds the target, runs it (``asyncio.run`` only for a
coroutine function) and reports progress, logs, shared data and the outcome as protocol
lines on the real stdout, which it owns: ``print()``, writes to fd 1 by C code or
grandchildren, and stdlib logging all become log messages instead of corrupting the channel.
"""

from __future__ import annotations

import _thread
import inspect
import logging
import os
import signal
import sys
import threading
import traceback
from typing import Any

from . import protocol
from ._convert import BindError, bind, is_context_annotation, to_json
from ._target import TargetError, resolve
from .protocol import check_progress

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 130


class Channel:
    """The protocol channel: a private duplicate of the original stdout, one writer at a time."""

    def __init__(self) -> None:
        self._fd = os.dup(1)
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = protocol.encode(message)
        with self._lock:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]


class _Logger:
    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def write(self, level: str, message: str, *args: object, **data: object) -> None:
        text = str(message)
        if args:
            try:
                text = text % args
            except (TypeError, ValueError):
                text = " ".join([text, *map(str, args)])
        payload: dict[str, Any] = {}
        for key, value in data.items():
            try:
                payload[key] = to_json(value, path=key)
            except TypeError:
                payload[key] = repr(value)
        self._channel.send({"type": "log", "level": level, "message": text, "data": payload})

    def trace(self, message: str, *args: object, **data: object) -> None:
        self.write("trace", message, *args, **data)

    def debug(self, message: str, *args: object, **data: object) -> None:
        self.write("debug", message, *args, **data)

    def info(self, message: str, *args: object, **data: object) -> None:
        self.write("info", message, *args, **data)

    def warn(self, message: str, *args: object, **data: object) -> None:
        self.write("warn", message, *args, **data)

    warning = warn

    def error(self, message: str, *args: object, **data: object) -> None:
        self.write("error", message, *args, **data)

    def fatal(self, message: str, *args: object, **data: object) -> None:
        self.write("fatal", message, *args, **data)

    def panic(self, message: str, *args: object, **data: object) -> None:
        self.write("panic", message, *args, **data)


class _Shared(dict[str, Any]):
    """The job's shared data; each write is sent to the parent at once."""

    def __init__(self, data: dict[str, Any], channel: Channel) -> None:
        super().__init__(data)
        self._channel = channel

    def __setitem__(self, key: str, value: object) -> None:
        if not isinstance(key, str):
            raise TypeError(f"shared data keys must be strings, got {key!r}")
        encoded = to_json(value, path=f"shared[{key!r}]")
        super().__setitem__(key, encoded)
        self._channel.send({"type": "shared", "key": key, "value": encoded})

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._channel.send({"type": "shared", "key": key, "value": None})


class Context:
    """What a task receives as ``ctx`` in a child: the same calls as in a coroutine."""

    def __init__(self, channel: Channel, env: dict[str, str]) -> None:
        import json

        self._channel = channel
        self.job_id = env.get("JOB_ID", "")
        self.execution_id = env.get("JOB_EXECUTION_ID", "")
        self.attempt = int(env.get("JOB_ATTEMPT", "1") or 1)
        self.task = env.get("JOB_NAME", "")
        self.log = _Logger(channel)
        self.shared = _Shared(json.loads(env.get("JOB_SHARED", "{}") or "{}"), channel)
        self.last_progress: tuple[float, str] | None = None

    def progress(self, value: float, message: str = "") -> None:
        """Report progress from 0 to 100; never blocks for long.

        :raises ValueError: if ``value`` is not a number from 0 to 100
        """
        value, message = check_progress(value, message)
        self.last_progress = (value, message)
        self._channel.send({"type": "progress", "progress": value, "message": message})


class _LogHandler(logging.Handler):
    _LEVELS = ((50, "fatal"), (40, "error"), (30, "warn"), (20, "info"), (10, "debug"))

    def __init__(self, channel: Channel) -> None:
        super().__init__()
        self._channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        level = next((name for no, name in self._LEVELS if record.levelno >= no), "trace")
        data: dict[str, Any] = {"logger": record.name}
        if record.exc_info:
            data["exception"] = logging.Formatter().formatException(record.exc_info)
        try:
            self._channel.send(
                {"type": "log", "level": level, "message": record.getMessage(), "data": data}
            )
        except Exception:
            self.handleError(record)


def _capture_stdout(channel: Channel) -> threading.Thread:
    """Point fd 1 (and so print(), C code and grandchildren) at a pipe whose lines become
    info logs; return the thread that forwards them."""
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 1)
    os.close(write_fd)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    def forward() -> None:
        with os.fdopen(read_fd, "rb") as pipe:
            for raw in pipe:
                text = raw.rstrip(b"\n")[: protocol.MAX_LINE_BYTES].decode(errors="replace")
                channel.send({"type": "log", "level": "info", "message": text, "data": {}})

    thread = threading.Thread(target=forward, name="asyncjobs stdout", daemon=True)
    thread.start()
    return thread


class _StdinLines:
    """Lines from fd 0, read with os.read: one reader for the start line and what follows
    (a buffered reader could swallow a cancel with the start line), and nothing for the
    interpreter to lock at exit while a thread still waits on it."""

    def __init__(self) -> None:
        self._buffer = b""

    def __iter__(self) -> _StdinLines:
        return self

    def __next__(self) -> bytes:
        while b"\n" not in self._buffer:
            chunk = os.read(0, 65536)
            if not chunk:
                if self._buffer:
                    line, self._buffer = self._buffer, b""
                    return line
                raise StopIteration
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line


def _watch_stdin(lines: _StdinLines, cancelled: threading.Event) -> None:
    """Read the parent's later messages: ``cancel`` interrupts the task; end of input means
    the parent died, and then this child takes its whole process group down with it."""
    import json

    for raw in lines:
        try:
            message = json.loads(raw)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("type") == "cancel":
            cancelled.set()
            _thread.interrupt_main()
    if not cancelled.is_set() and os.getpgrp() == os.getpid():
        # Only as the leader of a group of our own (the parent starts us in a new session):
        # run by hand from a shell, the group is the shell's.
        os.killpg(os.getpgrp(), signal.SIGKILL)


def _error(exc: BaseException) -> dict[str, Any]:
    return {
        "type": "error",
        "error_type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


def main(argv: list[str]) -> int:
    """Run one execution; return the exit code (see PROTOCOL.md)."""
    import json

    if len(argv) != 1:
        sys.stderr.write("usage: asyncjobs run TARGET  (the start line comes on stdin)\n")
        return EXIT_USAGE
    channel = Channel()
    forwarder = _capture_stdout(channel)
    root = logging.getLogger()
    root.addHandler(_LogHandler(channel))
    root.setLevel(logging.INFO)
    ctx = Context(channel, dict(os.environ))
    lines = _StdinLines()
    try:
        start: Any = json.loads(next(lines, b"{}") or b"{}")
    except ValueError:
        start = None
    cancelled = threading.Event()
    threading.Thread(
        target=_watch_stdin, args=(lines, cancelled), name="asyncjobs stdin", daemon=True
    ).start()
    code = EXIT_OK
    outcome: dict[str, Any]
    try:
        if not isinstance(start, dict) or start.get("type") != "start":
            raise ValueError(f"expected a start message on stdin, got {start!r}")
        fn = resolve(argv[0])
        args, kwargs = bind(
            fn,
            start.get("args") or [],
            start.get("kwargs") or {},
            is_injected=is_context_annotation,
            injected=ctx,
        )
        if inspect.iscoroutinefunction(fn):
            import asyncio

            result = asyncio.run(fn(*args, **kwargs))
        else:
            result = fn(*args, **kwargs)
        outcome = {"type": "result", "value": to_json(result, path="result")}
    except KeyboardInterrupt as exc:
        code = EXIT_CANCELLED
        outcome = _error(exc) | {"error_type": "ExecutionCancelled", "message": "cancelled"}
    except (TargetError, BindError) as exc:
        code = EXIT_USAGE
        outcome = _error(exc)
    except TypeError as exc:
        code = EXIT_FAILED
        outcome = _error(exc)
    except Exception as exc:
        code = EXIT_FAILED
        outcome = _error(exc)
    # Everything printed before the outcome is logged before it.
    sys.stdout.flush()
    os.close(1)
    forwarder.join(timeout=5)
    channel.send(outcome)
    return code
