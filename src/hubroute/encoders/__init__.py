"""Text encoders behind one interface: the offline models of :mod:`hubroute.encoders.catalog`
(the default all-MiniLM-L6-v2, bge-small-en-v1.5, all-mpnet-base-v2), concatenations of them,
any sentence-transformers model, an on-disk embedding cache, and runtimes that convert an encoder
for serving.

Every encoder returns L2-normalised ``float32`` arrays of shape ``(n, dim)``
(:class:`~hubroute.encoders.base.Encoder`); prompts go through
:func:`~hubroute.encoders.base.encode_queries`, which adds a query instruction where the model has one.
"""

from __future__ import annotations

from pathlib import Path

from hubroute.encoders.base import Encoder, encode_queries, l2_normalise, matmul_t
from hubroute.encoders.cache import (
    CachedEncoder,
    EmbeddingCache,
    cached_encoders,
    caching,
    default_cache_dir,
    uncached,
)
from hubroute.encoders.catalog import (
    CATALOG,
    PROFILES,
    EncoderSpec,
    find_spec,
    resolve_profile,
    spec_folder,
    split_concat,
)
from hubroute.encoders.concat import ConcatEncoder
from hubroute.encoders.runtime import INFERENCE_PRECISIONS, convert_for_inference, prepare_encoder
from hubroute.encoders.sentence import DEFAULT_ENCODER, SentenceTransformerEncoder, resolve_model_path
from hubroute.errors import HubrouteError


def load_encoder(
    model: str = "default",
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    device: str | None = None,
    dtype: str = "float32",
    batch_size: int | None = None,
) -> Encoder:
    """The encoder a config names (``"default"``, a catalogued name such as ``bge-small`` or
    ``mpnet``, ``a+b`` for a concatenation, a profile ``fast`` or ``accurate``, a
    sentence-transformers name or a local path), wrapped in the on-disk cache (``cache_dir``,
    default :func:`default_cache_dir`) unless ``use_cache`` is off; each part of a
    concatenation has a cache of its own."""
    model = resolve_profile(model)
    kw = {"cache_dir": cache_dir, "use_cache": use_cache, "device": device, "dtype": dtype, "batch_size": batch_size}
    parts = split_concat(model)
    if len(parts) > 1:
        if not all(parts):
            raise HubrouteError(f"encoder {model!r}: a concatenation names its parts as 'a+b'")
        return ConcatEncoder([load_encoder(p, **kw) for p in parts], spec=model)
    spec = find_spec(model)
    enc: Encoder
    if spec is not None and spec.runtime == "onnx-file":
        from hubroute.encoders.onnx_file import OnnxFileEncoder

        enc = OnnxFileEncoder(spec, spec_folder(spec))
    else:
        enc = SentenceTransformerEncoder(model, device=device, dtype=dtype, batch_size=batch_size)
    if use_cache:
        enc = CachedEncoder(enc, cache_dir or default_cache_dir())
    return enc


__all__ = [
    "CATALOG",
    "DEFAULT_ENCODER",
    "INFERENCE_PRECISIONS",
    "PROFILES",
    "CachedEncoder",
    "ConcatEncoder",
    "EmbeddingCache",
    "Encoder",
    "EncoderSpec",
    "SentenceTransformerEncoder",
    "cached_encoders",
    "caching",
    "convert_for_inference",
    "default_cache_dir",
    "encode_queries",
    "find_spec",
    "l2_normalise",
    "load_encoder",
    "matmul_t",
    "prepare_encoder",
    "resolve_model_path",
    "resolve_profile",
    "uncached",
]
