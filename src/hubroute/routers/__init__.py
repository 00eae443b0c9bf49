"""Routers: the shared contract, zero-shot retrieval routers, the prompt-centroid router, the
trainable routers, and lookup by name or class path."""

from __future__ import annotations

from hubroute.routers.base import RouteHit, Router, RouteRequest
from hubroute.routers.bm25 import BM25Router
from hubroute.routers.carve import CARvERouter
from hubroute.routers.centroid import CentroidRouter
from hubroute.routers.dense import DenseCardRouter
from hubroute.routers.embedding import EmbeddingRouter
from hubroute.routers.hybrid import HybridRouter
from hubroute.routers.registry import ROUTERS, load_router, make_router

__all__ = [
    "ROUTERS",
    "BM25Router",
    "CARvERouter",
    "CentroidRouter",
    "DenseCardRouter",
    "EmbeddingRouter",
    "HybridRouter",
    "RouteHit",
    "RouteRequest",
    "Router",
    "load_router",
    "make_router",
]
