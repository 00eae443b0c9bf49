"""Model cards in from the formats hubs keep them in: a folder of Hugging Face model cards, or a
table of cards (JSONL, CSV, Parquet).

Hugging Face cards (``<org>/<name>/README.md``: YAML front matter and Markdown) are parsed with
``huggingface_hub``'s ``ModelCard``. The domain comes from ``pipeline_tag``
(:mod:`hubroute.hubs.tasks`); ``library_name``, ``license``, ``language``, ``tags``,
``datasets``, ``base_model``, a stated parameter count and the model-index results go to
``extra``. The card text is the model id and its words, the task, and the first meaningful
paragraphs of the body (see :func:`card_body_text`).

A table of cards has one card per row: ``model_id`` and ``domain`` (required), ``family``,
``text``, ``created_at`` (ms since the epoch, or an ISO date), ``license``, ``params``; any other
column goes to ``extra``.

Each source yields :class:`Parsed` items: a card, or the problem that kept one out (with the
file and line), so one bad card never keeps the others out.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubroute.data.text import split_model_name
from hubroute.errors import DataError, HubrouteError
from hubroute.hub import ModelCard, text_problem
from hubroute.hubs.tasks import UNKNOWN_DOMAIN, domain_of

CARD_FILE = "README.md"
MAX_TEXT_CHARS = 2000
TABLE_COLUMNS = ("model_id", "domain", "family", "text", "created_at", "license", "params")


@dataclass
class Parsed:
    """One source item: a ``card``, or why there is none (``problem`` at ``where``); ``notes``
    are things worth reporting about a card that was kept (no pipeline tag…)."""

    card: ModelCard | None
    where: str
    problem: str | None = None
    notes: list[str] = field(default_factory=list)


# -- card text ---------------------------------------------------------------------------------
_FENCE = re.compile(r"```.*?```|~~~.*?~~~", re.S)
_HTML = re.compile(r"<[^>]+>")
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_WORD = re.compile(r"[A-Za-z]{2,}")


def card_body_text(body: str, limit: int = MAX_TEXT_CHARS) -> str:
    """The first meaningful paragraphs of a card's Markdown body: code blocks, HTML, images and
    badges, tables and headings are dropped, links keep their text, and a paragraph counts when it
    has at least six words; paragraphs are kept until ``limit`` characters."""
    text = _FENCE.sub("\n\n", body)
    text = _HTML.sub(" ", text)
    text = _IMAGE.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    kept: list[str] = []
    size = 0
    for para in re.split(r"\n\s*\n", text):
        lines = [ln.strip() for ln in para.splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith(("#", "|", ">")) and not set(ln) <= set("-=*_ ")]
        para = " ".join(ln.lstrip("-*+ ").strip() for ln in lines)
        if len(_WORD.findall(para)) < 6:
            continue
        kept.append(para)
        size += len(para)
        if size >= limit:
            break
    return " ".join(kept)[:limit]


def card_text(model_id: str, domain: str | None, body: str) -> str:
    """The text routers read: the id and its words, the task, the body's meaningful paragraphs."""
    parts = [model_id, split_model_name(model_id)]
    if domain and domain != UNKNOWN_DOMAIN:
        parts.append(domain)
    body_text = card_body_text(body)
    if body_text:
        parts.append(body_text)
    return ". ".join(p for p in parts if p)


# -- Hugging Face card folders ----------------------------------------------------------------
def hf_card(model_id: str, content: str, where: str, created_at: int | None = None) -> Parsed:
    """One Hugging Face model card (README.md content) as a :class:`Parsed` item."""
    from huggingface_hub import ModelCard as HFCard

    try:
        card = HFCard(content, ignore_metadata_errors=False)
    except Exception as e:  # yaml and huggingface_hub raise several error types for a broken header
        first = " ".join(str(e).split())[:160]
        return Parsed(None, where, f"broken YAML front matter ({type(e).__name__}: {first})")
    return from_card_data(model_id, card.data.to_dict(), card.text, where, created_at)


def from_card_data(model_id: str, data: dict[str, Any], body: str, where: str, created_at: int | None = None) -> Parsed:
    """A card from Hugging Face card metadata (the YAML fields, or the Hub API's ``cardData``)
    and the Markdown body."""
    notes: list[str] = []
    tag = data.get("pipeline_tag")
    domain = domain_of(tag) if isinstance(tag, str) else None
    if domain is None:
        domain = UNKNOWN_DOMAIN
        notes.append("no pipeline_tag: imported with domain 'Unknown' (routed by its text only)")
    extra: dict[str, Any] = {"source": "huggingface"}
    if isinstance(tag, str):
        extra["pipeline_tag"] = tag
    for key in ("library_name", "license", "language", "tags", "datasets", "base_model"):
        if data.get(key) not in (None, "", []):
            extra[key] = data[key]
    params = _params(data)
    if params is not None:
        extra["params"] = params
    results = _results(data.get("model-index") or data.get("model_index"))
    if results:
        extra["results"] = results
    text = card_text(model_id, domain, body)
    card = ModelCard(model_id, "", domain, text, created_at, extra)
    problem = _card_problem(card)
    return Parsed(None if problem else card, where, problem, notes)


def _params(data: dict[str, Any]) -> int | None:
    for key in ("num_parameters", "params", "parameters", "model_size"):
        value = data.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return int(value)
        if isinstance(value, str):
            m = re.fullmatch(r"\s*([\d.]+)\s*([kKmMbBtT]?)\s*", value)
            if m:
                scale = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[m.group(2).lower()]
                return int(float(m.group(1)) * scale)
    return None


def _results(index: Any) -> list[dict[str, Any]]:
    """Model-index results, flattened to ``{task, dataset, metric, value}`` (at most 20)."""
    out: list[dict[str, Any]] = []
    if not isinstance(index, list):
        return out
    for entry in index:
        for res in (entry or {}).get("results", []) if isinstance(entry, dict) else []:
            if not isinstance(res, dict):
                continue
            task = (res.get("task") or {}).get("type") if isinstance(res.get("task"), dict) else None
            ds = res.get("dataset") if isinstance(res.get("dataset"), dict) else {}
            for m in res.get("metrics") or []:
                if isinstance(m, dict) and "value" in m:
                    metric = m.get("name") or m.get("type")
                    out.append(
                        {
                            "task": task,
                            "dataset": ds.get("name") or ds.get("type"),
                            "metric": metric,
                            "value": m["value"],
                        }
                    )
    return out[:20]


def _card_problem(card: ModelCard) -> str | None:
    """Why ``card`` cannot be registered, or None."""
    try:
        card.validate()
    except HubrouteError as e:
        return str(e)
    return None


def card_folder(root: Path) -> Iterator[Parsed]:
    """Every ``<org>/<name>/README.md`` (or ``<name>/README.md``) under ``root``, in sorted order."""
    if not root.is_dir():
        raise DataError("not a folder", root)
    for path in sorted(root.rglob(CARD_FILE)):
        rel = path.parent.relative_to(root).as_posix()
        if rel == ".":
            continue
        try:
            content = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            yield Parsed(None, str(path), f"not UTF-8 text (byte {e.start})")
            continue
        created = _created_from_file(path)
        yield hf_card(rel, content, str(path), created)


def _created_from_file(path: Path) -> int | None:
    meta = path.parent / "created_at"
    if meta.is_file():
        try:
            return _timestamp(meta.read_text(encoding="utf-8").strip())
        except ValueError:
            return None
    return None


# -- tables of cards ---------------------------------------------------------------------------
def card_table(path: Path) -> Iterator[Parsed]:
    """Cards from a JSONL, CSV or Parquet table (by extension). A CSV or Parquet table without a
    ``model_id`` or ``domain`` column is refused whole (:class:`DataError` naming the column)."""
    for where, row in table_rows(path, required=("model_id", "domain")):
        yield _from_row(row, where)


def table_rows(path: Path, required: tuple[str, ...] = ()) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(file:line, row)`` of a JSONL, CSV or Parquet file; structural problems (a missing file,
    bad JSON, a CSV without a header, a ``required`` column missing from a CSV or Parquet
    header) raise :class:`DataError` naming the file and line."""
    if not path.is_file():
        raise DataError("file not found", path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        from hubroute.data.lines import read_json_objects

        for lineno, row in read_json_objects(path):
            yield f"{path}:{lineno}", row
    elif suffix in (".csv", ".tsv"):
        try:
            f = path.open(newline="", encoding="utf-8")
            with f:
                reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
                if not reader.fieldnames:
                    raise DataError("no header line", path, 1)
                _check_columns(path, reader.fieldnames, required)
                for row in reader:
                    if None in row:
                        raise DataError("more fields than the header has", path, reader.line_num)
                    yield f"{path}:{reader.line_num}", {k: v for k, v in row.items() if v not in (None, "")}
        except UnicodeDecodeError as e:
            raise DataError(f"not UTF-8 text (byte {e.start})", path) from None
        except csv.Error as e:
            raise DataError(f"bad CSV ({e})", path) from None
    elif suffix == ".parquet":
        from hubroute.extras import require

        pq = require("pyarrow.parquet", "hub")
        try:
            table = pq.read_table(path)
        except Exception as e:
            raise DataError(f"unreadable Parquet ({type(e).__name__}: {e})", path) from None
        _check_columns(path, table.column_names, required)
        for i, row in enumerate(table.to_pylist(), 1):
            yield f"{path}:row {i}", {k: v for k, v in row.items() if v is not None}
    else:
        raise DataError("unknown table format (use .jsonl, .csv, .tsv or .parquet)", path)


def _check_columns(path: Path, header: list[str], required: tuple[str, ...]) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)} (the header has {', '.join(header)})", path, 1)


def _from_row(row: dict[str, Any], where: str) -> Parsed:
    model_id, domain = row.get("model_id"), row.get("domain")
    if not isinstance(model_id, str) or not model_id.strip():
        return Parsed(None, where, "missing model_id")
    if not isinstance(domain, str) or not domain.strip():
        return Parsed(None, where, f"{model_id}: missing domain")
    try:
        created = _timestamp(row["created_at"]) if "created_at" in row else None
    except ValueError:
        return Parsed(
            None, where, f"{model_id}: created_at {row['created_at']!r} is not ms since the epoch or an ISO date"
        )
    extra = {k: v for k, v in row.items() if k not in ("model_id", "domain", "family", "text", "created_at")}
    if "params" in extra:
        try:
            extra["params"] = int(float(extra["params"]))
        except (TypeError, ValueError):
            return Parsed(None, where, f"{model_id}: params {extra['params']!r} is not a number")
    text = row.get("text") or card_text(model_id.strip(), domain.strip(), "")
    family = str(row.get("family") or "")
    for name, value in (("text", text), ("family", family)):
        problem = text_problem(str(value), single_line=name == "family")
        if problem:
            return Parsed(None, where, f"{model_id}: {name} {problem}")
    card = ModelCard(model_id.strip(), family.strip(), domain.strip(), str(text), created, extra)
    problem = _card_problem(card)
    return Parsed(None if problem else card, where, problem)


def _timestamp(value: Any) -> int:
    """Milliseconds since the epoch from a number (ms) or an ISO date."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, (dt.datetime, dt.date)):
        d = value if isinstance(value, dt.datetime) else dt.datetime(value.year, value.month, value.day)
        return int((d if d.tzinfo else d.replace(tzinfo=dt.UTC)).timestamp() * 1000)
    text = str(value).strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    d = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int((d if d.tzinfo else d.replace(tzinfo=dt.UTC)).timestamp() * 1000)
