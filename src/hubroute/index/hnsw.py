"""Approximate top-k: an HNSW graph (usearch) over the row vectors, for hubs of 10^5 rows and more.

Rows are usearch keys. The graph stores 8-bit vectors (``dtype="i8"``); a float16 copy of every
vector is kept beside it, so candidates are rescored exactly and small masks are searched exactly.
Retired rows and per-query masks never change the graph; they are honoured at search time:

- when the eligible rows (active and in the mask) are few (at most ``prefilter_rows``, or under
  ``prefilter_share`` of the index), they are *pre-filtered*: scored exactly, no graph search;
- otherwise the graph is searched for ``k`` divided by the eligible share (times 1.5, plus 16)
  candidates, the ineligible ones are dropped and the rest rescored exactly; when fewer than
  ``k`` survive, the search widens (doubling) and at last falls back to the exact path.

Added rows are inserted into the graph without a rebuild.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

from hubroute.errors import DataError
from hubroute.extras import require
from hubroute.index.base import check_rows, check_vectors
from hubroute.rowtable import append_rows, reserve_rows, with_room

GRAPH = "index-hnsw.usearch"
VECTORS = "index-vectors-f16.npy"
META = "index.json"


class HNSWIndex:
    """The HNSW index (see the module docstring): ``connectivity`` (M), ``expansion_add`` and
    ``expansion_search`` (ef at build and search time), ``dtype`` of the graph's vectors,
    ``threads`` (0: every core). The defaults were chosen by the settings sweep of the ``scale``
    benchmark (bench/results/scale)."""

    kind = "hnsw"

    def __init__(
        self,
        connectivity: int = 32,
        expansion_add: int = 128,
        expansion_search: int = 512,
        dtype: str = "i8",
        prefilter_rows: int = 20_000,
        prefilter_share: float = 0.02,
        threads: int = 0,
    ):
        require("usearch", "ann")
        self.connectivity, self.expansion_add, self.expansion_search = connectivity, expansion_add, expansion_search
        self.dtype, self.threads = dtype, threads
        self.prefilter_rows, self.prefilter_share = prefilter_rows, prefilter_share
        self.graph = None
        self._grow = threading.Lock()  # add and reserve replace the vector table one at a time
        self.vectors: np.ndarray = np.zeros((0, 0), np.float16)
        self.active: np.ndarray = np.zeros(0, bool)

    def __len__(self) -> int:
        return len(self.active)

    def _new_graph(self, ndim: int):
        from usearch.index import Index

        return Index(
            ndim=ndim,
            metric="ip",
            dtype=self.dtype,
            connectivity=self.connectivity,
            expansion_add=self.expansion_add,
            expansion_search=self.expansion_search,
        )

    def build(self, vectors: np.ndarray, active: np.ndarray | None = None) -> None:
        vectors = check_vectors(vectors, None)
        self.graph = self._new_graph(vectors.shape[1])
        self.vectors = with_room(vectors.astype(np.float16))  # rows added later are written, not copied
        self.active = with_room(np.ones(len(vectors), bool) if active is None else np.asarray(active, bool))
        if len(vectors):
            self.graph.add(np.arange(len(vectors), dtype=np.uint64), vectors, threads=self.threads)

    def reserve(self, extra: int) -> None:
        """Make room for ``extra`` more rows in the float16 table (after a load it is memory-mapped,
        and the first add would copy it), so a later :meth:`add` only writes them."""
        with self._grow:
            if len(self):
                self.vectors = reserve_rows(self.vectors, extra)

    def add(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        with self._grow:
            self._add(rows, vectors)

    def _add(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        rows = np.asarray(rows, np.int64)
        if len(rows) and (rows[0] != len(self) or np.any(np.diff(rows) != 1)):
            raise ValueError(f"rows must continue the index at {len(self)}")
        vectors = check_vectors(vectors, self.vectors.shape[1] if len(self) else None)
        if self.graph is None:
            self.graph = self._new_graph(vectors.shape[1])
        self.graph.add(rows.astype(np.uint64), vectors, threads=self.threads)
        self.vectors = append_rows(self.vectors, vectors) if len(self) else vectors.astype(np.float16)
        self.active = append_rows(self.active, np.ones(len(rows), bool))

    def set_active(self, rows: np.ndarray, active: bool) -> None:
        self.active[check_rows(rows, len(self))] = active

    def search(self, queries: np.ndarray, k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if k < 1:
            raise ValueError("k must be at least 1")
        queries = check_vectors(queries, self.vectors.shape[1] if len(self) else None)
        eligible = self.active if mask is None else self.active & np.asarray(mask, bool)
        n_eligible = int(eligible.sum())
        k = min(k, n_eligible)
        if k == 0:
            return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
        if n_eligible <= self.prefilter_rows or n_eligible < self.prefilter_share * len(self):
            return self._exact(queries, k, np.flatnonzero(eligible))
        rows_out = np.zeros((len(queries), k), np.int64)
        vals_out = np.zeros((len(queries), k), np.float32)
        fetch = min(len(self), int(np.ceil(k * len(self) / n_eligible * 1.5)) + 16)
        todo = np.arange(len(queries))
        while len(todo):
            found = self.graph.search(queries[todo], fetch, threads=self.threads, exact=False)
            keys = np.asarray(found.keys, dtype=np.int64).reshape(len(todo), -1)
            # one query gives usearch's Matches (keys cut to what was found), more give BatchMatches
            counts = np.asarray(found.counts).reshape(-1) if hasattr(found, "counts") else [keys.shape[1]]
            short = []
            for j, qi in enumerate(todo):
                cand = keys[j, : counts[j]]
                cand = cand[(cand >= 0) & (cand < len(self))]
                cand = cand[eligible[cand]]
                if len(cand) < k:
                    short.append(qi)
                    continue
                scores = self.vectors[cand].astype(np.float32) @ queries[qi]
                order = np.lexsort((cand, -scores))[:k]
                rows_out[qi], vals_out[qi] = cand[order], scores[order]
            todo = np.asarray(short, np.int64)
            if len(todo):
                if fetch >= len(self) or fetch >= 8 * self.prefilter_rows:
                    r, v = self._exact(queries[todo], k, np.flatnonzero(eligible))
                    rows_out[todo], vals_out[todo] = r, v
                    break
                fetch = min(len(self), 2 * fetch)
        return rows_out, vals_out

    def _exact(self, queries: np.ndarray, k: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over ``rows`` (the pre-filter path): a brute-force float16 scan (usearch's
        SIMD kernels), its top-k rescored in float32 and ordered by score, then row."""
        from usearch.index import search

        sub = np.ascontiguousarray(self.vectors[rows])
        found = search(sub, queries.astype(np.float16), min(len(rows), k + 8), "ip", exact=True, threads=self.threads)
        local = np.asarray(found.keys, dtype=np.int64).reshape(len(queries), -1)
        rows_out = np.zeros((len(queries), k), np.int64)
        vals_out = np.zeros((len(queries), k), np.float32)
        for i in range(len(queries)):
            cand = rows[local[i]]
            scores = sub[local[i]].astype(np.float32) @ queries[i]
            order = np.lexsort((cand, -scores))[:k]
            rows_out[i], vals_out[i] = cand[order], scores[order]
        return rows_out, vals_out

    def save(self, directory: Path) -> None:
        if self.graph is not None:
            self.graph.save(str(directory / GRAPH))
        np.save(directory / VECTORS, self.vectors)
        meta = {
            "kind": self.kind,
            "rows": len(self),
            "connectivity": self.connectivity,
            "expansion_add": self.expansion_add,
            "expansion_search": self.expansion_search,
            "dtype": self.dtype,
        }
        (directory / META).write_text(json.dumps(meta) + "\n")
        np.save(directory / "index-active.npy", self.active)

    def load(self, directory: Path) -> None:
        try:
            meta = json.loads((directory / META).read_text())
            self.vectors = np.load(directory / VECTORS, mmap_mode="r")
            self.active = np.load(directory / "index-active.npy")
        except (OSError, ValueError) as e:
            raise DataError(f"unreadable index ({type(e).__name__}: {e})", directory) from None
        self.connectivity, self.dtype = meta["connectivity"], meta["dtype"]
        self.expansion_add, self.expansion_search = meta["expansion_add"], meta["expansion_search"]
        self.graph = self._new_graph(self.vectors.shape[1])
        if (directory / GRAPH).is_file():
            self.graph.load(str(directory / GRAPH))
        if len(self.graph) != len(self.vectors):
            raise DataError(f"the graph has {len(self.graph)} rows, the vectors {len(self.vectors)}", directory)
