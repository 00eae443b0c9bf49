"""The table of router kinds, and building or loading a router by kind or class path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hubroute.errors import DataError
from hubroute.plugins import ComponentTable
from hubroute.routers.base import Router, read_config
from hubroute.routers.bm25 import BM25Router
from hubroute.routers.carve import CARvERouter
from hubroute.routers.centroid import CentroidRouter
from hubroute.routers.dense import DenseCardRouter
from hubroute.routers.embedding import EmbeddingRouter
from hubroute.routers.hybrid import HybridRouter

ROUTERS: ComponentTable[Router] = ComponentTable("router", Router)
for _cls in (BM25Router, DenseCardRouter, HybridRouter, CentroidRouter, EmbeddingRouter, CARvERouter):
    ROUTERS.register(_cls.kind, _cls)


def make_router(name: str, **params: Any) -> Router:
    """A new router of kind ``name`` (see :data:`ROUTERS`) or class path, built from ``params``."""
    return ROUTERS.resolve(name).from_params(params)


def load_router(directory: str | Path) -> Router:
    """A router saved with :meth:`Router.save`: its class is read from ``config.json`` (a class
    path, so routers defined outside hubroute load too, or a registered kind)."""
    directory = Path(directory)
    config = read_config(directory)
    name = config.get("class") or config["router"]
    if not isinstance(name, str):
        raise DataError("the router class must be a string", directory / "config.json")
    cls = ROUTERS.resolve(name)
    params = config.get("params", {})
    if not isinstance(params, dict):
        raise DataError("params must be an object", directory / "config.json")
    return cls._from_artifact(directory, params)
