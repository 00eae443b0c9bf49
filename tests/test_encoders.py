from __future__ import annotations

import numpy as np
import pytest

from hubroute.encoders import CachedEncoder, EmbeddingCache, SentenceTransformerEncoder, resolve_model_path, uncached
from hubroute.errors import HubrouteError


def test_default_encoder_is_offline_and_normalised(encoder):
    v = encoder.encode(
        ["translate Spanish text to English", "traducir texto del español al inglés", "count cars in a photo"]
    )
    assert v.dtype == np.float32 and v.shape == (3, encoder.dim) == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2]
    assert encoder.encode([]).shape == (0, 384)


def test_cache_encodes_each_text_once(encoder, tmp_path):
    inner = encoder.inner
    c = CachedEncoder(inner, tmp_path)
    a = c.encode(["alpha", "beta", "alpha"])
    assert (c.misses, c.hits) == (2, 1)
    b = c.encode(["beta", "alpha"])
    assert (c.misses, c.hits) == (2, 3)
    assert np.allclose(a[[1, 0]], b)
    # a second process-level instance reads the same file
    c2 = CachedEncoder(inner, tmp_path)
    c2.encode(["alpha"])
    assert c2.misses == 0 and len(c2.cache) == 2
    with uncached(type("R", (), {"encoders": lambda self: [c2]})()):
        c2.encode(["gamma"])
    assert c2.misses == 0 and len(c2.cache) == 2  # bypassed, not stored


def test_cache_keys_differ_per_encoder(tmp_path):
    a, b = EmbeddingCache(tmp_path, "enc-a"), EmbeddingCache(tmp_path, "enc-b")
    a.put_many([EmbeddingCache.key("x")], np.ones((1, 3), np.float32))
    assert b.get_many([EmbeddingCache.key("x")]) == {}
    assert a.path != b.path


def test_bad_encoder_names():
    with pytest.raises(HubrouteError, match="dtype"):
        SentenceTransformerEncoder("default", dtype="int8")
    assert resolve_model_path("some/local/path") == "some/local/path"
    assert resolve_model_path("default").endswith("model")
