"""Adapter merging: one LoRA adapter per experience, merged with TIES (or DARE / linear)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from hubroute.continual.base import Strategy
from hubroute.errors import HubrouteError
from hubroute.hub import Experience

if TYPE_CHECKING:
    from hubroute.continual.protocol import TrainableRouter
    from hubroute.training.trainer import Trainer

COMBINATIONS = ("ties", "dare_ties", "dare_linear", "linear")
MERGED = "merged"


class MergeStrategy(Strategy):
    """Train a fresh LoRA adapter on each experience (with the shared projection and model
    table), then serve the merge of every adapter so far, built by peft's
    ``add_weighted_adapter`` (``combination``: ties, dare_ties, dare_linear or linear;
    ``density``: share of each task vector kept by TIES/DARE; ``weight`` per adapter).
    Needs ``finetune="lora"``.
    """

    def __init__(self, combination: str = "ties", density: float = 0.5, weight: float = 1.0):
        if combination not in COMBINATIONS:
            raise HubrouteError(f"unknown combination {combination!r}; choose one of {', '.join(COMBINATIONS)}")
        self.combination, self.density, self.weight = combination, density, weight
        self.adapters_: list[str] = []

    def get_params(self) -> dict[str, Any]:
        return {"combination": self.combination, "density": self.density, "weight": self.weight}

    @staticmethod
    def _peft(router: TrainableRouter):
        if router.finetune != "lora":
            raise HubrouteError("the merge strategy needs finetune='lora'")
        return router.adapter_model()

    def before_experience(self, trainer: Trainer, experience: Experience) -> None:
        model = self._peft(trainer.router)
        name = f"exp{len(self.adapters_)}"
        if name not in model.peft_config:
            model.add_adapter(name, model.peft_config["default"])
        model.set_adapter(name)  # only this adapter trains

    def after_experience(self, trainer: Trainer, experience: Experience) -> None:
        self.adapters_.append(f"exp{len(self.adapters_)}")
        self._merge(trainer.router)

    def _merge(self, router: TrainableRouter) -> None:
        model = self._peft(router)
        if MERGED in model.peft_config:
            model.delete_adapter(MERGED)
        kwargs = {} if self.combination == "linear" else {"density": self.density}
        model.add_weighted_adapter(
            self.adapters_,
            [self.weight] * len(self.adapters_),
            adapter_name=MERGED,
            combination_type=self.combination if len(self.adapters_) > 1 else "linear",
            **(kwargs if len(self.adapters_) > 1 else {}),
        )
        model.set_adapter(MERGED)
        for p in model.parameters():
            p.requires_grad_(False)

    def state_json(self) -> dict[str, Any]:
        return {"adapters": self.adapters_}

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        self.adapters_ = list(state.get("adapters", []))

    def prepare_load(self, router: TrainableRouter) -> None:
        """Re-create the adapters a saved router had, so their weights can be loaded."""
        if not self.adapters_:
            return
        model = self._peft(router)
        for name in self.adapters_:
            if name not in model.peft_config:
                model.add_adapter(name, model.peft_config["default"])
        self._merge(router)
