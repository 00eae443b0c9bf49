"""Score normalisation used to fuse routers: per-prompt z-scores and reciprocal ranks."""

from __future__ import annotations

import numpy as np

FUSIONS: tuple[str, ...] = ("zscore", "rrf")


def zscore(s: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Per-prompt standardisation of ``(n, m)`` scores, mean and spread taken over the columns
    where ``active`` is true."""
    a = s if active.all() else s[:, active]
    mu = a.mean(axis=1, keepdims=True)
    sd = a.std(axis=1, keepdims=True)
    return ((s - mu) / np.maximum(sd, 1e-6)).astype(np.float32, copy=False)


def rrf(s: np.ndarray, k: float = 60.0) -> np.ndarray:
    """Reciprocal-rank scores ``1 / (k + rank)`` per prompt (rank 1 = best)."""
    n, m = s.shape
    order = np.argsort(-s, axis=1, kind="stable")
    ranks = np.empty((n, m), dtype=np.float32)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(1, m + 1, dtype=np.float32), (n, m)), axis=1)
    return 1.0 / (k + ranks)
