"""Strategies that train on stored past examples: random and coreset replay, cumulative, joint."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import torch

from hubroute.continual.base import Strategy, TrainItem, examples_from_json, examples_to_json
from hubroute.continual.coreset import select_coreset
from hubroute.continual.defaults import CARVE
from hubroute.errors import HubrouteError
from hubroute.hub import Experience, RoutingExample

if TYPE_CHECKING:
    from hubroute.encoders import Encoder
    from hubroute.training.trainer import Trainer


class ReplayStrategy(Strategy):
    """Experience replay: after each experience keep ``ratio`` of its training set (a random
    sample, seeded) and train each later experience on its new data plus everything kept.

    ``ratio``: share of each experience kept (0.1 and 0.2 in the paper). ``weight``: loss weight
    of replayed examples. Subclasses change :meth:`select` (the coreset).
    Learned state: ``buffer_`` (kept examples), ``n_seen_`` (experiences seen).
    """

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

    def select(self, trainer: Trainer, experience: Experience) -> list[RoutingExample]:
        """The examples of ``experience`` to keep: a seeded random sample."""
        rng = random.Random(f"{self.seed}|{self.n_seen_}|{experience.name}")
        return rng.sample(list(experience.train), self.budget(experience))

    def training_data(self, trainer: Trainer, experience: Experience, items: list[TrainItem]) -> list[TrainItem]:
        return items + [TrainItem(e, self.weight, replayed=True) for e in self.buffer_]

    def after_experience(self, trainer: Trainer, experience: Experience) -> None:
        self.buffer_.extend(self.select(trainer, experience))
        self.n_seen_ += 1

    def state_json(self) -> dict[str, Any]:
        return {"buffer": examples_to_json(self.buffer_), "n_seen": self.n_seen_}

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        self.buffer_ = examples_from_json(state.get("buffer", []))
        self.n_seen_ = int(state.get("n_seen", 0))


class CoresetReplay(ReplayStrategy):
    """Replay of a coreset (CARvE's): per domain a quota proportional to its frequency (at least
    ``min_per_domain`` while the budget allows, at most ``max_per_model`` examples of one model),
    filled by farthest-point sampling in the space of a fixed encoder (``coreset_encoder``; the
    router's own frozen encoder when it is the same model).
    """

    def __init__(
        self,
        ratio: float = CARVE.ratio,
        weight: float = 1.0,
        min_per_domain: int = CARVE.min_per_domain,
        max_per_model: int = CARVE.max_per_model,
        coreset_encoder: str = CARVE.coreset_encoder,
        seed: int = 0,
    ):
        super().__init__(ratio=ratio, weight=weight, seed=seed)
        if min_per_domain < 0 or max_per_model < 1:
            raise HubrouteError("need min_per_domain >= 0 and max_per_model >= 1")
        self.min_per_domain, self.max_per_model = min_per_domain, max_per_model
        self.coreset_encoder = coreset_encoder
        self._encoder: Encoder | None = None

    def get_params(self) -> dict[str, Any]:
        return super().get_params() | {
            "min_per_domain": self.min_per_domain,
            "max_per_model": self.max_per_model,
            "coreset_encoder": self.coreset_encoder,
        }

    def select(self, trainer: Trainer, experience: Experience) -> list[RoutingExample]:
        """The coreset of ``experience``'s training set at the replay budget."""
        if self._encoder is None:
            router = trainer.router
            own = router.feature_encoder()
            if own is not None and self.coreset_encoder == router.encoder_name:
                self._encoder = own  # the router's own frozen encoder: same space
            else:
                from hubroute.encoders import load_encoder

                self._encoder = load_encoder(self.coreset_encoder, device=str(router.device))
        return select_coreset(
            experience.train, self.budget(experience), self._encoder.encode, self.min_per_domain, self.max_per_model
        )


class CumulativeStrategy(Strategy):
    """Keep training the current model on all data seen so far (cumulative retraining).

    Learned state: ``seen_`` (every training example so far)."""

    def __init__(self) -> None:
        self.seen_: list[RoutingExample] = []

    def training_data(self, trainer: Trainer, experience: Experience, items: list[TrainItem]) -> list[TrainItem]:
        return [TrainItem(e) for e in self.seen_] + items

    def after_experience(self, trainer: Trainer, experience: Experience) -> None:
        self.seen_.extend(experience.train)

    def state_json(self) -> dict[str, Any]:
        return {"seen": examples_to_json(self.seen_)}

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        self.seen_ = examples_from_json(state.get("seen", []))


class JointStrategy(CumulativeStrategy):
    """Retrain from the initial weights on all data seen so far: the upper bound."""

    def before_experience(self, trainer: Trainer, experience: Experience) -> None:
        trainer.router.reset_weights()
