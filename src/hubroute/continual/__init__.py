"""Continual-learning strategies for trainable routers, composable, and lookup by name."""

from __future__ import annotations

from hubroute.continual.anchoring import Anchor, Anchoring
from hubroute.continual.base import Strategy, TrainItem
from hubroute.continual.carve import CARvEStrategy
from hubroute.continual.compose import Compose
from hubroute.continual.defaults import CARVE, CARvEConfig
from hubroute.continual.domain_batches import DomainBatching
from hubroute.continual.merging import MergeStrategy
from hubroute.continual.negatives import CandidateSampler, HardNegatives
from hubroute.continual.protocol import TrainableRouter
from hubroute.continual.registry import STRATEGIES, make_strategy
from hubroute.continual.regularization import EWCStrategy, LwFStrategy
from hubroute.continual.replay import CoresetReplay, CumulativeStrategy, JointStrategy, ReplayStrategy

__all__ = [
    "CARVE",
    "STRATEGIES",
    "Anchor",
    "Anchoring",
    "CARvEConfig",
    "CARvEStrategy",
    "CandidateSampler",
    "Compose",
    "CoresetReplay",
    "CumulativeStrategy",
    "DomainBatching",
    "EWCStrategy",
    "HardNegatives",
    "JointStrategy",
    "LwFStrategy",
    "MergeStrategy",
    "ReplayStrategy",
    "Strategy",
    "TrainItem",
    "TrainableRouter",
    "make_strategy",
]
