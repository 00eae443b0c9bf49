"""Open tables of named components (routers, strategies): the built-in names, plus any class
given by its import path, so code outside hubroute plugs in without editing it.

A component is named either by a short name registered in its table (``"replay"``) or by a
class path, ``"package.module:ClassName"`` (``"package.module.ClassName"`` also works). Saved
artifacts record the class path, so a router defined in a user's module loads again wherever
that module can be imported.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import typing
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from hubroute.errors import HubrouteError

T = TypeVar("T")


def class_path(cls: type) -> str:
    """``"module:QualName"`` of a class (what :meth:`ComponentTable.resolve` reads back)."""
    return f"{cls.__module__}:{cls.__qualname__}"


def import_class(path: str) -> type:
    """The class at ``"module:Name"`` or ``"module.Name"``; a clear error when it is missing."""
    module, sep, name = path.partition(":")
    if not sep:
        module, _, name = path.rpartition(".")
    if not module or not name:
        raise HubrouteError(f"{path!r} is not a class path (expected 'package.module:ClassName')")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as e:
        raise HubrouteError(f"cannot import {module!r} for {path!r}: {e}") from None
    for part in name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise HubrouteError(f"module {module!r} has no {name!r}")
    if not isinstance(obj, type):
        raise HubrouteError(f"{path!r} is not a class")
    return obj


def _path(cls: type | str) -> str:
    return cls if isinstance(cls, str) else class_path(cls)


def constructor_params(cls: type) -> dict[str, tuple[inspect.Parameter, Any]]:
    """The keyword arguments ``cls`` accepts, with their resolved annotations: its own, and those
    of the base class its ``**kwargs`` are passed on to."""
    out: dict[str, tuple[inspect.Parameter, Any]] = {}
    for klass in cls.__mro__:
        declared = klass.__dict__.get("__signature__")
        if isinstance(declared, inspect.Signature):  # a class that states its keyword arguments
            return {
                n: (p, p.annotation if p.annotation is not p.empty else Any) for n, p in declared.parameters.items()
            }
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # an annotation that does not resolve is not checked
            hints = {}
        sig = inspect.signature(init)
        for name, p in list(sig.parameters.items())[1:]:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in out:
                out[name] = (p, hints.get(name, Any))
        if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            break
    return out


def check_params(cls: type, params: dict[str, Any], what: str) -> None:
    """Raise :class:`HubrouteError` when ``params`` do not fit ``cls``'s constructor: an unknown
    name, or a value of the wrong type (``"abc"`` for a float), before anything is built."""
    accepted = constructor_params(cls)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise HubrouteError(
            f"bad parameters for {what}: unknown {', '.join(map(repr, unknown))}; it takes {', '.join(accepted)}"
        )
    missing = [n for n, (p, _) in accepted.items() if p.default is p.empty and n not in params]
    if missing:
        raise HubrouteError(f"bad parameters for {what}: {', '.join(map(repr, missing))} missing")
    for name, value in params.items():
        problem = _type_problem(accepted[name][1], value)
        if problem:
            raise HubrouteError(f"bad parameters for {what}: {name}={value!r}: {problem}")


def _type_problem(hint: Any, value: Any) -> str | None:
    """Why ``value`` does not fit the annotation ``hint`` (numbers as numbers, flags as
    booleans), or None; annotations pydantic cannot check are accepted."""
    if hint is Any:
        return None
    try:
        from pydantic import ConfigDict, TypeAdapter, ValidationError

        adapter = TypeAdapter(hint, config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:
        return None
    try:
        adapter.validate_python(value, strict=False)
    except ValidationError as e:
        return e.errors()[0]["msg"]
    except Exception:
        return None
    return None


def accepts(cls: type, name: str) -> bool:
    """Whether ``cls``'s constructor takes a keyword argument ``name``."""
    return name in constructor_params(cls)


class ComponentTable(Generic[T]):
    """Short names of the classes of one kind (``what``: ``"router"``, ``"strategy"``) that
    derive from ``base``; class paths are accepted wherever a name is.

    Classes may be registered by class path and are imported on first use, so listing the names
    (the CLI's help) imports nothing heavy. ``base`` is a class or a class path likewise."""

    def __init__(self, what: str, base: type[T] | str):
        self.what, self._base = what, base
        self._classes: dict[str, type[T] | str] = {}

    @property
    def base(self) -> type[T]:
        """The class every component derives from."""
        if isinstance(self._base, str):
            self._base = import_class(self._base)
        return self._base

    def register(self, name: str, cls: type[T] | str) -> type[T] | str:
        """Add ``cls`` (a class or a class path) under ``name``; a name already taken by another
        class is an error."""
        old = self._classes.get(name, cls)
        if old is not cls and _path(old) != _path(cls):
            raise HubrouteError(f"{self.what} name {name!r} is already taken by {_path(old)}")
        self._classes[name] = cls
        return cls

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._classes))

    def __getitem__(self, name: str) -> type[T]:
        return self.resolve(name)

    def names(self) -> list[str]:
        """The registered short names, sorted (imports nothing)."""
        return sorted(self._classes)

    def name_of(self, cls: type) -> str:
        """The short name of ``cls``, or its class path when it is not registered."""
        path = class_path(cls)
        for name, c in self._classes.items():
            if c is cls or c == path:
                return name
        return path

    def resolve(self, name: str) -> type[T]:
        """The class registered as ``name``, or imported from a class path."""
        if name in self._classes:
            cls = self._classes[name]
            if isinstance(cls, str):
                cls = self._classes[name] = import_class(cls)
            return cls
        if ":" not in name and "." not in name:
            raise HubrouteError(
                f"unknown {self.what} {name!r}; choose one of {', '.join(self.names())} "
                "or give a class path 'package.module:ClassName'"
            )
        cls = import_class(name)
        if not issubclass(cls, self.base):
            raise HubrouteError(f"{name!r} is not a {self.what} (not a subclass of {class_path(self.base)})")
        return cls

    def build(self, name: str, params: dict[str, Any]) -> T:
        """``resolve(name)(**params)``, with parameters checked against the constructor first."""
        cls = self.resolve(name)
        check_params(cls, params, f"{self.what} {name!r}")
        return cls(**params)


def lazy_exports(module: str, where: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for package ``module`` whose public names (``where``:
    name -> defining module) are imported on first use and then kept in its namespace."""
    names = sorted(where)

    def getattr_(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        setattr(sys.modules[module], name, value)
        return value

    return getattr_, lambda: names
