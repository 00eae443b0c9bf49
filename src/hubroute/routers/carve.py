"""The CARvE router: the shared embedding router with the CARvE strategy and the row settings
measured best for it.

A separate kind so ``hubroute train --router carve`` and saved artifacts name the method. Every
parameter is the :class:`~hubroute.routers.embedding.EmbeddingRouter`'s; the strategy's settings
go in ``strategy_params`` (see :class:`~hubroute.continual.defaults.CARvEConfig`, the paper's
defaults). Two router defaults differ from the embedding router's, both chosen on held-out val
(``bench/results/carve_frozen_heldout``): a new row counts its card as half a prompt
(``card_weight=0.5``) and a known model's row takes in its new prompts (``row_refresh=True``);
pass ``card_weight=0, row_refresh=False`` for the paper's router.
"""

from __future__ import annotations

from typing import Any

from hubroute.continual.base import Strategy
from hubroute.routers.embedding import EmbeddingRouter


class CARvERouter(EmbeddingRouter):
    """:class:`EmbeddingRouter` whose strategy defaults to ``carve`` (see the module docstring)."""

    kind = "carve"

    def __init__(
        self,
        strategy: str | Strategy = "carve",
        strategy_params: dict[str, Any] | None = None,
        card_weight: float = 0.5,
        row_refresh: bool = True,
        **params: Any,
    ):
        super().__init__(
            strategy=strategy,
            strategy_params=strategy_params,
            card_weight=card_weight,
            row_refresh=row_refresh,
            **params,
        )
