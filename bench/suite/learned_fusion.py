"""A learned fusion of first-stage signals, for the ``encoders_fusion`` experiment (bench only).

For each encoder, the prompt-centroid cosine and the card cosine; BM25 over the cards; and a
domain prior (each model gets its domain's best centroid cosine under the first encoder). Each
signal is z-scored per prompt over the active models; the candidates are the top ``candidates``
models by the summed centroid z-scores, and a logistic regression over the signals re-scores
them. Its weights are learned on held-out data only: when an experience arrives, every
``every``-th training example is held out, the centroids learn the rest, the held-out examples'
signals (gold model = positive, other candidates = negatives) join the regression's training
rows, and only then do the centroids learn the held-out examples too (so they end up with every
prompt, as the plain centroid router does). The regression is refitted on the rows of every
experience so far.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hubroute.encoders import encode_queries, matmul_t
from hubroute.hub import Experience, ModelCard, Registry
from hubroute.routers.base import Router
from hubroute.routers.bm25 import BM25Router
from hubroute.routers.centroid import CentroidRouter
from hubroute.routers.fusion import zscore

BELOW = -1e4  # score offset of models outside the candidates (their order is the first stage's)


class LearnedFusionRouter(Router):
    """Centroid and card cosines of several encoders, BM25 and a domain prior, fused by a
    logistic regression learned on held-out examples (see the module docstring)."""

    kind = "learned-fusion"

    def __init__(
        self,
        encoders: Sequence[str] = ("mpnet", "bge-small", "minilm"),
        card_weight: float = 0.5,
        candidates: int = 50,
        every: int = 5,
        c: float = 1.0,
        registry: Registry | None = None,
    ):
        super().__init__(registry)
        self.encoders_ = list(encoders)
        self.card_weight, self.candidates, self.every, self.c = card_weight, candidates, every, c
        self.subs = [CentroidRouter(e, card_weight=card_weight, registry=self.registry_) for e in self.encoders_]
        self.bm25 = BM25Router(registry=self.registry_)
        self.rows_x: list[np.ndarray] = []
        self.rows_y: list[np.ndarray] = []
        self.model_: Any = None

    def get_params(self) -> dict[str, Any]:
        return {
            "encoders": list(self.encoders_),
            "card_weight": self.card_weight,
            "candidates": self.candidates,
            "every": self.every,
            "c": self.c,
        }

    def encoders(self) -> list[Any]:
        return [s.encoder for s in self.subs]

    def _prepare_rows(self, cards: list[ModelCard]) -> tuple[Any, ...]:
        return (*[s._prepare_rows(cards) for s in self.subs], self.bm25._prepare_rows(cards))

    def _commit_rows(self, rows: np.ndarray, state: tuple[Any, ...]) -> None:
        for s, st in zip(self.subs, state[:-1], strict=True):
            s._commit_rows(rows, st)
        self.bm25._commit_rows(rows, state[-1])

    # -- learning ------------------------------------------------------------------------
    def _learn(self, experience: Experience) -> None:
        train = list(experience.train)
        held = train[self.every - 1 :: self.every]
        rest = [x for i, x in enumerate(train) if i % self.every != self.every - 1]
        for s in self.subs:
            s._learn(Experience(experience.index, experience.name, [], rest, []))
        if held:
            feats, cand = self._features([x.prompt for x in held])
            gold = self.registry_.rows(x.model_id for x in held)
            for f, c, g in zip(feats, cand, gold, strict=True):
                y = (c == g).astype(np.int8)
                if y.any():  # a prompt whose model is not among the candidates teaches nothing
                    self.rows_x.append(f)
                    self.rows_y.append(y)
            for s in self.subs:
                s._learn(Experience(experience.index, experience.name, [], held, []))
        if self.rows_x:
            from sklearn.linear_model import LogisticRegression

            x, y = np.concatenate(self.rows_x), np.concatenate(self.rows_y)
            self.model_ = LogisticRegression(C=self.c, max_iter=2000, class_weight="balanced").fit(x, y)

    # -- routing -------------------------------------------------------------------------
    def _signals(self, prompts: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
        """Per-prompt z-scored signals, each ``(n, rows)``, and the first-stage score."""
        active = self.registry_.active_mask
        sig, first = [], None
        for s in self.subs:
            q = encode_queries(s.encoder, prompts)
            cent = zscore(matmul_t(q, s.centroids()), active)
            sig += [cent, zscore(matmul_t(q, s.card_vectors_), active)]
            first = cent if first is None else first + cent
        sig.append(zscore(self.bm25.scores(prompts), active))
        sig.append(self._domain_prior(sig[0], active))
        return sig, first

    def _domain_prior(self, cent: np.ndarray, active: np.ndarray) -> np.ndarray:
        """Each model's domain's best centroid z-score among the active models."""
        domains = np.asarray([c.domain or "" for c in self.registry_.cards])
        out = np.zeros_like(cent)
        for d in np.unique(domains):
            cols = np.flatnonzero((domains == d) & active)
            if len(cols):
                out[:, domains == d] = cent[:, cols].max(axis=1, keepdims=True)
        return out

    def _features(self, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(n, candidates, signals)`` features and the ``(n, candidates)`` candidate rows."""
        return self._features_from(*self._signals(prompts))

    def scores(self, prompts: Sequence[str]) -> np.ndarray:
        prompts = list(prompts)
        sig, first = self._signals(prompts)
        out = (first + BELOW).astype(np.float32)
        if self.model_ is None:
            return first.astype(np.float32)
        feats, cand = self._features_from(sig, first)
        fused = self.model_.decision_function(feats.reshape(-1, feats.shape[-1])).reshape(cand.shape)
        np.put_along_axis(out, cand, fused.astype(np.float32), axis=1)
        return out

    def _features_from(self, sig: list[np.ndarray], first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        first = np.where(self.registry_.active_mask, first, -np.inf)
        k = min(self.candidates, first.shape[1])
        cand = np.argpartition(-first, k - 1, axis=1)[:, :k]
        return np.stack([np.take_along_axis(s, cand, axis=1) for s in sig], axis=-1), cand
