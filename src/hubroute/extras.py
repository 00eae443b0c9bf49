"""Optional dependencies: import them with a message that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from hubroute.errors import HubrouteError

EXTRAS = {
    "serve": "the HTTP service",
    "lora": "LoRA adapters and adapter merging",
    "onnx": "the ONNX Runtime encoder runtimes",
    "plots": "PNG plots in reports",
    "otel": "OpenTelemetry tracing",
    "hub": "Parquet tables of cards and prompts",
    "ann": "the approximate (HNSW) model index",
    "postgresql": "the PostgreSQL store",
    "ray": "serving on Ray Serve",
}


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``; when it is missing, raise :class:`HubrouteError` naming the extra
    (``pip install 'hubroute[EXTRA]'``) that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        what = EXTRAS.get(extra, extra)
        raise HubrouteError(
            f"{what} needs the '{extra}' extra ({e.name or module} is not installed): pip install 'hubroute[{extra}]'"
        ) from None


def available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it when it is already loaded)."""
    return importlib.util.find_spec(module) is not None
