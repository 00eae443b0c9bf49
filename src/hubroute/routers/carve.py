"""The CARvE router: the shared embedding router with the CARvE strategy as its default.

A separate kind so ``hubroute train --router carve`` and saved artifacts name the method; every
parameter is the :class:`~hubroute.routers.embedding.EmbeddingRouter`'s, and the strategy's
switches go in ``strategy_params`` (see :class:`~hubroute.continual.carve.CARvEStrategy`).
"""

from __future__ import annotations

from typing import Any

from hubroute.continual.base import Strategy
from hubroute.routers.embedding import EmbeddingRouter


class CARvERouter(EmbeddingRouter):
    """:class:`EmbeddingRouter` whose strategy defaults to ``carve`` (same parameters)."""

    kind = "carve"

    def __init__(
        self, strategy: str | Strategy = "carve", strategy_params: dict[str, Any] | None = None, **params: Any
    ):
        super().__init__(strategy=strategy, strategy_params=strategy_params, **params)
