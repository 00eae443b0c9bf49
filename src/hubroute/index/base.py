"""The model index: top-k over per-model vectors, with the active mask and per-query masks.

Routers that score a prompt by the cosine (or a positive multiple of it) between its vector and
one vector per registry row search through a :class:`ModelIndex`: :class:`~hubroute.index.exact.ExactIndex`
(a matrix product) or :class:`~hubroute.index.hnsw.HNSWIndex` (an approximate HNSW graph).
Rows are registry rows; a retired row is masked, never removed, and an added row is appended.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from hubroute.errors import HubrouteError

INDEX_KINDS = ("exact", "hnsw", "auto")
AUTO_HNSW_ROWS = 100_000  # "auto": exact below this many rows, HNSW from it on (bench/results/scale)


@runtime_checkable
class ModelIndex(Protocol):
    """Top-k over unit row vectors (cosine)."""

    kind: str

    def build(self, vectors: np.ndarray, active: np.ndarray | None = None) -> None:
        """Index ``vectors`` (rows 0..n-1); ``active`` masks retired rows."""
        ...

    def add(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Append rows (their numbers continue the index's) with their vectors, active."""
        ...

    def set_active(self, rows: np.ndarray, active: bool) -> None:
        """Mask (``False``) or unmask rows; nothing is rebuilt."""
        ...

    def search(self, queries: np.ndarray, k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best active rows per query (and in ``mask`` when given) as ``(rows, cosines)``,
        both ``(n, k')`` with ``k'`` at most the number of eligible rows, best first."""
        ...

    def save(self, directory: Path) -> None:
        """Write the index to ``directory``."""
        ...

    def load(self, directory: Path) -> None:
        """Read what :meth:`save` wrote."""
        ...

    def __len__(self) -> int: ...


def check_vectors(vectors: np.ndarray, dim: int | None) -> np.ndarray:
    """``vectors`` as a C-contiguous float32 ``(n, dim)`` array; a wrong shape is an error."""
    vectors = np.asarray(vectors)
    if vectors.ndim != 2:
        raise HubrouteError(f"index vectors must be a 2-D array, got shape {vectors.shape}")
    if dim is not None and vectors.shape[1] != dim:
        raise HubrouteError(f"index vectors have dimension {vectors.shape[1]}; the index has {dim}")
    return np.ascontiguousarray(vectors, dtype=np.float32)


def check_rows(rows: np.ndarray, n: int) -> np.ndarray:
    """``rows`` as int64; a row outside ``0..n-1`` is an error."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        bad = rows[(rows < 0) | (rows >= n)][0]
        raise HubrouteError(f"unknown index row {int(bad)} (the index has {n} rows)")
    return rows


def make_index(kind: str, n_rows: int = 0, **options) -> ModelIndex:
    """An empty index of ``kind`` (``auto`` picks by ``n_rows``)."""
    if kind not in INDEX_KINDS:
        raise HubrouteError(f"unknown index {kind!r}; choose one of {', '.join(INDEX_KINDS)}")
    if kind == "auto":
        kind = "hnsw" if n_rows >= AUTO_HNSW_ROWS else "exact"
    if kind == "hnsw":
        from hubroute.index.hnsw import HNSWIndex

        return HNSWIndex(**options)
    from hubroute.index.exact import ExactIndex

    return ExactIndex()
