"""Reading line-oriented data files with errors that name the file and the line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from hubroute.errors import DataError


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of every non-blank line of a UTF-8 file; a line that is not UTF-8
    raises :class:`DataError` at ``path:line``, a missing file names the path."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise DataError("file not found", path) from None
    except IsADirectoryError:
        raise DataError("is a folder, not a file", path) from None
    with f:
        for lineno, raw in enumerate(f, 1):
            line = decode_line(raw, path, lineno)
            if line.strip():
                yield lineno, line


def decode_line(raw: bytes, path: Path, lineno: int) -> str:
    """One line's bytes as text; :class:`DataError` at ``path:lineno`` when they are not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start + 1} of the line)", path, lineno) from None


def json_problem(e: json.JSONDecodeError) -> str:
    """A one-line description of a JSON syntax error."""
    return f"invalid JSON: {e.msg} (column {e.colno})"


def read_json_objects(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` of every non-blank line of a JSONL file; a line that is not a
    JSON object raises :class:`DataError` at ``path:line``."""
    for lineno, line in read_lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(json_problem(e), path, lineno) from None
        if not isinstance(row, dict):
            raise DataError("expected a JSON object", path, lineno)
        yield lineno, row
