"""The strategy contract: how a trainable router learns one experience on top of the last.

A :class:`Strategy` is a set of hooks that the :class:`~hubroute.training.trainer.Trainer` calls
while it learns one experience (Avalanche's vocabulary). Every hook receives the trainer, which
holds the router (a :class:`~hubroute.continual.protocol.TrainableRouter`) and the settings:

1. :meth:`Strategy.before_experience` — snapshots, resets;
2. :meth:`Strategy.training_data` — which weighted examples to train on (replay mixes its
   buffer in, cumulative and joint use everything seen so far);
3. per epoch, :meth:`Strategy.batches` — how examples are batched (``None``: the trainer's own);
4. per step, :meth:`Strategy.on_step`, then :meth:`Strategy.lr_scales` (a factor per optimiser
   group), :meth:`Strategy.weight_factor` (per example), :meth:`Strategy.row_step_scale` (how far
   each model row may move), :meth:`Strategy.loss` (``None``: the trainer's own) and
   :meth:`Strategy.penalty` (an extra loss term: EWC, LwF, anchoring);
5. :meth:`Strategy.after_experience` — buffers, Fisher information, merges, snapshots.

Strategies compose (:class:`~hubroute.continual.compose.Compose`): penalties add up, factors
multiply, the first strategy that has an opinion on batches or the loss decides. Learned state
lives in attributes ending in ``_`` and travels with a saved router through
:meth:`Strategy.state_tensors` / :meth:`Strategy.state_json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from hubroute.hub import Experience, RoutingExample

if TYPE_CHECKING:
    from hubroute.continual.protocol import TrainableRouter
    from hubroute.training.losses import RoutingLoss
    from hubroute.training.trainer import Batch, Trainer


@dataclass(frozen=True)
class TrainItem:
    """One training example and its loss weight (replayed examples may weigh more)."""

    example: RoutingExample
    weight: float = 1.0
    replayed: bool = False


class Strategy:
    """Sequential fine-tuning: train on the new experience only (the ``naive`` baseline).

    Every hook is a no-op that leaves the trainer's own behaviour in place; subclasses override
    the ones they need.
    """

    def get_params(self) -> dict[str, Any]:
        """JSON-ready constructor arguments."""
        return {}

    @property
    def name(self) -> str:
        """The name this strategy is registered under (or its class path)."""
        from hubroute.continual.registry import STRATEGIES

        return STRATEGIES.name_of(type(self))

    def before_experience(self, trainer: Trainer, experience: Experience) -> None:
        """Called before anything else of ``experience``."""

    def training_data(self, trainer: Trainer, experience: Experience, items: list[TrainItem]) -> list[TrainItem]:
        """The weighted examples to train on, given those chosen so far (the experience's own
        training examples, or what an earlier strategy of a composition made of them)."""
        return items

    def batches(self, trainer: Trainer, items: list[TrainItem], g: torch.Generator) -> list[list[int]] | None:
        """One epoch's batches of indices into ``items``, or ``None`` for the trainer's own."""
        return None

    def on_step(self, trainer: Trainer, step: int, n_steps: int) -> None:
        """Called before optimiser step ``step`` of ``n_steps`` in this experience."""

    def lr_scales(self, trainer: Trainer) -> dict[str, float]:
        """Factors on the learning rates of optimiser groups (``proj``, ``rows``, ``encoder``)
        for the coming step; groups not named keep their rate."""
        return {}

    def weight_factor(self, item: TrainItem) -> float:
        """Factor on one item's loss weight in the coming step."""
        return 1.0

    def row_step_scale(self, trainer: Trainer) -> torch.Tensor | None:
        """Per-row factor in [0, 1] applied to each optimiser step of the model table
        (0 freezes a row, 1 is a plain step), or ``None`` for plain steps everywhere."""
        return None

    def loss(self, trainer: Trainer) -> RoutingLoss | None:
        """The routing loss to train with, or ``None`` for the trainer's own."""
        return None

    def penalty(self, trainer: Trainer, batch: Batch) -> torch.Tensor | None:
        """Extra loss for one batch, or ``None``."""
        return None

    def on_rows_set(self, trainer: Trainer, rows: list[int]) -> None:
        """Called when the router reset these existing rows from new training prompts before
        training (its ``row_refresh``)."""

    def after_experience(self, trainer: Trainer, experience: Experience) -> None:
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

    def prepare_load(self, router: TrainableRouter) -> None:
        """Shape the router's modules (e.g. adapters) before its saved weights are loaded."""

    def components(self) -> list[Strategy]:
        """The strategies this one is made of (itself, unless it is a composition)."""
        return [self]


def examples_to_json(examples: list[RoutingExample]) -> list[list[str]]:
    """Compact JSON form of examples: ``[prompt, model_id, domain, family]`` lists."""
    return [[e.prompt, e.model_id, e.domain, e.family] for e in examples]


def examples_from_json(rows: list[list[str]]) -> list[RoutingExample]:
    """Inverse of :func:`examples_to_json`."""
    return [RoutingExample(*r) for r in rows]
