"""Top-k selection over registry rows, honouring the active mask."""

from __future__ import annotations

import numpy as np


def topk(scores: np.ndarray, k: int, active: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` rows per prompt.

    ``scores``: ``(n, m)`` array over registry rows. ``active``: boolean ``(m,)`` mask; inactive
    rows are never returned. Returns ``(rows, values)``, both ``(n, k')`` with
    ``k' = min(k, number of active rows)``, sorted by decreasing score (equal scores among the
    returned rows: lower row first).
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    scores = np.asarray(scores, dtype=np.float32)
    n, m = scores.shape
    if active is not None:
        if active.shape != (m,):
            raise ValueError(f"mask has shape {active.shape}, scores have {m} columns")
        n_active = int(active.sum())
        if n_active < m:
            scores = np.where(active[None, :], scores, -np.inf)
    else:
        n_active = m
    k = min(k, n_active)
    if k == 0:
        return np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0), dtype=np.float32)
    if k < m:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(m), (n, m))
    vals = np.take_along_axis(scores, part, axis=1)
    # sort by (-score, row) for deterministic ties
    order = np.lexsort((part, -vals), axis=1)
    rows = np.take_along_axis(part, order, axis=1).astype(np.int64)
    return rows, np.take_along_axis(vals, order, axis=1)
