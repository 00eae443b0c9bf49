"""The strategy contract: how a trainable router learns one experience on top of the last.

A :class:`Strategy` is called by :class:`~hubroute.routers.embedding.EmbeddingRouter` at four
points of each experience (Avalanche's vocabulary):

1. :meth:`Strategy.before_experience` — snapshots, resets;
2. :meth:`Strategy.training_data` — which weighted examples to train on (replay mixes the
   buffer in, cumulative and joint use everything seen so far);
3. :meth:`Strategy.penalty` — an extra loss term per batch (EWC, LwF);
4. :meth:`Strategy.after_experience` — update buffers, Fisher information, merges.

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
