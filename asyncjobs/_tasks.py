"""Registered tasks: a function plus the defaults its jobs run with."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

from asyncjobs_runner._convert import BindError, bind, is_context_annotation, to_json
from asyncjobs_runner._target import TargetError, target_of

from ._backoff import Backoff, as_backoff
from ._context import Context
from ._errors import InvalidArguments, UnknownTask
from ._types import JSON, MODES, WORKER_LOST_POLICIES, as_seconds, check_int

if TYPE_CHECKING:
    from datetime import timedelta

    from ._models import StepSpec

Hook = Callable[..., Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessLimits:
    """Bounds on what one process child may send, and the grace periods of its cancel ladder.

    :param max_line_bytes: one stdout or stderr line; the rest is discarded, the execution fails
    :param max_log_lines: log lines kept per execution; past it they are dropped and it fails
    :param stderr_tail_bytes: how much of the end of stderr a failed child's error quotes
    :param kill_grace: seconds between ``cancel`` on stdin and SIGTERM to the process group
    :param term_grace: seconds between SIGTERM and SIGKILL
    """

    max_line_bytes: int = 1024 * 1024
    max_log_lines: int = 100_000
    stderr_tail_bytes: int = 8192
    kill_grace: float = 5.0
    term_grace: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_line_bytes", "max_log_lines", "stderr_tail_bytes"):
            check_int(name, getattr(self, name), minimum=1)
        for name in ("kill_grace", "term_grace"):
            # Kept as float seconds: a timedelta is accepted, and the ladder adds them up.
            object.__setattr__(self, name, as_seconds(getattr(self, name), name=name))


@dataclass(frozen=True, slots=True)
class Command:
    """A job step that runs an executable (never through a shell) as a process execution.

    It gets the ``JOB_*`` environment plus ``env``; protocol lines on its stdout are acted on,
    other stdout lines become info logs and stderr lines error logs. Exit 0 completes.
    """

    argv: Sequence[str]
    env: Mapping[str, str] | None = field(default=None, kw_only=True)
    cwd: str | None = field(default=None, kw_only=True)
    timeout: float | timedelta | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if (
            isinstance(self.argv, str)
            or not isinstance(self.argv, Sequence)
            or not self.argv
            or not all(isinstance(a, str) for a in self.argv)
        ):
            raise ValueError(
                f"a command is a non-empty list of strings (no shell), got {self.argv!r}"
            )
        if not self.argv[0]:
            raise ValueError(
                f"a command's program (argv[0]) must be a non-empty string, got {self.argv!r}"
            )
        for index, arg in enumerate(self.argv):
            if "\0" in arg:
                raise ValueError(
                    f"a command's argv[{index}] must not contain a NUL character, got {arg!r}"
                )
        if self.env is not None:
            if not isinstance(self.env, Mapping):
                raise ValueError(f"a command's env maps strings to strings, got {self.env!r}")
            for key, value in self.env.items():
                if not isinstance(key, str) or not isinstance(value, str):
                    raise ValueError(
                        f"a command's env maps strings to strings, got {key!r}: {value!r}"
                    )
                if not key or "=" in key or "\0" in key:
                    raise ValueError(
                        f"a command's env names must be non-empty, without '=' or NUL, got {key!r}"
                    )
                if "\0" in value:
                    raise ValueError(
                        f"a command's env value of {key!r} must not contain a NUL character, "
                        f"got {value!r}"
                    )
        if self.cwd is not None and (
            not isinstance(self.cwd, str) or not self.cwd or "\0" in self.cwd
        ):
            raise ValueError(
                f"a command's cwd must be a directory path (a non-empty string), got {self.cwd!r}"
            )
        as_seconds(self.timeout, name="timeout", allow_zero=False)

    @property
    def name(self) -> str:
        return "command:" + self.argv[0].rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskDef:
    """A registered task and its defaults."""

    name: str
    fn: Callable[..., Any]
    is_async: bool
    mode: str = "coroutine"
    timeout: float | None = None
    retries: int = 0
    backoff: Backoff | None = None
    priority: int = 0
    category: str = "default"
    on_worker_lost: str = "retry"
    crash_limit: int = 3
    concurrency: int | None = None
    on_complete: Hook | None = None
    on_terminate: Hook | None = None
    on_state_change: Hook | None = None
    stand_in: bool = False

    def bind(
        self, args: Sequence[JSON], kwargs: Mapping[str, JSON], ctx: Context | None = None
    ) -> tuple[tuple[object, ...], dict[str, object]]:
        """Convert and bind JSON arguments to the function's parameters, injecting ``ctx``.

        :raises InvalidArguments: naming the task and the parameter
        """
        try:
            return bind(self.fn, args, kwargs, is_injected=_is_context, injected=ctx)
        except BindError as exc:
            raise InvalidArguments(self.name, exc.parameter, exc.problem) from None


def stand_in(name: str) -> TaskDef:
    """Return a stand-in for a task that this runtime knows only by name (``asyncjobs
    enqueue`` without ``--module``): its arguments are not checked here, and the node that
    runs it applies its own definition (see :func:`resolve_step`)."""

    def accept_anything(*args: object, **kwargs: object) -> None:
        raise UnknownTask(name, ())  # never run: a node runs only the tasks it knows

    return TaskDef(name=check_name("task", name), fn=accept_anything, is_async=False, stand_in=True)


def resolve_step(task: TaskDef, spec: StepSpec) -> StepSpec:
    """Return a stand-in step with the options of ``task``, the real definition."""
    return replace(
        spec,
        mode=task.mode,
        timeout=task.timeout,
        retries=task.retries,
        backoff=None if task.backoff is None else task.backoff.to_json(),
        on_worker_lost=task.on_worker_lost,
        crash_limit=task.crash_limit,
        concurrency=task.concurrency,
        target=child_target(task) if task.mode == "process" else None,
        stand_in=False,
    )


def _is_context(annotation: object) -> bool:
    return annotation is Context or is_context_annotation(annotation)


def default_name(fn: Callable[..., Any]) -> str:
    """Return ``module:qualname``, the name a task gets unless it is given one."""
    return f"{fn.__module__}:{fn.__qualname__}"


def check_name(kind: str, value: object) -> str:
    """Return ``value`` if it can name a task or job: a string with a non-blank character
    and no control character (which no store keeps the same: PostgreSQL refuses NUL).

    :raises ValueError: naming ``kind`` and the value
    """
    if not isinstance(value, str) or not value.strip() or _has_control(value):
        raise ValueError(
            f"a {kind} name must be a non-empty string without control characters, got {value!r}"
        )
    return value


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def check_category(value: object) -> str:
    """Return a valid category name (``a/b/c``: non-empty parts, no control characters)."""
    if (
        not isinstance(value, str)
        or not value
        or any(not p.strip() for p in value.split("/"))
        or _has_control(value)
    ):
        raise ValueError(f"category must be a name like 'reports/daily', got {value!r}")
    return value


def check_mode(value: object) -> str:
    if value not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {value!r}")
    return str(value)


def child_target(task: TaskDef) -> str:
    """Return the target a process child imports the task by.

    :raises InvalidArguments: saying why a child cannot import it, and what to do
    """
    try:
        return target_of(task.fn)
    except TargetError as exc:
        raise InvalidArguments(task.name, None, str(exc)) from None


def make_task(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    mode: str = "coroutine",
    timeout: float | timedelta | None = None,
    retries: int = 0,
    backoff: Backoff | float | timedelta | Callable[[int], float | timedelta] | None = None,
    priority: int = 0,
    category: str = "default",
    on_worker_lost: str = "retry",
    crash_limit: int = 3,
    concurrency: int | None = None,
    on_complete: Hook | None = None,
    on_terminate: Hook | None = None,
    on_state_change: Hook | None = None,
) -> TaskDef:
    """Check the options and return the task definition.

    :raises TypeError: if ``fn`` is not a function
    :raises ValueError: naming the option and its value, if one is invalid
    """
    if not callable(fn):
        raise TypeError(f"a task must be a function, got {fn!r}")
    if name is not None:
        check_name("task", name)
    if on_worker_lost not in WORKER_LOST_POLICIES:
        raise ValueError(
            f"on_worker_lost must be one of {', '.join(WORKER_LOST_POLICIES)}, "
            f"got {on_worker_lost!r}"
        )
    for hook_name, hook in (
        ("on_complete", on_complete),
        ("on_terminate", on_terminate),
        ("on_state_change", on_state_change),
    ):
        if hook is not None and not callable(hook):
            raise ValueError(f"{hook_name} must be a function, got {hook!r}")
    target = inspect.unwrap(fn)
    task = TaskDef(
        name=name or default_name(fn),
        fn=fn,
        is_async=inspect.iscoroutinefunction(target),
        mode=check_mode(mode),
        timeout=as_seconds(timeout, name="timeout", allow_zero=False),
        retries=check_int("retries", retries, minimum=0),
        backoff=None if backoff is None else as_backoff(backoff),
        priority=check_int("priority", priority),
        category=check_category(category),
        on_worker_lost=on_worker_lost,
        crash_limit=check_int("crash_limit", crash_limit, minimum=0),
        concurrency=None
        if concurrency is None
        else check_int("concurrency", concurrency, minimum=1),
        on_complete=on_complete,
        on_terminate=on_terminate,
        on_state_change=on_state_change,
    )
    if task.mode == "process":
        child_target(task)  # refuse now what a child could never import
    return task


class Registry:
    """The tasks of one runtime, by name and by function."""

    def __init__(self) -> None:
        self._by_name: dict[str, TaskDef] = {}
        self._by_fn: dict[Callable[..., Any], TaskDef] = {}

    def add(self, task: TaskDef) -> None:
        existing = self._by_name.get(task.name)
        if existing is not None and existing.fn is not task.fn:
            raise ValueError(
                f"a different function is already registered as task {task.name!r}; "
                "give one of them another name=..."
            )
        self._by_name[task.name] = task
        self._by_fn[task.fn] = task

    def get(self, name: str) -> TaskDef:
        task = self._by_name.get(name)
        if task is None:
            raise UnknownTask(name, tuple(self._by_name))
        return task

    def resolve(self, task: object) -> TaskDef:
        """Return the task named by ``task``: a registered function or a registered name.

        :raises UnknownTask: if it is neither
        """
        if isinstance(task, str):
            return self.get(task)
        found = self._by_fn.get(task) if callable(task) else None
        if found is None:
            name = default_name(task) if callable(task) else repr(task)
            raise UnknownTask(name, tuple(self._by_name))
        return found

    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)


# JSON as they are; to_json checks the rest (an int past 64 bits, a str with a lone surrogate
# or a NaN float has no JSON form a store can write).
_PLAIN = frozenset({bool, type(None)})


def encode_arguments(
    task: TaskDef, args: Sequence[object], kwargs: Mapping[str, object] | None
) -> tuple[tuple[JSON, ...], dict[str, JSON]]:
    """Return the arguments as JSON, checked against the task's signature.

    :raises InvalidArguments: if a value is not JSON or does not bind and convert
    """
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise InvalidArguments(task.name, None, f"kwargs must be a mapping, got {kwargs!r}")
    try:
        json_args = tuple(
            cast("JSON", value) if type(value) in _PLAIN else to_json(value, path=f"args[{i}]")
            for i, value in enumerate(args)
        )
        json_kwargs: dict[str, JSON] = {}
        for key, value in (kwargs or {}).items():
            if not isinstance(key, str):
                raise TypeError(f"keyword names must be strings, got {key!r}")
            json_kwargs[key] = to_json(value, path=key)
    except TypeError as exc:
        raise InvalidArguments(task.name, None, str(exc)) from None
    task.bind(json_args, json_kwargs)
    return json_args, json_kwargs


for _cls in (Command, ProcessLimits):
    _cls.__module__ = "asyncjobs"
