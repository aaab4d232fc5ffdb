"""Targets: ``package.module:function`` or ``path/to/file.py:function``.

The parent checks at job creation that a child could import the function (the same rules as
here); the child resolves the target and unwraps decorators.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any


class TargetError(ValueError):
    """A target that a child cannot import, with what to do about it."""


def target_of(fn: Any) -> str:
    """Return the target a child would import ``fn`` by.

    :raises TargetError: saying why a child cannot import it and what to do
    """
    fn = inspect.unwrap(fn)
    name = getattr(fn, "__qualname__", None) or repr(fn)
    module = getattr(fn, "__module__", None)
    if name == "<lambda>" or "<lambda>" in name:
        raise TargetError(
            f"{name} is a lambda: a child process cannot import it; "
            "define the task with def at the top level of a module"
        )
    if "<locals>" in name:
        raise TargetError(
            f"{name} is defined inside a function: a child process cannot import it; "
            "move it to the top level of a module"
        )
    if module in (None, "__main__", "builtins") or module.startswith("__"):
        path = getattr(sys.modules.get(module or ""), "__file__", None)
        if module == "__main__" and path and Path(path).suffix == ".py":
            return f"{Path(path).resolve()}:{name}"
        raise TargetError(
            f"{name} is defined in {'a notebook cell or an interactive session' if module == '__main__' else repr(module)}: "
            "a child process cannot import it; put it in a module (a .py file) and import it"
        )
    return f"{module}:{name}"


def resolve(target: str) -> Any:
    """Import and return the function a target names.

    :raises TargetError: naming the target, if it is malformed or cannot be imported
    """
    module_name, sep, qualname = target.rpartition(":")
    if not sep or not module_name or not qualname:
        raise TargetError(
            f"malformed target {target!r}; expected 'package.module:function' or "
            "'path/to/file.py:function'"
        )
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise TargetError(f"target {target!r}: no such file {module_name!r}")
        spec = importlib.util.spec_from_file_location(f"_asyncjobs_target_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise TargetError(f"target {target!r}: cannot load {module_name!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        sys.path.insert(0, str(path.parent))
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise TargetError(f"target {target!r}: cannot import {module_name!r}: {exc}") from exc
    obj: Any = module
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(f"target {target!r}: {module_name!r} has no {qualname!r}") from None
    if not callable(obj):
        raise TargetError(f"target {target!r} is not callable: {obj!r}")
    return inspect.unwrap(obj)
