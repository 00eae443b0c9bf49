"""Build a component from a table of named classes, with errors that list the choices."""

from __future__ import annotations

from typing import Any, TypeVar

from hubroute.errors import HubrouteError

T = TypeVar("T")


def build(table: dict[str, type[T]], what: str, name: str, params: dict[str, Any]) -> T:
    """``table[name](**params)``; an unknown name or a bad parameter raises
    :class:`HubrouteError` saying what was wrong (``what`` is e.g. ``"router"``)."""
    try:
        cls = table[name]
    except KeyError:
        raise HubrouteError(f"unknown {what} {name!r}; choose one of {', '.join(sorted(table))}") from None
    try:
        return cls(**params)
    except TypeError as e:
        raise HubrouteError(f"bad parameters for {what} {name!r}: {e}") from None
