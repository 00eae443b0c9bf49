"""Routers: the shared contract, zero-shot retrieval routers, the prompt-centroid router, the
trainable routers, and lookup by name or class path.

Names are imported on first use, so ``from hubroute.routers import ROUTERS`` stays cheap."""

from __future__ import annotations

from hubroute.plugins import lazy_exports

_WHERE = {
    "RouteHit": "hubroute.routers.base",
    "Router": "hubroute.routers.base",
    "RouteRequest": "hubroute.routers.base",
    "BM25Router": "hubroute.routers.bm25",
    "CARvERouter": "hubroute.routers.carve",
    "CentroidRouter": "hubroute.routers.centroid",
    "DenseCardRouter": "hubroute.routers.dense",
    "EmbeddingRouter": "hubroute.routers.embedding",
    "HybridRouter": "hubroute.routers.hybrid",
    "ROUTERS": "hubroute.routers.registry",
    "load_router": "hubroute.routers.registry",
    "make_router": "hubroute.routers.registry",
}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
