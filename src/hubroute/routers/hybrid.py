"""Hybrid zero-shot router: fusion of BM25 and dense card scores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hubroute.encoders import Encoder
from hubroute.errors import HubrouteError
from hubroute.hub import ModelCard, Registry
from hubroute.routers.base import Router
from hubroute.routers.bm25 import BM25Router
from hubroute.routers.dense import DenseCardRouter
from hubroute.routers.fusion import FUSIONS, rrf, zscore


class HybridRouter(Router):
    """``w_dense · f(cos) + w_bm25 · f(bm25) + domain_weight · z(domain)``.

    ``f`` is a per-prompt z-score (``fusion="zscore"``) or reciprocal-rank score (``"rrf"``);
    the domain term is the dense router's pooled domain prior (see
    :class:`~hubroute.routers.dense.DenseCardRouter`), added only with ``zscore`` fusion. The
    defaults are the best setting of ``bench/zero_shot.py`` on CMRBench-public. Both parts
    share this router's registry.
    """

    kind = "hybrid"

    def __init__(
        self,
        encoder: Encoder | str = "default",
        w_dense: float = 1.0,
        w_bm25: float = 0.3,
        fusion: str = "zscore",
        domain_weight: float = 1.5,
        domain_pool: str = "lse",
        domain_tau: float = 0.05,
        registry: Registry | None = None,
    ):
        if fusion not in FUSIONS:
            raise HubrouteError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
        super().__init__(registry)
        self.w_dense, self.w_bm25, self.fusion = w_dense, w_bm25, fusion
        self.dense = DenseCardRouter(
            encoder,
            domain_weight=domain_weight,
            domain_pool=domain_pool,
            domain_tau=domain_tau,
            registry=self.registry_,
        )
        self.bm25 = BM25Router(registry=self.registry_)

    def get_params(self) -> dict[str, Any]:
        d = {k: v for k, v in self.dense.get_params().items() if k not in ("index", "index_options")}
        return {"w_dense": self.w_dense, "w_bm25": self.w_bm25, "fusion": self.fusion, **d}

    def encoders(self) -> list[Encoder]:
        return self.dense.encoders()

    def _prepare_rows(self, cards: list[ModelCard]) -> tuple[Any, Any]:
        return self.dense._prepare_rows(cards), self.bm25._prepare_rows(cards)

    def _commit_rows(self, rows: np.ndarray, state: tuple[Any, Any]) -> None:
        self.dense._commit_rows(rows, state[0])
        self.bm25._commit_rows(rows, state[1])

    def scores(self, prompts: Sequence[str]) -> np.ndarray:
        cos, dom = self.dense.components(prompts)
        bm = self.bm25.scores(prompts)
        if self.fusion == "rrf":
            return self.w_dense * rrf(cos) + self.w_bm25 * rrf(bm)
        active = self.registry_.active_mask
        out = self.w_dense * zscore(cos, active) + self.w_bm25 * zscore(bm, active)
        if dom is not None:
            out += self.dense.domain_weight * dom
        return out

    def _save_state(self, directory: Path) -> None:
        self.dense._save_state(directory)

    def _load_state(self, directory: Path) -> None:
        for part in (self.dense, self.bm25):
            part.registry_ = self.registry_
            part._load_state(directory)
