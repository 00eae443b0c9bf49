"""Exact top-k: the matrix product of the queries with every row vector."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hubroute.index.base import check_rows, check_vectors
from hubroute.index.topk import topk
from hubroute.rowtable import append_rows, with_room

VECTORS = "index-vectors.npy"
META = "index.json"


class ExactIndex:
    """Every row scored for every query (float32, torch's matmul); the fastest below about 10^5
    rows and the reference the approximate index is measured against."""

    kind = "exact"

    def __init__(self) -> None:
        self.vectors: np.ndarray = np.zeros((0, 0), np.float32)
        self.active: np.ndarray = np.zeros(0, bool)

    def __len__(self) -> int:
        return len(self.active)

    def build(self, vectors: np.ndarray, active: np.ndarray | None = None) -> None:
        self.vectors = with_room(check_vectors(vectors, None))  # rows added later are written, not copied
        self.active = with_room(np.ones(len(self.vectors), bool) if active is None else np.asarray(active, bool))

    def add(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        rows = np.asarray(rows, np.int64)
        if len(rows) and (rows[0] != len(self) or np.any(np.diff(rows) != 1)):
            raise ValueError(f"rows must continue the index at {len(self)}")
        vectors = check_vectors(vectors, self.vectors.shape[1] if len(self) else None)
        self.vectors = append_rows(self.vectors, vectors) if len(self) else vectors
        self.active = append_rows(self.active, np.ones(len(vectors), bool))

    def set_active(self, rows: np.ndarray, active: bool) -> None:
        self.active[check_rows(rows, len(self))] = active

    def search(self, queries: np.ndarray, k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        from hubroute.encoders import matmul_t

        queries = check_vectors(queries, self.vectors.shape[1] if len(self) else None)
        eligible = self.active if mask is None else self.active & mask
        scores = matmul_t(queries, self.vectors) if len(self) else np.zeros((len(queries), 0), np.float32)
        return topk(scores, k, eligible)

    def save(self, directory: Path) -> None:
        np.save(directory / VECTORS, self.vectors)
        (directory / META).write_text(json.dumps({"kind": self.kind, "active": int(self.active.sum())}) + "\n")

    def load(self, directory: Path) -> None:
        self.vectors = np.load(directory / VECTORS, mmap_mode="r")
