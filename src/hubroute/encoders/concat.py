"""Several encoders as one: each part's unit vector side by side, scaled by ``1/sqrt(k)`` so
the whole is a unit vector and its cosine is the mean of the parts' cosines."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hubroute.encoders.base import Encoder, encode_queries


class ConcatEncoder:
    """The concatenation of ``parts`` (each an :class:`Encoder`, usually cached on its own).

    ``spec``: the name that loads it again (``"a+b"``); ``dim``: the sum of the parts' dims.
    """

    def __init__(self, parts: Sequence[Encoder], spec: str):
        self.parts = list(parts)
        self.spec = spec
        self.dim = sum(p.dim for p in self.parts)
        self.name = "+".join(p.name for p in self.parts)

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Unit vectors ``(len(texts), dim)`` of ``texts`` as documents."""
        return self._join([p.encode(texts, show_progress=show_progress) for p in self.parts])

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts`` as queries (each part with its own query instruction)."""
        return self._join([encode_queries(p, texts) for p in self.parts])

    def _join(self, blocks: list[np.ndarray]) -> np.ndarray:
        return (np.concatenate(blocks, axis=1) / np.sqrt(len(blocks))).astype(np.float32, copy=False)
