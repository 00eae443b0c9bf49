"""Routers: the shared contract, zero-shot retrieval routers, the prompt-centroid router, the
trainable routers, and lookup by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hubroute.errors import HubrouteError
from hubroute.naming import build
from hubroute.routers.base import RouteHit, Router, read_config
from hubroute.routers.bm25 import BM25Router
from hubroute.routers.carve import CARvERouter
from hubroute.routers.centroid import CentroidRouter
from hubroute.routers.dense import DenseCardRouter
from hubroute.routers.embedding import EmbeddingRouter
from hubroute.routers.hybrid import HybridRouter

ROUTERS: dict[str, type[Router]] = {
    BM25Router.kind: BM25Router,
    DenseCardRouter.kind: DenseCardRouter,
    HybridRouter.kind: HybridRouter,
    CentroidRouter.kind: CentroidRouter,
    EmbeddingRouter.kind: EmbeddingRouter,
    CARvERouter.kind: CARvERouter,
}


def make_router(name: str, **params: Any) -> Router:
    """A new router of kind ``name`` (see :data:`ROUTERS`) built with ``params``."""
    return build(ROUTERS, "router", name, params)


def load_router(directory: str | Path) -> Router:
    """A router saved with :meth:`Router.save`."""
    directory = Path(directory)
    config = read_config(directory)
    name = config["router"]
    if name not in ROUTERS:
        raise HubrouteError(f"{directory}: saved router kind {name!r} is not known to this hubroute")
    return ROUTERS[name]._from_artifact(directory, config.get("params", {}))


__all__ = [
    "ROUTERS",
    "BM25Router",
    "CARvERouter",
    "CentroidRouter",
    "DenseCardRouter",
    "EmbeddingRouter",
    "HybridRouter",
    "RouteHit",
    "Router",
    "load_router",
    "make_router",
]
