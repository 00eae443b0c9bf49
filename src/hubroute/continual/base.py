"""The strategy contract: how a trainable router learns one experience on top of the last.

A :class:`Strategy` is called by :class:`~hubroute.routers.embedding.EmbeddingRouter` at four
points of each experience (Avalanche's vocabulary):

1. :meth:`Strategy.before_experience` — snapshots, resets;
2. :meth:`Strategy.training_data` — which weighted examples to train on (replay mixes the
   buffer in, cumulative and joint use everything seen so far);
3. :meth:`Strategy.penalty` — an extra loss term per batch (EWC, LwF);
4. :meth:`Strategy.after_experience` — update buffers, Fisher information, merges.

Inside an experience's training loop, a strategy may also shape the batches
(:meth:`Strategy.batches`), each example's candidate set and soft targets
(:meth:`Strategy.candidates`), the loss weight of an item (:meth:`Strategy.item_weight`), the
optimiser per step (:meth:`Strategy.on_step`) and how far each model row may move in one step
(:meth:`Strategy.row_step_scale`). The defaults leave the router's own behaviour in place.

Strategies keep their own learned state in attributes ending in ``_`` and expose it through
:meth:`Strategy.state_tensors` / :meth:`Strategy.state_json` so a saved router can keep learning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from hubroute.hub import Experience, RoutingExample

if TYPE_CHECKING:
    from hubroute.routers.embedding import Batch, EmbeddingRouter


@dataclass(frozen=True)
class TrainItem:
    """One training example and its loss weight (replayed examples may weigh more)."""

    example: RoutingExample
    weight: float = 1.0
    replayed: bool = False


class Strategy:
    """Sequential fine-tuning: train on the new experience only (the ``naive`` baseline)."""

    name: ClassVar[str] = "naive"

    def get_params(self) -> dict[str, Any]:
        """JSON-ready constructor arguments."""
        return {}

    def before_experience(self, router: EmbeddingRouter, experience: Experience) -> None:
        """Called before the router trains on ``experience``."""

    def training_data(self, router: EmbeddingRouter, experience: Experience) -> list[TrainItem]:
        """Weighted examples to train on for this experience."""
        return [TrainItem(e) for e in experience.train]

    def penalty(self, router: EmbeddingRouter, batch: Batch) -> torch.Tensor | None:
        """Extra loss for one batch, or ``None``."""
        return None

    def batches(self, router: EmbeddingRouter, items: list[TrainItem], g: torch.Generator) -> list[list[int]]:
        """One epoch's batches of indices into ``items`` (default: the router's shuffled batches)."""
        return router.default_batches(items, g)

    def candidates(
        self,
        router: EmbeddingRouter,
        items: list[TrainItem],
        rows: torch.Tensor,
        z: torch.Tensor,
        g: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Per-example candidate rows ``(b, K)`` and target distributions ``(b, K)``, or ``None``
        for the router's own loss. ``rows``: gold rows; ``z``: unit prompt vectors (detached)."""
        return None

    def item_weight(self, item: TrainItem) -> float:
        """Loss weight of one training item (default: its own weight)."""
        return item.weight

    def on_step(self, router: EmbeddingRouter, step: int, n_steps: int, optimizer: torch.optim.Optimizer) -> None:
        """Called before optimiser step ``step`` of ``n_steps`` in this experience."""

    def row_step_scale(self, router: EmbeddingRouter) -> torch.Tensor | None:
        """Per-row factor in [0, 1] applied to each optimiser step of the model table
        (0 freezes a row, 1 is a plain step), or ``None`` for plain steps everywhere."""
        return None

    def on_rows_set(self, router: EmbeddingRouter, rows: list[int]) -> None:
        """Called when the router reset these existing rows from new training prompts before
        training (its ``row_refresh``)."""

    def after_experience(self, router: EmbeddingRouter, experience: Experience) -> None:
        """Called after the router trained on ``experience``."""

    # -- persistence of the strategy's own state -----------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors to save with the router (Fisher information…)."""
        return {}

    def state_json(self) -> dict[str, Any]:
        """JSON-ready state to save with the router (buffers of examples…)."""
        return {}

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Restore what :meth:`state_tensors` and :meth:`state_json` returned."""

    def prepare_load(self, router: EmbeddingRouter) -> None:
        """Shape the router's modules (e.g. adapters) before its saved weights are loaded."""


def examples_to_json(examples: list[RoutingExample]) -> list[list[str]]:
    """Compact JSON form of examples: ``[prompt, model_id, domain, family]`` lists."""
    return [[e.prompt, e.model_id, e.domain, e.family] for e in examples]


def examples_from_json(rows: list[list[str]]) -> list[RoutingExample]:
    """Inverse of :func:`examples_to_json`."""
    return [RoutingExample(*r) for r in rows]
