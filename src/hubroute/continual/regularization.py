"""Regularisation strategies: online EWC and learning without forgetting (LwF)."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from hubroute.continual.base import Strategy, TrainItem
from hubroute.hub import Experience

if TYPE_CHECKING:
    from hubroute.continual.protocol import ScoringSnapshot
    from hubroute.training.trainer import Batch, Trainer


class EWCStrategy(Strategy):
    """Online elastic weight consolidation (Schwarz et al., 2018).

    After each experience the diagonal empirical Fisher information of every trainable tensor
    is estimated on up to ``fisher_samples`` training examples (mini-batches of
    ``fisher_batch``) and folded into a running estimate ``F <- gamma * F + F_new``; the
    parameters are stored as anchors. Later batches add
    ``lam / 2 * sum F * (theta - theta_anchor)^2``. The model table grows, so its penalty
    covers the rows that existed at the anchor.
    """

    def __init__(
        self, lam: float = 1000.0, gamma: float = 0.9, fisher_samples: int = 512, fisher_batch: int = 8, seed: int = 0
    ):
        self.lam, self.gamma, self.seed = lam, gamma, seed
        self.fisher_samples, self.fisher_batch = fisher_samples, fisher_batch
        self.fisher_: dict[str, torch.Tensor] = {}
        self.anchor_: dict[str, torch.Tensor] = {}

    def get_params(self) -> dict[str, Any]:
        return {
            "lam": self.lam,
            "gamma": self.gamma,
            "fisher_samples": self.fisher_samples,
            "fisher_batch": self.fisher_batch,
            "seed": self.seed,
        }

    def penalty(self, trainer: Trainer, batch: Batch) -> torch.Tensor | None:
        if not self.fisher_:
            return None
        total = torch.zeros(())
        for name, p in trainer.router.trainable_parameters().items():
            f = self.fisher_.get(name)
            if f is None:
                continue
            n = f.shape[0]
            total = total + (f * (p[:n] - self.anchor_[name]) ** 2).sum()
        return 0.5 * self.lam * total

    def after_experience(self, trainer: Trainer, experience: Experience) -> None:
        items = [TrainItem(e) for e in experience.train]
        if not items:
            return
        router = trainer.router
        rng = random.Random(f"{self.seed}|{experience.name}")
        items = rng.sample(items, min(len(items), self.fisher_samples))
        params = router.trainable_parameters()
        new = {k: torch.zeros_like(p) for k, p in params.items()}
        n_batches = 0
        for i in range(0, len(items), self.fisher_batch):
            router.zero_grad()
            loss, _ = trainer.batch_loss(items[i : i + self.fisher_batch], with_strategy=False)
            loss.backward()
            for k, p in params.items():
                if p.grad is not None:
                    new[k] += p.grad.detach() ** 2
            n_batches += 1
        router.zero_grad()
        for k, p in params.items():
            f = new[k] / max(n_batches, 1)
            old = self.fisher_.get(k)
            if old is not None:
                f[: old.shape[0]] += self.gamma * old
            self.fisher_[k] = f
            self.anchor_[k] = p.detach().clone()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {f"fisher.{k}": v for k, v in self.fisher_.items()}
        out.update({f"anchor.{k}": v for k, v in self.anchor_.items()})
        return out

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        self.fisher_ = {k[7:]: v for k, v in tensors.items() if k.startswith("fisher.")}
        self.anchor_ = {k[7:]: v for k, v in tensors.items() if k.startswith("anchor.")}


class LwFStrategy(Strategy):
    """Learning without forgetting (Li and Hoiem, 2016) for routing.

    At the start of each experience the current router is frozen as a teacher. For every batch,
    the student's distribution over the models the teacher knew (softmax of scores at
    temperature ``temperature``) is pulled toward the teacher's by a KL term weighted ``alpha``.
    """

    def __init__(self, alpha: float = 1.0, temperature: float = 2.0):
        self.alpha, self.temperature = alpha, temperature
        self.teacher_: ScoringSnapshot | None = None

    def get_params(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "temperature": self.temperature}

    def before_experience(self, trainer: Trainer, experience: Experience) -> None:
        router = trainer.router
        self.teacher_ = router.snapshot() if router.n_trained_ > 0 else None

    def penalty(self, trainer: Trainer, batch: Batch) -> torch.Tensor | None:
        router = trainer.router
        t = self.teacher_
        if t is None or t.n_rows == 0:
            return None
        active = batch.active[: t.n_rows]
        with torch.no_grad():
            old = t.scores(batch.prompts)[:, active] / self.temperature
        new = (batch.z @ router.row_vectors()[: t.n_rows][active].T) / router.tau / self.temperature
        kl = F.kl_div(F.log_softmax(new, dim=1), F.log_softmax(old, dim=1), log_target=True, reduction="batchmean")
        return self.alpha * self.temperature**2 * kl

    def after_experience(self, trainer: Trainer, experience: Experience) -> None:
        self.teacher_ = None  # the next experience takes a fresh snapshot
