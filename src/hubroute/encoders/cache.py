"""An on-disk embedding cache and the encoder wrapper that reads through it."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from hubroute.encoders.base import Encoder, encode_queries

CHUNK = 4096  # misses encoded and stored per step
QUERY_SALT = b"\x00query\x00"  # prefix of the cache keys of texts encoded as prompts


class EmbeddingCache:
    """Vectors on disk in one SQLite file per encoder, keyed by the SHA-256 of the text.

    Safe to share between threads of one process; writes are committed in batches.
    """

    def __init__(self, directory: str | Path, encoder_name: str):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        slug = hashlib.sha256(encoder_name.encode()).hexdigest()[:16]
        self.path = self.directory / f"emb-{slug}.sqlite"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
        self._db.execute("CREATE TABLE IF NOT EXISTS vec (h BLOB PRIMARY KEY, v BLOB)")
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('encoder', ?)", (encoder_name,))
        self._db.commit()

    @staticmethod
    def key(text: str, salt: bytes = b"") -> bytes:
        """Cache key of one text (``salt`` keeps texts encoded in another role apart)."""
        return hashlib.sha256(salt + text.encode("utf-8")).digest()

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """Vectors found for ``keys`` (missing keys are absent from the result)."""
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = list(keys[i : i + 500])
                q = f"SELECT h, v FROM vec WHERE h IN ({','.join('?' * len(chunk))})"
                for h, v in self._db.execute(q, chunk):
                    found[h] = np.frombuffer(v, dtype=np.float32)
        return found

    def put_many(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store vectors (float32 rows) under ``keys``."""
        rows = [(k, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in zip(keys, vectors, strict=True)]
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO vec VALUES (?, ?)", rows)
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM vec").fetchone()[0])

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()


class CachedEncoder:
    """Wraps an :class:`Encoder` so each distinct text is encoded once, ever, per encoder.

    Misses are encoded and stored in chunks of :data:`CHUNK` texts, so a long pass (a whole hub's
    cards) that is interrupted resumes where it stopped: the next call finds those chunks cached.
    """

    def __init__(self, encoder: Encoder, cache_dir: str | Path):
        self.inner = encoder
        self.spec = getattr(encoder, "spec", None)
        self.name = encoder.name
        self.dim = encoder.dim
        self.cache = EmbeddingCache(cache_dir, encoder.name)
        self.hits = 0
        self.misses = 0
        self.enabled = True
        self._local = threading.local()  # per-thread override of ``enabled`` (see :func:`caching`)

    def rekey(self, name: str) -> None:
        """Read and write vectors under encoder name ``name`` from now on (an encoder converted
        for inference gets a cache of its own, so its vectors never mix with the original's)."""
        self.cache.close()
        self.name = name
        self.cache = EmbeddingCache(self.cache.directory, name)

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Encode texts, reading cached vectors and encoding only the misses."""
        return self._through_cache(list(texts), lambda ts: self.inner.encode(ts, show_progress=show_progress), b"")

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts as prompts (see :func:`~hubroute.encoders.base.encode_queries`); cached
        apart from the same texts encoded as documents when the inner encoder tells them apart."""
        if getattr(self.inner, "encode_queries", None) is None:
            return self.encode(texts)
        return self._through_cache(list(texts), lambda ts: encode_queries(self.inner, ts), QUERY_SALT)

    def _through_cache(self, texts: list[str], encode: Callable[[list[str]], np.ndarray], salt: bytes) -> np.ndarray:
        if not (self.enabled or getattr(self._local, "forced", False)):
            return encode(texts)
        keys = [EmbeddingCache.key(t, salt) for t in texts]
        found = self.cache.get_many(keys)
        todo: dict[bytes, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in found and k not in todo:
                todo[k] = t
        if todo:
            self._encode_misses(list(todo), list(todo.values()), found, encode)
        self.misses += len(todo)
        self.hits += len(texts) - len(todo)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)

    def _encode_misses(
        self,
        keys: list[bytes],
        texts: list[str],
        found: dict[bytes, np.ndarray],
        encode: Callable[[list[str]], np.ndarray],
    ) -> None:
        """Encode ``texts`` chunk by chunk, storing each chunk before the next."""
        if len(texts) <= CHUNK:
            vecs = encode(texts)
            self.cache.put_many(keys, vecs)
            found.update(zip(keys, vecs, strict=True))
            return
        from hubroute import progress

        with progress.task(f"encode {len(texts)} texts", len(texts)) as advance:
            for i in range(0, len(texts), CHUNK):
                vecs = encode(texts[i : i + CHUNK])
                self.cache.put_many(keys[i : i + CHUNK], vecs)
                found.update(zip(keys[i : i + CHUNK], vecs, strict=True))
                advance(len(vecs))


def cached_encoders(owner: object) -> list[CachedEncoder]:
    """Every :class:`CachedEncoder` among the encoders ``owner`` reports through an
    ``encoders()`` method, the parts of a concatenated encoder included."""
    out: list[CachedEncoder] = []
    todo = list(getattr(owner, "encoders", list)())
    while todo:
        e = todo.pop(0)
        if isinstance(e, CachedEncoder):
            out.append(e)
        todo.extend(getattr(e, "parts", []))
    return out


@contextmanager
def uncached(owner: object) -> Iterator[None]:
    """Within the block, every :class:`CachedEncoder` that ``owner`` reports through an
    ``encoders()`` method encodes afresh (used to time routing honestly)."""
    found = cached_encoders(owner)
    for e in found:
        e.enabled = False
    try:
        yield
    finally:
        for e in found:
            e.enabled = True


@contextmanager
def caching(owner: object) -> Iterator[None]:
    """Within the block, and in the calling thread only, every :class:`CachedEncoder` that
    ``owner`` reports reads and writes its cache even when it is switched off (a service that
    leaves prompts uncached keeps the vectors of the cards it adds)."""
    found = cached_encoders(owner)
    for e in found:
        e._local.forced = True
    try:
        yield
    finally:
        for e in found:
            e._local.forced = False


def default_cache_dir() -> Path:
    """``$HUBROUTE_CACHE`` or ``~/.cache/hubroute/embeddings``."""
    env = os.environ.get("HUBROUTE_CACHE")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "hubroute" / "embeddings"
