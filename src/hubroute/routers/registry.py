"""The table of router kinds, and building or loading a router by kind or class path."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubroute.errors import DataError
from hubroute.plugins import ComponentTable

if TYPE_CHECKING:
    from hubroute.routers.base import Router

ROUTERS: ComponentTable[Router] = ComponentTable("router", "hubroute.routers.base:Router")
for _name, _path in (
    ("bm25", "hubroute.routers.bm25:BM25Router"),
    ("dense", "hubroute.routers.dense:DenseCardRouter"),
    ("hybrid", "hubroute.routers.hybrid:HybridRouter"),
    ("centroid", "hubroute.routers.centroid:CentroidRouter"),
    ("embedding", "hubroute.routers.embedding:EmbeddingRouter"),
    ("carve", "hubroute.routers.carve:CARvERouter"),
):
    ROUTERS.register(_name, _path)


def make_router(name: str, **params: Any) -> Router:
    """A new router of kind ``name`` (see :data:`ROUTERS`) or class path, built from ``params``."""
    return ROUTERS.resolve(name).from_params(params)


def load_router(directory: str | Path) -> Router:
    """A router saved with :meth:`Router.save`: its class is read from ``config.json`` (a class
    path, so routers defined outside hubroute load too, or a registered kind)."""
    from hubroute.routers.base import CONFIG_FILE, read_config

    directory = Path(directory)
    config = read_config(directory)
    name = config.get("class") or config["router"]
    if not isinstance(name, str):
        raise DataError("the router class must be a string", directory / CONFIG_FILE)
    cls = ROUTERS.resolve(name)
    params = config.get("params", {})
    if not isinstance(params, dict):
        raise DataError("params must be an object", directory / CONFIG_FILE)
    return cls._from_artifact(directory, params)
