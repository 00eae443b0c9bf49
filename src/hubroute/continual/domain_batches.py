"""CARvE's domain-aware batches as a strategy (see :func:`hubroute.training.batching.domain_batches`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hubroute.continual.base import Strategy, TrainItem
from hubroute.continual.defaults import CARVE
from hubroute.errors import HubrouteError
from hubroute.training.batching import domain_batches

if TYPE_CHECKING:
    from hubroute.training.trainer import Trainer


class DomainBatching(Strategy):
    """Batches of ``domains_per_batch`` domains that never hold one gold model twice."""

    def __init__(self, domains_per_batch: int = CARVE.domains_per_batch):
        if domains_per_batch < 1:
            raise HubrouteError("domains_per_batch must be >= 1")
        self.domains_per_batch = domains_per_batch

    def get_params(self) -> dict[str, Any]:
        return {"domains_per_batch": self.domains_per_batch}

    def batches(self, trainer: Trainer, items: list[TrainItem], g: torch.Generator) -> list[list[int]]:
        rng = np.random.default_rng(int(torch.randint(2**31 - 1, (1,), generator=g)))
        return domain_batches(
            [it.example.domain for it in items],
            [it.example.model_id for it in items],
            trainer.config.batch_size,
            self.domains_per_batch,
            rng,
        )
