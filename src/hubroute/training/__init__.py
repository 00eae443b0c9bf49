"""Training of trainable routers: the loop (:class:`Trainer`), its settings
(:class:`TrainingConfig`), the routing losses and the batching of examples."""

from __future__ import annotations

from hubroute.training.config import TrainingConfig
from hubroute.training.losses import CandidateSoftmax, FullSoftmax, LossOutput, SampledSoftmax
from hubroute.training.trainer import Batch, Trainer

__all__ = ["Batch", "CandidateSoftmax", "FullSoftmax", "LossOutput", "SampledSoftmax", "Trainer", "TrainingConfig"]
