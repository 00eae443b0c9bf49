"""Per-row tables (one row a model) that grow without copying themselves every time.

:func:`append_rows` returns the table with rows appended as a view of a buffer with spare room,
so adding a batch of cards to a hub of a million rows writes the new rows instead of copying the
million: when the buffer behind the table has room, the rows go there; otherwise a buffer an
eighth larger than needed is allocated and the table copied into it once.

A buffer is extended only through its newest view. An older, shorter view of the same buffer
(a table someone kept before an append) is copied when it grows, so two tables never write into
the same rows.
"""

from __future__ import annotations

import weakref

import numpy as np

SLACK = 0.125  # spare rows allocated on growth, as a share of the rows held

_handed_out: dict[int, int] = {}  # id of a buffer made here -> rows its newest view holds


def append_rows(table: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``table`` (``(n, ...)``) with ``rows`` (``(m, ...)``, cast to the table's dtype) appended;
    the result is a new array object, ``table`` itself is unchanged."""
    rows = np.asarray(rows, dtype=table.dtype)
    if rows.shape[1:] != table.shape[1:]:
        raise ValueError(f"rows of shape {rows.shape[1:]} do not fit a table of rows {table.shape[1:]}")
    n, m = len(table), len(rows)
    buf = table.base
    if (
        isinstance(buf, np.ndarray)
        and _handed_out.get(id(buf)) == n
        and len(buf) >= n + m
        and buf.shape[1:] == table.shape[1:]
        and buf.dtype == table.dtype
        and table.ctypes.data == buf.ctypes.data
    ):
        buf[n : n + m] = rows
    else:
        buf = np.empty((n + m + max(16, int(SLACK * (n + m))), *table.shape[1:]), table.dtype)
        buf[:n] = table
        buf[n : n + m] = rows
        weakref.finalize(buf, _handed_out.pop, id(buf), None)
    _handed_out[id(buf)] = n + m
    return buf[: n + m]


def with_room(table: np.ndarray) -> np.ndarray:
    """``table`` copied into a buffer with spare rows (for a table just loaded from disk, so the
    first rows added later are written, not the whole table copied)."""
    return append_rows(table, table[:0])


def reserve_rows(table: np.ndarray, extra: int) -> np.ndarray:
    """``table`` with room for ``extra`` more rows behind it: itself when its buffer has that room
    already, else a copy in a larger buffer (do this outside any lock that readers wait on, so
    the later :func:`append_rows` only writes)."""
    buf = table.base
    if (
        isinstance(buf, np.ndarray)
        and _handed_out.get(id(buf)) == len(table)
        and len(buf) >= len(table) + extra
        and table.ctypes.data == buf.ctypes.data
    ):
        return table
    grown = append_rows(table, np.zeros((extra, *table.shape[1:]), table.dtype))
    _handed_out[id(grown.base)] = len(table)
    return grown[: len(table)]
