"""Constraints on the models an answer may name, from their cards: allow-lists of domains,
pipeline tags, licences and languages, and a largest parameter count. They are applied as a row
mask before top-k, so an answer never breaks them (a model whose card does not state a constrained
field is left out).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from hubroute.errors import HubrouteError
from hubroute.hub import Registry

FIELDS = ("domain", "pipeline_tag", "license", "language", "max_params")


def _norm(value: Any) -> list[str]:
    if value is None:
        return []
    values = value if isinstance(value, (list, tuple, set)) else [value]
    return [str(v).strip().lower() for v in values if str(v).strip()]


@dataclass(frozen=True)
class Constraints:
    """Which models an answer may name (see the module docstring). Each allow-list holds
    lower-case values; a model matches ``language`` when any of its languages is allowed."""

    domain: tuple[str, ...] | None = None
    pipeline_tag: tuple[str, ...] | None = None
    license: tuple[str, ...] | None = None
    language: tuple[str, ...] | None = None
    max_params: int | None = None

    def __post_init__(self) -> None:
        for f in ("domain", "pipeline_tag", "license", "language"):
            value = getattr(self, f)
            if value is not None:
                object.__setattr__(self, f, tuple(sorted(set(_norm(value)))))
        if self.max_params is not None and (isinstance(self.max_params, bool) or self.max_params < 0):
            raise HubrouteError(f"max_params must be a count >= 0, got {self.max_params!r}")

    @property
    def empty(self) -> bool:
        """Whether nothing is constrained."""
        return all(getattr(self, f.name) is None for f in fields(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Constraints:
        """From ``{"license": ["mit"], "max_params": 1e9, ...}``; an unknown field is an error."""
        if not data:
            return cls()
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise HubrouteError(f"unknown constraint(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
        values = dict(data)
        if values.get("max_params") is not None:
            try:
                values["max_params"] = int(float(values["max_params"]))
            except (TypeError, ValueError):
                raise HubrouteError(f"max_params must be a number, got {data['max_params']!r}") from None
        return cls(**values)

    @classmethod
    def parse(cls, items: Iterable[str]) -> Constraints:
        """From command-line items: ``license=mit,apache-2.0``, ``language=en``, ``params<=7e9``."""
        data: dict[str, Any] = {}
        for item in items:
            m = re.fullmatch(r"\s*(params|max_params)\s*<=\s*(\S+)\s*", item)
            if m:
                data["max_params"] = m.group(2)
                continue
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or not value.strip():
                raise HubrouteError(f"a constraint is FIELD=VALUE[,VALUE…] or params<=N, got {item!r}")
            if key not in FIELDS or key == "max_params":
                raise HubrouteError(
                    f"unknown constraint {key!r}; known: domain, pipeline_tag, license, language, params<=N"
                )
            data.setdefault(key, []).extend(v for v in value.split(",") if v.strip())
        return cls.from_dict(data)

    def mask(self, registry: Registry) -> np.ndarray | None:
        """Boolean row mask of the models that meet every constraint (None when there is none)."""
        if self.empty:
            return None
        key = (id(registry), registry.version, len(registry), self)
        with _LOCK:
            hit = _CACHE.get(key)
            if hit is not None:
                _CACHE.move_to_end(key)
                return hit.copy()
        out = np.fromiter((self.allows(c.domain, c.extra) for c in registry), dtype=bool, count=len(registry))
        with _LOCK:
            _CACHE[key] = out
            while len(_CACHE) > 64:
                _CACHE.popitem(last=False)
        return out.copy()

    def allows(self, domain: str, extra: dict[str, Any]) -> bool:
        """Whether a card with ``domain`` and ``extra`` meets every constraint."""
        if self.domain is not None and domain.lower() not in self.domain:
            return False
        for f in ("pipeline_tag", "license", "language"):
            allowed = getattr(self, f)
            if allowed is not None and not set(_norm(extra.get(f))) & set(allowed):
                return False
        if self.max_params is not None:
            params = extra.get("params")
            if not isinstance(params, (int, float)) or isinstance(params, bool) or params > self.max_params:
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        """The constrained fields only."""
        return {
            f.name: list(v) if isinstance(v, tuple) else v
            for f in fields(self)
            if (v := getattr(self, f.name)) is not None
        }


_CACHE: OrderedDict[tuple, np.ndarray] = OrderedDict()
_LOCK = threading.Lock()
