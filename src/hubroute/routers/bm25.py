"""BM25 over model-card text (bm25s, Snowball-stemmed English tokens)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import bm25s
import numpy as np

from hubroute.hub import ModelCard, Registry
from hubroute.routers.base import Router


def _stemmer(language: str | None):
    if not language:
        return None
    try:
        import Stemmer
    except ImportError:  # PyStemmer is a dependency; fall back to unstemmed tokens if absent
        return None
    return Stemmer.Stemmer(language).stemWords


class BM25Router(Router):
    """Zero-shot lexical router: BM25 between the prompt and each card's text.

    ``k1``, ``b``: BM25 parameters. ``stem``: Snowball language or ``None``. The index is rebuilt
    when models are added (milliseconds for thousands of cards); retired rows are masked at
    ranking time.
    """

    kind = "bm25"

    def __init__(
        self, k1: float = 1.2, b: float = 0.75, stem: str | None = "english", registry: Registry | None = None
    ):
        super().__init__(registry)
        self.k1, self.b, self.stem = k1, b, stem
        self._stem = _stemmer(stem)
        self.index_: bm25s.BM25 | None = None
        self.vocab_: dict[str, int] = {}
        self.tokens_: list[list[str]] = []

    def get_params(self) -> dict[str, Any]:
        return {"k1": self.k1, "b": self.b, "stem": self.stem}

    def _tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        return bm25s.tokenize(list(texts), stopwords="en", stemmer=self._stem, return_ids=False, show_progress=False)

    def _prepare_rows(self, cards: list[ModelCard]) -> tuple[list[list[str]], bm25s.BM25]:
        """Tokens of the new cards, and an index over every card with them (built here, so
        adding cards never leaves a half-built index)."""
        tokens = self._tokenize([c.text or c.model_id for c in cards])
        index = bm25s.BM25(k1=self.k1, b=self.b)
        index.index([*self.tokens_, *tokens], show_progress=False)
        return tokens, index

    def _commit_rows(self, rows: np.ndarray, state: tuple[list[list[str]], bm25s.BM25]) -> None:
        tokens, index = state
        self.tokens_ = [*self.tokens_, *tokens]
        self.index_ = index
        self.vocab_ = index.vocab_dict

    def scores(self, prompts: Sequence[str]) -> np.ndarray:
        m = len(self.registry_)
        out = np.zeros((len(prompts), m), dtype=np.float32)
        if self.index_ is None:
            return out
        for i, toks in enumerate(self._tokenize(prompts)):
            toks = [t for t in toks if t in self.vocab_]
            if toks:
                out[i] = self.index_.get_scores(toks)[:m]
        return out
