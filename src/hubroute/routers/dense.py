"""Dense retrieval over model cards: cosine between prompt and card embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file
from scipy import sparse

from hubroute.encoders import Encoder, encode_queries, l2_normalise, matmul_t
from hubroute.errors import DataError, HubrouteError
from hubroute.hub import ModelCard, Registry
from hubroute.routers.base import Router
from hubroute.routers.encoded import FrozenEncoderMixin
from hubroute.routers.fusion import zscore
from hubroute.routers.indexed import IndexedRouter
from hubroute.rowtable import append_rows, with_room

STATE_FILE = "card_vectors.safetensors"
DOMAIN_POOLS = ("lse", "centroid")


class DenseCardRouter(IndexedRouter, FrozenEncoderMixin, Router):
    """Zero-shot semantic router: cosine between prompt and card embeddings, plus a domain prior.

    ``encoder``: an :class:`~hubroute.encoders.Encoder` or a model name for
    :func:`~hubroute.encoders.load_encoder` (built on first use).

    With ``domain_weight = 0`` the score is the plain cosine. Otherwise it is
    ``z(cos) + domain_weight * z(domain score of the row's domain)``, ``z`` being a per-prompt
    z-score. The domain score pools the cosines of all active cards of a domain, so a prompt that
    matches a task but no single card well still reaches the right domain: ``domain_pool="lse"``
    takes ``tau * log(sum(exp(cos / tau)))`` (a soft maximum that also grows with the number of
    matching cards), ``"centroid"`` the cosine to the mean card vector. No labelled prompt is used.
    """

    kind = "dense"

    def __init__(
        self,
        encoder: Encoder | str = "default",
        domain_weight: float = 0.0,
        domain_pool: str = "lse",
        domain_tau: float = 0.05,
        index: str = "exact",
        index_options: dict[str, Any] | None = None,
        registry: Registry | None = None,
    ):
        if domain_pool not in DOMAIN_POOLS:
            raise HubrouteError(f"unknown domain_pool {domain_pool!r}; choose one of {', '.join(DOMAIN_POOLS)}")
        super().__init__(registry)
        self._set_encoder(encoder)
        self.domain_weight = domain_weight
        self.domain_pool = domain_pool
        self.domain_tau = domain_tau
        self.card_vectors_: np.ndarray | None = None
        self._domain_cache: tuple[tuple[int, int, int], tuple] | None = None
        self._set_index(index, index_options)

    def get_params(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder_param(),
            "domain_weight": self.domain_weight,
            "domain_pool": self.domain_pool,
            "domain_tau": self.domain_tau,
            "index": self.index,
            "index_options": self.index_options,
        }

    def _prepare_rows(self, cards: list[ModelCard]) -> np.ndarray:
        return self.encoder.encode([c.text or c.model_id for c in cards])

    def _commit_rows(self, rows: np.ndarray, vecs: np.ndarray) -> None:
        base = self.card_vectors_ if self.card_vectors_ is not None else np.zeros((0, vecs.shape[1]), np.float32)
        self.card_vectors_ = append_rows(base, vecs)

    def encode_prompts(self, prompts: Sequence[str]) -> np.ndarray:
        """Unit prompt vectors."""
        return encode_queries(self.encoder, prompts)

    def row_matrix(self) -> np.ndarray:
        return self.card_vectors_

    def query_matrix(self, prompts: Sequence[str]) -> np.ndarray:
        return self.encode_prompts(prompts)

    def index_usable(self) -> bool:
        return not self.domain_weight  # the domain prior needs every card's cosine

    def components(self, prompts: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """``(cos, dom)``: the ``(n, rows)`` prompt-card cosines, and the per-row z-scored domain
        scores (``None`` when ``domain_weight`` is 0)."""
        if self.card_vectors_ is None:
            return np.zeros((len(prompts), 0), dtype=np.float32), None
        q = self.encode_prompts(prompts)
        cos = matmul_t(q, self.card_vectors_)
        dom = self.domain_scores(q, cos) if self.domain_weight else None
        return cos, dom

    def scores(self, prompts: Sequence[str]) -> np.ndarray:
        cos, dom = self.components(prompts)
        if dom is None:
            return cos
        return zscore(cos, self.registry_.active_mask) + self.domain_weight * dom

    def _domain_index(self) -> tuple[np.ndarray, sparse.csr_matrix, np.ndarray]:
        """(domain id of each row, active row x domain membership matrix, domains with an
        active row), rebuilt only when the registry changed."""
        key = (id(self.registry_), self.registry_.version, len(self.registry_))
        if self._domain_cache is None or self._domain_cache[0] != key:
            domains = np.array(self.registry_.domains(), dtype=object)
            names, inv = np.unique(domains, return_inverse=True)
            active = self.registry_.active_mask
            member = sparse.csr_matrix(
                (np.ones(int(active.sum()), np.float32), (np.flatnonzero(active), inv[active])),
                shape=(len(domains), len(names)),
            )
            has = np.asarray(member.sum(axis=0)).ravel() > 0
            self._domain_cache = (key, (inv, member, has))
        return self._domain_cache[1]

    def domain_scores(self, q: np.ndarray, cos: np.ndarray) -> np.ndarray:
        """Per-row z-scored score of the row's domain, pooled over active cards from the
        prompt vectors ``q`` (centroid) or the cosines ``cos`` (lse)."""
        inv, member, has = self._domain_index()
        if self.domain_pool == "centroid":
            cent = l2_normalise(np.asarray(member.T @ self.card_vectors_))
            dom = matmul_t(q, cent)
        else:
            t = self.domain_tau
            top = cos.max(axis=1, keepdims=True)
            dom = np.asarray((np.exp((cos - top) / t)) @ member)
            dom = t * np.log(np.maximum(dom, 1e-30)) + top
        dom = zscore(dom, has)
        dom[:, ~has] = dom[:, has].min() if has.any() else 0.0
        return dom[:, inv]

    def _save_state(self, directory: Path) -> None:
        if self.card_vectors_ is not None:
            save_file({"card_vectors": self.card_vectors_}, str(directory / STATE_FILE))
        self._save_index(directory)

    def _load_state(self, directory: Path) -> None:
        path = directory / STATE_FILE
        if not path.is_file():
            return super()._load_state(directory)
        vecs = load_file(str(path))["card_vectors"]
        if vecs.shape[0] != len(self.registry_):
            raise DataError(f"{vecs.shape[0]} card vectors for {len(self.registry_)} registry rows", path)
        self.card_vectors_ = with_room(vecs)
        self._load_index(directory)
