"""Strategies combined into one: replay with EWC, coreset replay with anchoring, CARvE itself.

Hooks run in the order the strategies are listed: ``training_data`` passes the items from one to
the next; penalties add up; learning-rate, item-weight and row-step factors multiply; the first
strategy that returns batches or a loss decides them. Saved state is kept per component.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from hubroute.continual.base import Strategy, TrainItem
from hubroute.hub import Experience

if TYPE_CHECKING:
    from hubroute.continual.protocol import TrainableRouter
    from hubroute.training.losses import RoutingLoss
    from hubroute.training.trainer import Batch, Trainer


class Compose(Strategy):
    """Several strategies as one (see the module docstring).

    ``strategies``: :class:`Strategy` objects, or ``{"name": ..., "params": {...}}`` specs as
    :meth:`get_params` writes them (names from :data:`~hubroute.continual.STRATEGIES` or class
    paths).
    """

    def __init__(self, strategies: list[Strategy | dict[str, Any]]):
        from hubroute.continual.registry import STRATEGIES

        self.strategies: list[Strategy] = [
            s if isinstance(s, Strategy) else STRATEGIES.build(s["name"], dict(s.get("params", {}))) for s in strategies
        ]

    def get_params(self) -> dict[str, Any]:
        return {"strategies": [{"name": s.name, "params": s.get_params()} for s in self.strategies]}

    @property
    def name(self) -> str:
        return "+".join(s.name for s in self.strategies)

    def components(self) -> list[Strategy]:
        return [c for s in self.strategies for c in s.components()]

    def before_experience(self, trainer: Trainer, experience: Experience) -> None:
        for s in self.strategies:
            s.before_experience(trainer, experience)

    def training_data(self, trainer: Trainer, experience: Experience, items: list[TrainItem]) -> list[TrainItem]:
        for s in self.strategies:
            items = s.training_data(trainer, experience, items)
        return items

    def batches(self, trainer: Trainer, items: list[TrainItem], g: torch.Generator) -> list[list[int]] | None:
        for s in self.strategies:
            out = s.batches(trainer, items, g)
            if out is not None:
                return out
        return None

    def on_step(self, trainer: Trainer, step: int, n_steps: int) -> None:
        for s in self.strategies:
            s.on_step(trainer, step, n_steps)

    def lr_scales(self, trainer: Trainer) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.strategies:
            for group, factor in s.lr_scales(trainer).items():
                out[group] = out.get(group, 1.0) * factor
        return out

    def weight_factor(self, item: TrainItem) -> float:
        factor = 1.0
        for s in self.strategies:
            factor *= s.weight_factor(item)
        return factor

    def row_step_scale(self, trainer: Trainer) -> torch.Tensor | None:
        out = None
        for s in self.strategies:
            scale = s.row_step_scale(trainer)
            if scale is not None:
                out = scale if out is None else out * scale
        return out

    def loss(self, trainer: Trainer) -> RoutingLoss | None:
        for s in self.strategies:
            out = s.loss(trainer)
            if out is not None:
                return out
        return None

    def penalty(self, trainer: Trainer, batch: Batch) -> torch.Tensor | None:
        total = None
        for s in self.strategies:
            p = s.penalty(trainer, batch)
            if p is not None:
                total = p if total is None else total + p
        return total

    def on_rows_set(self, trainer: Trainer, rows: list[int]) -> None:
        for s in self.strategies:
            s.on_rows_set(trainer, rows)

    def after_experience(self, trainer: Trainer, experience: Experience) -> None:
        for s in self.strategies:
            s.after_experience(trainer, experience)

    # -- persistence: each component's state under its position ----------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"{i}.{k}": v for i, s in enumerate(self.strategies) for k, v in s.state_tensors().items()}

    def state_json(self) -> dict[str, Any]:
        return {"components": [s.state_json() for s in self.strategies]}

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        parts = state.get("components", [{}] * len(self.strategies))
        for i, (s, js) in enumerate(zip(self.strategies, parts, strict=True)):
            prefix = f"{i}."
            s.load_state({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, js)

    def prepare_load(self, router: TrainableRouter) -> None:
        for s in self.strategies:
            s.prepare_load(router)
