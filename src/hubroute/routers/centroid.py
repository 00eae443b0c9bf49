"""Prompt-centroid router: each model is the running mean of its labelled prompts' embeddings.

No gradient step is taken: learning an experience adds the unit embeddings of its training
prompts to per-model sums, so the router after experience ``t`` is exactly the router fitted on
all data so far (the model vector is the mean over *every* prompt seen, including prompts of a
model that recurs in a later experience), and the cost of an experience is encoding its prompts.
Nothing is forgotten except through competition with new models.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from hubroute.encoders import Encoder, encode_queries, l2_normalise, matmul_t
from hubroute.errors import DataError, HubrouteError
from hubroute.hub import Experience, ModelCard, Registry
from hubroute.routers.base import Router
from hubroute.routers.encoded import FrozenEncoderMixin
from hubroute.routers.indexed import IndexedRouter
from hubroute.rowtable import append_rows

STATE_FILE = "centroids.safetensors"


class CentroidRouter(IndexedRouter, FrozenEncoderMixin, Router):
    """Route to the model whose prompt centroid is nearest (cosine) to the prompt.

    ``encoder``: an :class:`~hubroute.encoders.Encoder` or a model name for
    :func:`~hubroute.encoders.load_encoder` (frozen; built on first use). ``card_weight``: the
    model card's embedding counts as that many extra prompts in the model's mean (0 uses the
    card only for models without prompts). A model without any labelled prompt is its card.

    Learned state: ``card_vectors_`` ``(rows, dim)``, ``sums_`` (float64 sums of unit prompt
    vectors) and ``counts_`` (prompts per row).
    """

    kind = "centroid"

    def __init__(
        self,
        encoder: Encoder | str = "default",
        card_weight: float = 0.5,
        index: str = "exact",
        index_options: dict[str, Any] | None = None,
        registry: Registry | None = None,
    ):
        if not card_weight >= 0:
            raise HubrouteError(f"card_weight must be >= 0, got {card_weight!r}")
        super().__init__(registry)
        self._set_encoder(encoder)
        self.card_weight = float(card_weight)
        self.card_vectors_: np.ndarray | None = None
        self.sums_: np.ndarray | None = None
        self.counts_: np.ndarray | None = None
        self._centroids: np.ndarray | None = None
        self._set_index(index, index_options)

    def get_params(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder_param(),
            "card_weight": self.card_weight,
            "index": self.index,
            "index_options": self.index_options,
        }

    def row_matrix(self) -> np.ndarray:
        return self.centroids()

    def query_matrix(self, prompts: Sequence[str]) -> np.ndarray:
        return encode_queries(self.encoder, prompts)

    # -- learning ------------------------------------------------------------------------
    def _prepare_rows(self, cards: list[ModelCard]) -> np.ndarray:
        return self.encoder.encode([c.text or c.model_id for c in cards])

    def _commit_rows(self, rows: np.ndarray, vecs: np.ndarray) -> None:
        dim = vecs.shape[1]
        if self.card_vectors_ is None:
            self.card_vectors_ = np.zeros((0, dim), np.float32)
            self.sums_ = np.zeros((0, dim), np.float64)
            self.counts_ = np.zeros(0, np.int64)
        self.card_vectors_ = append_rows(self.card_vectors_, vecs)
        self.sums_ = append_rows(self.sums_, np.zeros((len(rows), dim)))
        self.counts_ = append_rows(self.counts_, np.zeros(len(rows), np.int64))
        self._centroids = None

    def _learn(self, experience: Experience) -> None:
        """Add the experience's training prompts to their models' sums."""
        if not experience.train:
            return
        unknown = sorted({ex.model_id for ex in experience.train if ex.model_id not in self.registry_})
        if unknown:
            raise HubrouteError(
                f"{experience.name}: {len(unknown)} training example model(s) are not registered: "
                f"{', '.join(unknown[:5])}"
            )
        rows = self.registry_.rows(ex.model_id for ex in experience.train)
        vecs = encode_queries(self.encoder, [ex.prompt for ex in experience.train]).astype(np.float64)
        np.add.at(self.sums_, rows, vecs)
        np.add.at(self.counts_, rows, 1)
        self._centroids = None
        self._vectors_changed()

    # -- routing -------------------------------------------------------------------------
    def centroids(self) -> np.ndarray:
        """Unit model vectors ``(rows, dim)``: the normalised prompt sum plus ``card_weight``
        card vectors, or the card vector for models without prompts."""
        if self._centroids is None:
            if self.sums_ is None:
                return np.zeros((0, 0), np.float32)
            v = self.sums_ + self.card_weight * self.card_vectors_
            empty = self.counts_ == 0
            v[empty] = self.card_vectors_[empty]
            self._centroids = l2_normalise(v.astype(np.float32))
        return self._centroids

    def scores(self, prompts: Sequence[str]) -> np.ndarray:
        if self.sums_ is None:
            return np.zeros((len(prompts), 0), dtype=np.float32)
        return matmul_t(encode_queries(self.encoder, prompts), self.centroids())

    # -- artifacts -----------------------------------------------------------------------
    def _save_state(self, directory: Path) -> None:
        if self.sums_ is not None:
            state = {"card_vectors": self.card_vectors_, "sums": self.sums_, "counts": self.counts_}
            save_file(state, str(directory / STATE_FILE))
        self._save_index(directory)

    def _load_state(self, directory: Path) -> None:
        path = directory / STATE_FILE
        if not path.is_file():
            return super()._load_state(directory)
        try:
            state = load_file(str(path))
        except Exception as e:  # safetensors raises its own error types for damaged files
            raise DataError(f"unreadable state file ({e})", path) from None
        n = len(self.registry_)
        for key in ("card_vectors", "sums", "counts"):
            if key not in state or state[key].shape[0] != n:
                raise DataError(f"'{key}' is missing or does not have one entry per registry row ({n})", path)
        self.card_vectors_, self.sums_, self.counts_ = state["card_vectors"], state["sums"], state["counts"]
        self._centroids = None
        self._load_index(directory)
