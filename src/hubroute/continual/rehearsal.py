"""Strategies that train on stored past examples: random replay, cumulative, joint."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import torch

from hubroute.continual.base import Strategy, TrainItem, examples_from_json, examples_to_json
from hubroute.errors import HubrouteError
from hubroute.hub import Experience, RoutingExample

if TYPE_CHECKING:
    from hubroute.routers.embedding import EmbeddingRouter


class ReplayStrategy(Strategy):
    """Experience replay: after each experience keep ``ratio`` of its training set (a random
    sample, seeded) and train each later experience on its new data plus everything kept.

    ``ratio``: share of each experience kept (0.1 and 0.2 in the paper). ``weight``: loss weight
    of replayed examples. Subclasses change :meth:`select` (CARvE's coreset).
    """

    name = "replay"

    def __init__(self, ratio: float = 0.1, weight: float = 1.0, seed: int = 0):
        if not 0 < ratio <= 1:
            raise HubrouteError(f"replay ratio must lie in (0, 1], got {ratio}")
        self.ratio, self.weight, self.seed = ratio, weight, seed
        self.buffer_: list[RoutingExample] = []
        self.n_seen_ = 0

    def get_params(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "weight": self.weight, "seed": self.seed}

    def budget(self, experience: Experience) -> int:
        """How many examples of ``experience`` to keep (at least one when it has any)."""
        n = len(experience.train)
        return min(n, max(1, round(self.ratio * n))) if n else 0

    def select(self, router: EmbeddingRouter, experience: Experience) -> list[RoutingExample]:
        """The examples of ``experience`` to keep: a seeded random sample."""
        rng = random.Random(f"{self.seed}|{self.n_seen_}|{experience.name}")
        return rng.sample(list(experience.train), self.budget(experience))

    def training_data(self, router: EmbeddingRouter, experience: Experience) -> list[TrainItem]:
        new = [TrainItem(e) for e in experience.train]
        return new + [TrainItem(e, self.weight, replayed=True) for e in self.buffer_]

    def after_experience(self, router: EmbeddingRouter, experience: Experience) -> None:
        self.buffer_.extend(self.select(router, experience))
        self.n_seen_ += 1

    def state_json(self) -> dict[str, Any]:
        return {"buffer": examples_to_json(self.buffer_), "n_seen": self.n_seen_}

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        self.buffer_ = examples_from_json(state.get("buffer", []))
        self.n_seen_ = int(state.get("n_seen", 0))


class CumulativeStrategy(Strategy):
    """Keep training the current model on all data seen so far (cumulative retraining)."""

    name = "cumulative"

    def __init__(self) -> None:
        self.seen_: list[RoutingExample] = []

    def training_data(self, router: EmbeddingRouter, experience: Experience) -> list[TrainItem]:
        return [TrainItem(e) for e in [*self.seen_, *experience.train]]

    def after_experience(self, router: EmbeddingRouter, experience: Experience) -> None:
        self.seen_.extend(experience.train)

    def state_json(self) -> dict[str, Any]:
        return {"seen": examples_to_json(self.seen_)}

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        self.seen_ = examples_from_json(state.get("seen", []))


class JointStrategy(CumulativeStrategy):
    """Retrain from the initial weights on all data seen so far: the upper bound."""

    name = "joint"

    def before_experience(self, router: EmbeddingRouter, experience: Experience) -> None:
        router.reset_weights()
