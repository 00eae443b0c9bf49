"""Text encoders behind one interface: the offline default model, any sentence-transformers
model, an on-disk embedding cache, and runtimes that convert an encoder for serving.

Every encoder returns L2-normalised ``float32`` arrays of shape ``(n, dim)``
(:class:`~hubroute.encoders.base.Encoder`).
"""

from __future__ import annotations

from pathlib import Path

from hubroute.encoders.base import Encoder, l2_normalise, matmul_t
from hubroute.encoders.cache import CachedEncoder, EmbeddingCache, caching, default_cache_dir, uncached
from hubroute.encoders.runtime import INFERENCE_PRECISIONS, convert_for_inference, prepare_encoder
from hubroute.encoders.sentence import DEFAULT_ENCODER, SentenceTransformerEncoder, resolve_model_path


def load_encoder(
    model: str = "default",
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    device: str | None = None,
    dtype: str = "float32",
    batch_size: int = 32,
) -> Encoder:
    """The encoder a config names (``"default"``, a sentence-transformers name or a local path),
    wrapped in the on-disk cache (``cache_dir``, default :func:`default_cache_dir`) unless
    ``use_cache`` is off."""
    enc: Encoder = SentenceTransformerEncoder(model, device=device, dtype=dtype, batch_size=batch_size)
    if use_cache:
        enc = CachedEncoder(enc, cache_dir or default_cache_dir())
    return enc


__all__ = [
    "DEFAULT_ENCODER",
    "INFERENCE_PRECISIONS",
    "CachedEncoder",
    "EmbeddingCache",
    "Encoder",
    "SentenceTransformerEncoder",
    "caching",
    "convert_for_inference",
    "default_cache_dir",
    "l2_normalise",
    "load_encoder",
    "matmul_t",
    "prepare_encoder",
    "resolve_model_path",
    "uncached",
]
