"""Continual-learning strategies for the trainable embedding router, and lookup by name."""

from __future__ import annotations

from typing import Any

from hubroute.continual.base import Strategy, TrainItem
from hubroute.continual.carve import CARvEStrategy
from hubroute.continual.merging import MergeStrategy
from hubroute.continual.regularization import EWCStrategy, LwFStrategy
from hubroute.continual.rehearsal import CumulativeStrategy, JointStrategy, ReplayStrategy
from hubroute.naming import build

STRATEGIES: dict[str, type[Strategy]] = {
    "naive": Strategy,
    ReplayStrategy.name: ReplayStrategy,
    EWCStrategy.name: EWCStrategy,
    LwFStrategy.name: LwFStrategy,
    MergeStrategy.name: MergeStrategy,
    CumulativeStrategy.name: CumulativeStrategy,
    JointStrategy.name: JointStrategy,
    CARvEStrategy.name: CARvEStrategy,
}


def make_strategy(name: str, **params: Any) -> Strategy:
    """A strategy by name (see :data:`STRATEGIES`) built with ``params``."""
    return build(STRATEGIES, "strategy", name, params)


__all__ = [
    "STRATEGIES",
    "CARvEStrategy",
    "CumulativeStrategy",
    "EWCStrategy",
    "JointStrategy",
    "LwFStrategy",
    "MergeStrategy",
    "ReplayStrategy",
    "Strategy",
    "TrainItem",
    "make_strategy",
]
