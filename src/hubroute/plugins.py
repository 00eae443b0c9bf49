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
from collections.abc import Iterator
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


def check_params(cls: type, params: dict[str, Any], what: str) -> None:
    """Raise :class:`HubrouteError` when ``params`` do not fit ``cls``'s constructor (unknown or
    missing arguments), before anything is built."""
    try:
        inspect.signature(cls).bind(**params)
    except TypeError as e:
        raise HubrouteError(f"bad parameters for {what}: {e}") from None


def accepts(cls: type, name: str) -> bool:
    """Whether ``cls``'s constructor takes a keyword argument ``name``."""
    sig = inspect.signature(cls)
    return name in sig.parameters or any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


class ComponentTable(Generic[T]):
    """Short names of the classes of one kind (``what``: ``"router"``, ``"strategy"``) that
    derive from ``base``; class paths are accepted wherever a name is."""

    def __init__(self, what: str, base: type[T]):
        self.what, self.base = what, base
        self._classes: dict[str, type[T]] = {}

    def register(self, name: str, cls: type[T]) -> type[T]:
        """Add ``cls`` under ``name`` (a name already taken by another class is an error)."""
        if self._classes.get(name, cls) is not cls:
            raise HubrouteError(f"{self.what} name {name!r} is already taken by {class_path(self._classes[name])}")
        self._classes[name] = cls
        return cls

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._classes))

    def __getitem__(self, name: str) -> type[T]:
        return self.resolve(name)

    def items(self) -> list[tuple[str, type[T]]]:
        """``(name, class)`` pairs, sorted by name."""
        return sorted(self._classes.items())

    def names(self) -> list[str]:
        """The registered short names, sorted."""
        return sorted(self._classes)

    def name_of(self, cls: type) -> str:
        """The short name of ``cls``, or its class path when it is not registered."""
        for name, c in self._classes.items():
            if c is cls:
                return name
        return class_path(cls)

    def resolve(self, name: str) -> type[T]:
        """The class registered as ``name``, or imported from a class path."""
        if name in self._classes:
            return self._classes[name]
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
