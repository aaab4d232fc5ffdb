"""JSON <-> annotated Python types, and binding arguments to a function's signature.

Task arguments travel as JSON. Before a call they are converted to the types the
parameters are annotated with (int, float, bool, str, datetime, date, timedelta, UUID, Enum,
dataclasses, lists, tuples, sets and dicts of those, Optional/Union/Literal); results and
arguments given as Python values are encoded back with :func:`to_json`.

Standard library only, by design: a process child imports this module, and its start-up time
is a product feature.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import math
import re
import types
import typing
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any, TypeAlias

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None

_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what orjson, which the stores write with, encodes
_SURROGATE = re.compile("[\ud800-\udfff]")  # in a str, a surrogate code point is always alone

_SUPPORTED = (
    "None, bool, int, float, str, list, dict, datetime, date, timedelta, UUID, Enum or a dataclass"
)


class BindError(TypeError):
    """Arguments that do not bind to a signature or do not convert to a parameter's type."""

    def __init__(self, parameter: str | None, problem: str) -> None:
        super().__init__(f"parameter {parameter!r}: {problem}" if parameter else problem)
        self.parameter = parameter
        self.problem = problem


def to_json(value: object, *, path: str = "value") -> JSON:
    """Return ``value`` as JSON values, encoding datetimes, UUIDs, enums and dataclasses.

    :raises TypeError: naming the path and the type, if a value has no JSON form
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise TypeError(
                f"{path}: {_short(value)} is too large for JSON here; "
                "expected an integer from -2**63 to 2**64-1 (a str holds any)"
            )
        return value
    if isinstance(value, str):
        return _text(value, path)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{path}: {value!r} is not JSON; expected a finite number")
        return value
    if isinstance(value, enum.Enum):
        return to_json(value.value, path=path)
    if isinstance(value, list | tuple):
        return [to_json(item, path=f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        out: dict[str, JSON] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"{path}: a dict key {key!r} is not a string; JSON keys are strings"
                )
            out[_text(key, path)] = to_json(item, path=f"{path}[{key!r}]")
        return out
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: to_json(getattr(value, field.name), path=f"{path}.{field.name}")
            for field in dataclasses.fields(value)
        }
    raise TypeError(f"{path}: a {type(value).__qualname__} is not JSON; expected {_SUPPORTED}")


def _text(value: str, path: str) -> str:
    """``value``, if it is text that can be stored: UTF-8 has no lone surrogates."""
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            raise TypeError(
                f"{path}: {_short(value)} holds a lone surrogate "
                f"({value[exc.start]!r} at {exc.start}); expected text UTF-8 can encode"
            ) from None
    return value


def storable_text(text: str) -> str:
    """Text a store can hold, for log lines and progress messages: a lone surrogate (a
    child's escaped output, bytes decoded with ``surrogateescape``) has no UTF-8 form; it
    becomes U+FFFD and the rest of the text is kept."""
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            return _SURROGATE.sub("\ufffd", text)
    return text


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__qualname__


def _type_name(annotation: object) -> str:
    if annotation is type(None) or annotation is None:
        return "None"
    if isinstance(annotation, type):
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "")


def _fail(path: str, annotation: object, value: object) -> BindError:
    return BindError(
        None,
        f"{path}: expected {_type_name(annotation)}, got {_short(value)} ({_json_type(value)})",
    )


_PLAIN = frozenset({int, float, str, bool})


def from_json(value: JSON, annotation: object, *, path: str = "value") -> object:
    """Return the JSON ``value`` converted to the type ``annotation`` names.

    :raises BindError: naming the path, the expected type and the value
    """
    if type(value) is annotation and annotation in _PLAIN:
        return value  # the common case, first: an int for an int...
    if annotation in (inspect.Parameter.empty, Any, object):
        return value
    if annotation is None or annotation is type(None):
        if value is None:
            return None
        raise _fail(path, annotation, value)
    supertype = getattr(annotation, "__supertype__", None)
    if supertype is not None:  # NewType
        return from_json(value, supertype, path=path)
    origin = typing.get_origin(annotation)
    if origin is not None:
        return _from_generic(value, annotation, origin, path)
    if isinstance(annotation, type):
        return _from_class(value, annotation, path)
    # An unresolved string annotation or something exotic: take the value as it is.
    return value


def _from_class(value: JSON, cls: type, path: str) -> object:
    if cls is bool:
        if isinstance(value, bool):
            return value
        raise _fail(path, cls, value)
    if cls is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _fail(path, cls, value)
    if cls is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _fail(path, cls, value)
    if cls is str:
        if isinstance(value, str):
            return value
        raise _fail(path, cls, value)
    if issubclass(cls, enum.Enum):
        try:
            return cls(value)
        except ValueError:
            if isinstance(value, str) and value in cls.__members__:
                return cls[value]
            known = ", ".join(repr(member.value) for member in cls)
            raise BindError(
                None,
                f"{path}: expected {cls.__qualname__} (one of {known}), got {_short(value)}",
            ) from None
    if cls is datetime:
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(
                    value.removesuffix("Z") + ("+00:00" if value.endswith("Z") else "")
                )
            except ValueError:
                pass
        raise _fail(path, cls, value)
    if cls is date:
        if isinstance(value, str) and len(value) == 10:
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise _fail(path, cls, value)
    if cls is timedelta:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return timedelta(seconds=value)
        raise _fail(path, cls, value)
    if cls is uuid.UUID:
        if isinstance(value, str):
            try:
                return uuid.UUID(value)
            except ValueError:
                pass
        raise _fail(path, cls, value)
    if dataclasses.is_dataclass(cls):
        return _from_dataclass(value, cls, path)
    if cls in (list, tuple, set, frozenset):
        if isinstance(value, list):
            return cls(value)
        raise _fail(path, cls, value)
    if cls is dict:
        if isinstance(value, dict):
            return value
        raise _fail(path, cls, value)
    if isinstance(value, cls):
        return value
    raise _fail(path, cls, value)


def _from_dataclass(value: JSON, cls: type, path: str) -> object:
    if not isinstance(value, dict):
        raise _fail(path, cls, value)
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise BindError(
            None,
            f"{path}: unknown field(s) {', '.join(map(repr, unknown))} for {cls.__qualname__}; "
            f"expected {', '.join(map(repr, fields))}",
        )
    kwargs: dict[str, object] = {}
    for name, field in fields.items():
        if name in value:
            kwargs[name] = from_json(value[name], hints.get(name, Any), path=f"{path}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise BindError(None, f"{path}: missing field {name!r} of {cls.__qualname__}")
    return cls(**kwargs)


def _from_generic(value: JSON, annotation: object, origin: object, path: str) -> object:
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return from_json(value, args[0], path=path)
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        errors = []
        for member in args:
            if member is type(None):
                continue
            try:
                return from_json(value, member, path=path)
            except BindError as exc:
                errors.append(exc)
        raise _fail(path, annotation, value)
    if origin is typing.Literal:
        if value in args and not (isinstance(value, bool) and not any(a is value for a in args)):
            return value
        raise BindError(
            None,
            f"{path}: expected one of {', '.join(map(repr, args))}, got {_short(value)}",
        )
    if origin in (list, set, frozenset) or origin in (Sequence, typing.Sequence):
        if not isinstance(value, list):
            raise _fail(path, annotation, value)
        item = args[0] if args else Any
        items = [from_json(v, item, path=f"{path}[{i}]") for i, v in enumerate(value)]
        if origin is set:
            return set(items)
        if origin is frozenset:
            return frozenset(items)
        return items
    if origin is tuple:
        if not isinstance(value, list):
            raise _fail(path, annotation, value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_json(v, args[0], path=f"{path}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise BindError(
                None, f"{path}: expected {len(args)} items, got {len(value)} ({_short(value)})"
            )
        return tuple(
            from_json(v, args[i] if args else Any, path=f"{path}[{i}]") for i, v in enumerate(value)
        )
    if origin in (dict, Mapping):
        if not isinstance(value, dict):
            raise _fail(path, annotation, value)
        item = args[1] if len(args) == 2 else Any
        return {k: from_json(v, item, path=f"{path}[{k!r}]") for k, v in value.items()}
    return value


def _hints(obj: object) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj, include_extras=True)
    except Exception:
        return {}


class _Signature:
    __slots__ = ("hints", "injected", "parameters", "signature")

    def __init__(self, fn: Callable[..., object], is_injected: Callable[[object], bool]) -> None:
        self.signature = inspect.signature(fn)
        self.hints = _hints(fn)
        self.parameters = list(self.signature.parameters.values())
        self.injected = {
            p.name for p in self.parameters if is_injected(self.hints.get(p.name, p.annotation))
        }


_cache: dict[tuple[Callable[..., object], Callable[[object], bool]], _Signature] = {}


def bind(
    fn: Callable[..., object],
    args: Sequence[JSON],
    kwargs: Mapping[str, JSON],
    *,
    is_injected: Callable[[object], bool] = lambda annotation: False,
    injected: object = None,
) -> tuple[tuple[object, ...], dict[str, object]]:
    """Bind JSON ``args``/``kwargs`` to ``fn``'s parameters, converted to their annotations.

    Parameters whose annotation satisfies ``is_injected`` receive ``injected`` and may not be
    passed. Returns ``(args, kwargs)`` for ``fn(*args, **kwargs)``.

    :raises BindError: naming the parameter and what is wrong with it
    """
    key = (fn, is_injected)
    sig = _cache.get(key)
    if sig is None:
        sig = _cache[key] = _Signature(fn, is_injected)
    P = inspect.Parameter
    positional = list(args)
    remaining = dict(kwargs)
    out_args: list[object] = []
    out_kwargs: dict[str, object] = {}
    for param in sig.parameters:
        annotation = sig.hints.get(param.name, param.annotation)
        name = param.name
        if name in sig.injected:
            if name in remaining:
                raise BindError(name, "is supplied by the runtime; do not pass it")
            if param.kind == P.POSITIONAL_ONLY or (
                param.kind == P.POSITIONAL_OR_KEYWORD and positional
            ):
                out_args.append(injected)
            else:
                out_kwargs[name] = injected
            continue
        if param.kind == P.VAR_POSITIONAL:
            out_args.extend(
                from_json(v, annotation, path=f"{name}[{i}]") for i, v in enumerate(positional)
            )
            positional = []
            continue
        if param.kind == P.VAR_KEYWORD:
            for key_name, v in remaining.items():
                out_kwargs[key_name] = from_json(v, annotation, path=key_name)
            remaining = {}
            continue
        if param.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD) and positional:
            if name in remaining and param.kind != P.POSITIONAL_ONLY:
                raise BindError(name, "got multiple values (positional and keyword)")
            out_args.append(_convert(positional.pop(0), annotation, name))
            continue
        if param.kind != P.POSITIONAL_ONLY and name in remaining:
            value = _convert(remaining.pop(name), annotation, name)
            if param.kind == P.POSITIONAL_OR_KEYWORD and not out_kwargs:
                out_args.append(value)
            else:
                out_kwargs[name] = value
            continue
        if param.default is P.empty:
            raise BindError(name, "missing a required argument")
        if param.kind == P.POSITIONAL_ONLY or (
            param.kind == P.POSITIONAL_OR_KEYWORD and not out_kwargs
        ):
            out_args.append(param.default)
    if positional:
        accepted = sum(
            1
            for p in sig.parameters
            if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD) and p.name not in sig.injected
        )
        raise BindError(None, f"takes {accepted} positional arguments but {len(args)} were given")
    if remaining:
        raise BindError(min(remaining), "unexpected keyword argument")
    return tuple(out_args), out_kwargs


def _convert(value: JSON, annotation: object, name: str) -> object:
    try:
        return from_json(value, annotation, path=name)
    except BindError as exc:
        raise BindError(name, exc.problem) from None


def is_context_annotation(annotation: object) -> bool:
    """Whether a parameter annotated so receives the execution context (``aj.Context``).

    Matched by name so that the runner never imports asyncjobs: the class itself, or the
    string left when the annotation could not be resolved.
    """
    if isinstance(annotation, str):
        return annotation.rpartition(".")[2] == "Context"
    return getattr(annotation, "__name__", None) == "Context" and str(
        getattr(annotation, "__module__", "")
    ).startswith(("asyncjobs", "asyncjobs_runner"))
