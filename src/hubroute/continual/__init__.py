"""Continual-learning strategies for trainable routers, composable, and lookup by name.

Names are imported on first use, so ``from hubroute.continual import STRATEGIES`` stays cheap."""

from __future__ import annotations

from hubroute.plugins import lazy_exports

_WHERE = {
    "Anchor": "hubroute.continual.anchoring",
    "Anchoring": "hubroute.continual.anchoring",
    "Strategy": "hubroute.continual.base",
    "TrainItem": "hubroute.continual.base",
    "CARvEStrategy": "hubroute.continual.carve",
    "Compose": "hubroute.continual.compose",
    "CARVE": "hubroute.continual.defaults",
    "CARvEConfig": "hubroute.continual.defaults",
    "DomainBatching": "hubroute.continual.domain_batches",
    "MergeStrategy": "hubroute.continual.merging",
    "CandidateSampler": "hubroute.continual.negatives",
    "HardNegatives": "hubroute.continual.negatives",
    "TrainableRouter": "hubroute.continual.protocol",
    "EWCStrategy": "hubroute.continual.regularization",
    "LwFStrategy": "hubroute.continual.regularization",
    "STRATEGIES": "hubroute.continual.registry",
    "make_strategy": "hubroute.continual.registry",
    "CoresetReplay": "hubroute.continual.replay",
    "CumulativeStrategy": "hubroute.continual.replay",
    "JointStrategy": "hubroute.continual.replay",
    "ReplayStrategy": "hubroute.continual.replay",
}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
