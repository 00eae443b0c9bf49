"""The encoder interface every router embeds text through, and two array helpers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Encoder(Protocol):
    """Maps texts to L2-normalised float32 vectors; ``name`` identifies model and settings."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Encode ``texts`` into an ``(len(texts), dim)`` float32 array with unit rows."""
        ...


def encode_queries(encoder: Encoder, texts: Sequence[str]) -> np.ndarray:
    """``texts`` encoded as prompts: through the encoder's ``encode_queries`` when it has one
    (an encoder with a query instruction), else as any text."""
    fn = getattr(encoder, "encode_queries", None)
    return fn(list(texts)) if fn is not None else encoder.encode(list(texts))


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def matmul_t(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b.T`` computed by torch, so routing shares torch's thread pool with the encoder.

    NumPy's BLAS threads and torch's OpenMP threads otherwise contend for the same cores
    between the encoder call and the scoring matmul.
    """
    import torch

    return (torch.from_numpy(np.ascontiguousarray(a)) @ torch.from_numpy(np.ascontiguousarray(b)).T).numpy()
