"""The hub data model: model cards, the append-only registry, routing examples, experiences, streams.

A model's row in the :class:`Registry` never changes once assigned; retiring a model masks its
row and re-activating it unmasks it, so learned per-row state (vectors, indices) stays aligned.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hubroute.data.lines import read_json_objects
from hubroute.errors import DataError, RegistryError

ACTIVE = "active"
RETIRED = "retired"
_REGISTRY_HEADER = {"format": "hubroute.registry", "version": 1}
MAX_ID_CHARS = 512
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_NUL = re.compile("\x00")


def text_problem(value: str, *, single_line: bool = False) -> str | None:
    """Why ``value`` cannot be stored and encoded as text, or None when it can: a lone surrogate
    (not encodable as UTF-8), a NUL character, or, with ``single_line``, any control character."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"contains a lone surrogate (U+{ord(value[e.start]):04X}) at position {e.start}"
    bad = (_CONTROL if single_line else _NUL).search(value)
    if bad:
        return f"contains the control character U+{ord(bad.group()):04X} at position {bad.start()}"
    return None


def check_text(value: str, what: str, *, single_line: bool = False) -> str:
    """``value`` unchanged, or :class:`RegistryError` naming ``what`` and the problem."""
    problem = text_problem(value, single_line=single_line)
    if problem:
        raise RegistryError(f"{what} {problem}")
    return value


@dataclass(frozen=True)
class ModelCard:
    """One hub model.

    ``text`` is what zero-shot routers read (description, functionality, name); ``extra`` keeps
    any other metadata (framework, api_call, performance, source dataset).
    """

    model_id: str
    family: str
    domain: str
    text: str = ""
    created_at: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (``extra`` copied; built directly, since
        ``dataclasses.asdict`` costs ten times more and hubs serialise cards by the million)."""
        return {
            "model_id": self.model_id,
            "family": self.family,
            "domain": self.domain,
            "text": self.text,
            "created_at": self.created_at,
            "extra": copy.deepcopy(self.extra) if self.extra else {},
        }

    def validate(self) -> ModelCard:
        """Itself when every field can be stored and encoded; :class:`RegistryError` naming the
        field otherwise (an empty or over-long id, control characters in an id, domain or family,
        lone surrogates anywhere)."""
        if not isinstance(self.model_id, str) or not self.model_id.strip():
            raise RegistryError("a model card needs a non-empty model_id")
        if len(self.model_id) > MAX_ID_CHARS:
            raise RegistryError(f"model_id has {len(self.model_id)} characters; the limit is {MAX_ID_CHARS}")
        for name in ("model_id", "family", "domain"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise RegistryError(f"{name} of {self.model_id!r} must be a string")
            check_text(value, f"{name} of {self.model_id!r}", single_line=True)
        if not isinstance(self.text, str):
            raise RegistryError(f"text of {self.model_id!r} must be a string")
        check_text(self.text, f"text of {self.model_id!r}")
        try:
            json.dumps(self.extra, ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError, UnicodeEncodeError) as e:
            raise RegistryError(f"extra of {self.model_id!r} is not JSON text ({e})") from None
        return self

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        return cls(**d)


@dataclass(frozen=True)
class RoutingExample:
    """A labelled prompt: the gold model to run, with that model's domain and family."""

    prompt: str
    model_id: str
    domain: str
    family: str


@dataclass
class Experience:
    """One step of hub growth: the cards it adds, its training and its evaluation examples, and
    the models it retires (and re-activates)."""

    index: int
    name: str
    new_cards: list[ModelCard]
    train: list[RoutingExample]
    eval: list[RoutingExample]
    retired: list[str] = field(default_factory=list)
    activated: list[str] = field(default_factory=list)

    @property
    def model_ids(self) -> set[str]:
        """Every model the experience's examples mention (new and recurring)."""
        return {e.model_id for e in self.train} | {e.model_id for e in self.eval}

    def summary(self) -> dict[str, Any]:
        """Counts for display: new models, train/eval examples, models and domains seen."""
        return {
            "index": self.index,
            "name": self.name,
            "new_models": len(self.new_cards),
            "models": len(self.model_ids),
            "train": len(self.train),
            "eval": len(self.eval),
            "domains": len({e.domain for e in self.train} | {e.domain for e in self.eval}),
            "retired": len(self.retired),
        }


@dataclass
class Stream:
    """The ordered experiences of a benchmark, with a name and the protocol that built it."""

    name: str
    experiences: list[Experience]
    protocol: str = "public"
    notes: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[Experience]:
        return iter(self.experiences)

    def __len__(self) -> int:
        return len(self.experiences)

    def __getitem__(self, i: int) -> Experience:
        return self.experiences[i]

    def all_cards(self) -> list[ModelCard]:
        """Every card of the stream in registration order."""
        return [c for e in self.experiences for c in e.new_cards]


class Registry:
    """Append-only ordered set of model cards with an active/retired mask.

    Rows are assigned in insertion order and never reused. ``version`` increases on every
    change so that caches keyed on the registry can notice.
    """

    def __init__(self, cards: Iterable[ModelCard] = ()):
        self._cards: list[ModelCard] = []
        self._row: dict[str, int] = {}
        self._active = np.zeros(0, dtype=bool)
        self.version = 0
        self.add(cards)

    # -- reading -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._cards)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._row

    def __iter__(self) -> Iterator[ModelCard]:
        return iter(self._cards)

    @property
    def cards(self) -> Sequence[ModelCard]:
        """The cards in row order (read-only view)."""
        return tuple(self._cards)

    @property
    def model_ids(self) -> list[str]:
        """Model ids in row order."""
        return [c.model_id for c in self._cards]

    @property
    def active_mask(self) -> np.ndarray:
        """Boolean array, one entry a row, True where the model is routable (a copy)."""
        return self._active.copy()

    def n_active(self) -> int:
        """Number of active models."""
        return int(self._active.sum())

    def row(self, model_id: str) -> int:
        """Row index of ``model_id``; unknown ids raise :class:`RegistryError`."""
        try:
            return self._row[model_id]
        except KeyError:
            raise RegistryError(f"unknown model id {model_id!r}") from None

    def rows(self, model_ids: Iterable[str]) -> np.ndarray:
        """Row indices of several ids, as an int64 array."""
        return np.fromiter((self.row(m) for m in model_ids), dtype=np.int64)

    def card(self, model_id_or_row: str | int) -> ModelCard:
        """The card of a model id or row index."""
        if isinstance(model_id_or_row, (int, np.integer)):
            return self._cards[int(model_id_or_row)]
        return self._cards[self.row(model_id_or_row)]

    def status(self, model_id: str) -> str:
        """``"active"`` or ``"retired"``."""
        return ACTIVE if self._active[self.row(model_id)] else RETIRED

    def domains(self) -> list[str]:
        """Domain of each row."""
        return [c.domain for c in self._cards]

    def families(self) -> list[str]:
        """Family of each row."""
        return [c.family for c in self._cards]

    # -- changing ------------------------------------------------------------------------
    def plan(self, cards: Iterable[ModelCard], *, skip_existing: bool = False) -> tuple[list[ModelCard], list[int]]:
        """What :meth:`add` would do, without changing anything: the cards that are new (each
        validated) and the row every given card would have.

        A card whose id is already registered is an error, or is skipped (its existing row
        returned) when ``skip_existing`` is true; an id twice in ``cards`` likewise.
        """
        new: list[ModelCard] = []
        seen: dict[str, int] = {}
        rows: list[int] = []
        for c in cards:
            if not isinstance(c, ModelCard):
                raise RegistryError(f"expected a ModelCard, got {type(c).__name__}")
            c.validate()
            if c.model_id in self._row:
                if not skip_existing:
                    raise RegistryError(f"model id {c.model_id!r} is already registered")
                rows.append(self._row[c.model_id])
                continue
            if c.model_id in seen:
                if not skip_existing:
                    raise RegistryError(f"model id {c.model_id!r} appears twice in one batch")
                rows.append(seen[c.model_id])
                continue
            seen[c.model_id] = len(self._cards) + len(new)
            rows.append(seen[c.model_id])
            new.append(c)
        return new, rows

    def add(self, cards: Iterable[ModelCard], *, skip_existing: bool = False) -> list[int]:
        """Append new cards; returns their rows (see :meth:`plan`). Nothing is added if any card
        is rejected."""
        new, rows = self.plan(cards, skip_existing=skip_existing)
        if new:
            start = len(self._cards)
            self._cards.extend(new)
            for i, c in enumerate(new):
                self._row[c.model_id] = start + i
            self._active = np.concatenate([self._active, np.ones(len(new), dtype=bool)])
            self.version += 1
        return rows

    def add_unchecked(self, cards: Sequence[ModelCard]) -> None:
        """Append cards read back from a registry this code wrote (no validation of their text:
        the fast path for loading large registries); a repeated id is still an error."""
        start = len(self._cards)
        for i, c in enumerate(cards):
            if c.model_id in self._row:
                raise RegistryError(f"model id {c.model_id!r} appears twice")
            self._row[c.model_id] = start + i
        self._cards.extend(cards)
        self._active = np.concatenate([self._active, np.ones(len(cards), dtype=bool)])
        self.version += 1

    def set_active_rows(self, rows: np.ndarray, active: bool) -> None:
        """Mask or unmask rows by number (what :meth:`retire` and :meth:`activate` do by id)."""
        self._active[np.asarray(rows, dtype=np.int64)] = active
        self.version += 1

    def truncate(self, n_rows: int) -> None:
        """Drop the rows from ``n_rows`` on: only to undo an :meth:`add` whose router could not
        take the new rows (rows are otherwise never removed)."""
        if not 0 <= n_rows <= len(self._cards):
            raise RegistryError(f"cannot truncate {len(self._cards)} rows to {n_rows}")
        for c in self._cards[n_rows:]:
            del self._row[c.model_id]
        del self._cards[n_rows:]
        self._active = self._active[:n_rows].copy()
        self.version += 1

    def retire(self, model_ids: Iterable[str]) -> None:
        """Mask models so they are never routed to; their rows stay. Unknown ids raise."""
        rows = self.rows(list(model_ids))
        self._active[rows] = False
        self.version += 1

    def activate(self, model_ids: Iterable[str]) -> None:
        """Unmask retired models. Unknown ids raise."""
        rows = self.rows(list(model_ids))
        self._active[rows] = True
        self.version += 1

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the registry as JSONL (a header line, then one card and status a line).

        The file is written to a temporary name and renamed, so an existing registry file is
        never left half-written.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(_REGISTRY_HEADER) + "\n")
                for c, active in zip(self._cards, self._active, strict=True):
                    row = c.to_dict()
                    row["status"] = ACTIVE if active else RETIRED
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> Registry:
        """Read a file written by :meth:`save`; malformed lines raise :class:`DataError`."""
        path = Path(path)
        if not path.is_file():
            raise DataError("registry file not found", path)
        reg = cls()
        cards: list[ModelCard] = []
        retired: list[str] = []
        for lineno, row in read_json_objects(path):
            if lineno == 1:
                if row.get("format") != _REGISTRY_HEADER["format"]:
                    raise DataError("not a hubroute registry file (bad header)", path, 1)
                continue
            status = row.pop("status", ACTIVE)
            if status not in (ACTIVE, RETIRED):
                raise DataError(f"unknown status {status!r}", path, lineno)
            try:
                card = ModelCard.from_dict(row)
            except TypeError as e:
                raise DataError(f"bad model card ({e})", path, lineno) from None
            cards.append(card)
            if status == RETIRED:
                retired.append(card.model_id)
        try:
            reg.add(cards)
        except RegistryError as e:
            raise DataError(str(e), path) from None
        if retired:
            reg.retire(retired)
        return reg
