"""Top-k over per-model vectors: :class:`ExactIndex`, :class:`HNSWIndex`, and the plain
:func:`topk` over a score matrix (see :mod:`hubroute.index.base`)."""

from __future__ import annotations

from hubroute.index.base import AUTO_HNSW_ROWS, INDEX_KINDS, ModelIndex, make_index
from hubroute.index.exact import ExactIndex
from hubroute.index.topk import topk

__all__ = ["AUTO_HNSW_ROWS", "INDEX_KINDS", "ExactIndex", "ModelIndex", "make_index", "topk"]


def __getattr__(name: str):
    if name == "HNSWIndex":  # imported on use: it needs the `ann` extra
        from hubroute.index.hnsw import HNSWIndex

        return HNSWIndex
    raise AttributeError(name)
