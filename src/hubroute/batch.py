"""Offline batch routing: a prompt log of any size in, a Parquet file of routes out.

:func:`route_file` reads prompts lazily (a text file with one prompt a line, JSON lines with a
``prompt`` field, or a Parquet file with a ``prompt`` column), routes them ``batch_size`` at a
time and appends each batch to the output as it goes, so memory stays flat whatever the input's
size. The output has one row per (prompt, rank): ``line`` (the prompt's line or row number, from
1), ``prompt``, ``rank`` (from 1), ``model_id``, ``score``, ``domain``, ``family`` and ``error``.
A prompt that cannot be routed (empty, too long, a control character, not a string) gets one row
with its ``error`` and no model, and never stops its neighbours. The file appears under its name
only when complete (written beside it, then renamed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubroute import progress
from hubroute.errors import DataError, HubrouteError
from hubroute.extras import require

MAX_PROMPT_CHARS = 4000  # the service's limit (hubroute.service.config.ServiceConfig)


@dataclass
class BatchReport:
    """What :func:`route_file` did: prompts ``routed``, prompts ``rejected`` (with the first few
    ``problems`` as ``line: message``), and the ``output`` path."""

    output: Path
    routed: int = 0
    rejected: int = 0
    problems: list[str] = field(default_factory=list)


def schema() -> Any:
    """The output file's columns."""
    import pyarrow as pa

    return pa.schema(
        [
            ("line", pa.int64()),
            ("prompt", pa.string()),
            ("rank", pa.int32()),
            ("model_id", pa.string()),
            ("score", pa.float32()),
            ("domain", pa.string()),
            ("family", pa.string()),
            ("error", pa.string()),
        ]
    )


def read_prompt_log(path: Path, batch_size: int = 4096) -> Iterator[list[tuple[int, Any]]]:
    """Batches of ``(line or row number, prompt)`` from ``path`` (``.parquet``: its ``prompt``
    column; otherwise text, one prompt a line, or JSON lines with ``prompt``). A prompt that is
    not a string is passed on as it is (the router's caller rejects it); a JSON line without a
    ``prompt`` is an error at that line, as is a file that is not UTF-8."""
    if is_parquet(path):
        pf = open_prompt_parquet(path)
        row = 0
        for rb in pf.iter_batches(batch_size=batch_size, columns=["prompt"]):
            values = rb.column(0).to_pylist()
            yield [(row + i + 1, v) for i, v in enumerate(values)]
            row += len(values)
        return
    from hubroute.data.lines import read_lines

    chunk: list[tuple[int, Any]] = []
    for lineno, line in read_lines(path):
        try:
            text = parse_line(line)
        except ValueError as e:
            raise DataError(str(e), path, lineno) from None
        chunk.append((lineno, text))
        if len(chunk) >= batch_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def is_parquet(path: Path) -> bool:
    """Whether a prompt log is read as Parquet (by its suffix)."""
    return path.suffix.lower() in (".parquet", ".pq")


def open_prompt_parquet(path: Path) -> Any:
    """``path`` as a ``pyarrow.parquet.ParquetFile`` with a ``prompt`` column (:class:`DataError`
    when it is missing, not Parquet or has no such column)."""
    try:
        pf = _parquet().ParquetFile(path)
    except FileNotFoundError:
        raise DataError("file not found", path) from None
    except Exception as e:
        raise DataError(f"not a Parquet file ({e})", path) from None
    if "prompt" not in pf.schema_arrow.names:
        raise DataError(f"no 'prompt' column (columns: {', '.join(pf.schema_arrow.names)})", path)
    return pf


def parse_line(line: str) -> Any:
    """The prompt of one non-blank line of a prompt log: the line itself, or the ``prompt`` field
    of a JSON object (ValueError when it has none)."""
    text: Any = line.strip()
    if text.startswith("{"):
        try:
            text = json.loads(text)["prompt"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError("a JSON line needs a 'prompt' field") from None
    return text


def _parquet() -> Any:
    require("pyarrow", "hub")
    import pyarrow.parquet as pq

    return pq


def prompt_problem(prompt: Any) -> str | None:
    """Why ``prompt`` cannot be routed, as a predicate (``"is empty"``), or None."""
    from hubroute.hub import text_problem

    if not isinstance(prompt, str):
        return f"is {type(prompt).__name__}, not text"
    if not prompt.strip():
        return "is empty"
    if len(prompt) > MAX_PROMPT_CHARS:
        return f"has {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}"
    return text_problem(prompt)


def count_prompts(path: Path) -> int | None:
    """How many prompts ``path`` holds when that is cheap to know (Parquet metadata), else None."""
    if is_parquet(path):
        try:
            return int(_parquet().ParquetFile(path).metadata.num_rows)
        except Exception:
            return None
    return None


def route_file(
    router: Any,
    source: str | Path,
    output: str | Path,
    *,
    k: int = 5,
    batch_size: int = 256,
    domain: str | None = None,
    constraints: Any = None,
) -> BatchReport:
    """Route every prompt of ``source`` with ``router`` (top ``k``, optionally within ``domain``
    or ``constraints``) into the Parquet file ``output``; see the module docstring."""
    pa = require("pyarrow", "hub")
    pq = _parquet()
    if k < 1 or batch_size < 1:
        raise HubrouteError("k and batch_size must be at least 1")
    source, output = Path(source), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    report = BatchReport(output)
    columns = schema()
    try:
        with (
            pq.ParquetWriter(tmp, columns) as writer,
            progress.task(f"route {source.name}", count_prompts(source)) as advance,
        ):
            for batch in read_prompt_log(source, batch_size):
                rows = route_batch(router, batch, k, domain, constraints, report)
                writer.write_table(pa.Table.from_pylist(rows, schema=columns))
                advance(len(batch))
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return report


def route_batch(
    router: Any, batch: list[tuple[int, Any]], k: int, domain: str | None, constraints: Any, report: BatchReport
) -> list[dict[str, Any]]:
    """The output rows of one batch of ``(line, prompt)``: ``k`` rows per routable prompt, one
    ``error`` row per other prompt (counted in ``report``), in line order."""
    good, rows = [], []
    for line, prompt in batch:
        problem = prompt_problem(prompt)
        if problem is None:
            good.append((line, prompt.strip()))
            continue
        problem = f"the prompt {problem}"
        report.rejected += 1
        if len(report.problems) < 5:
            report.problems.append(f"{line}: {problem}")
        text = prompt if isinstance(prompt, str) else None
        rows.append(
            {
                "line": line,
                "prompt": text,
                "rank": None,
                "model_id": None,
                "score": None,
                "domain": None,
                "family": None,
                "error": problem,
            }
        )
    if good:
        hits = router.route([p for _, p in good], k, domain=domain, constraints=constraints)
        for (line, prompt), answer in zip(good, hits, strict=True):
            for rank, h in enumerate(answer, 1):
                rows.append(
                    {
                        "line": line,
                        "prompt": prompt,
                        "rank": rank,
                        "model_id": h.model_id,
                        "score": float(h.score),
                        "domain": h.domain,
                        "family": h.family,
                        "error": None,
                    }
                )
        report.routed += len(good)
    rows.sort(key=lambda r: (r["line"], r["rank"] or 0))
    return rows
