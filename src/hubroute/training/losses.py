"""Routing losses: cross-entropy of each prompt's gold model against other model rows.

Each loss turns unit prompt vectors ``z`` (with gradient) and gold rows into per-example losses
and the logits they came from. :class:`FullSoftmax` scores every active row; :class:`SampledSoftmax`
the gold row and random active rows; :class:`CandidateSoftmax` candidate sets with soft targets
that a :class:`CandidateSource` builds (CARvE's mined negatives).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from hubroute.continual.base import TrainItem
    from hubroute.continual.protocol import TrainableRouter


@dataclass
class LossOutput:
    """Per-example losses ``(b,)``, the logits ``(b, C)`` they came from, and the candidate rows
    ``(b, C)`` of those logits (None when the logits cover every registry row)."""

    per_example: torch.Tensor
    logits: torch.Tensor
    candidates: torch.Tensor | None


class RoutingLoss(Protocol):
    """Computes one batch's :class:`LossOutput`."""

    def __call__(
        self,
        router: TrainableRouter,
        items: list[TrainItem],
        z: torch.Tensor,
        rows: torch.Tensor,
        active: torch.Tensor,
        g: torch.Generator,
    ) -> LossOutput:
        """``z``: unit prompt vectors ``(b, d)``; ``rows``: gold rows ``(b,)``; ``active``: row
        mask; ``g``: the training loop's seeded generator."""
        ...


def candidate_logits(router: TrainableRouter, z: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """``(b, K)`` scores of each prompt against its own candidate rows ``cand``; only the rows that
    occur in the batch are normalised and scored (a cheap backward for a large table)."""
    uniq, inverse = torch.unique(cand, return_inverse=True)
    v = F.normalize(router.table_[uniq], dim=-1)
    return (z @ v.T).gather(1, inverse) / router.tau


class FullSoftmax:
    """Softmax over every active row of the model table."""

    def __call__(self, router, items, z, rows, active, g) -> LossOutput:
        logits = (z @ router.row_vectors().T / router.tau).masked_fill(~active, float("-inf"))
        return LossOutput(F.cross_entropy(logits, rows, reduction="none"), logits, None)


class SampledSoftmax:
    """Softmax over the gold row and ``n_candidates - 1`` random active rows other than the gold
    (drawn with the loop's generator)."""

    def __init__(self, n_candidates: int = 64):
        self.n_candidates = n_candidates

    def sample(self, rows: torch.Tensor, active: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Candidate rows ``(b, n_candidates)``, gold first, negatives active and not the gold."""
        pool = torch.nonzero(active).squeeze(1)
        k = min(self.n_candidates - 1, max(len(pool) - 1, 1))
        neg = pool[torch.randint(len(pool), (len(rows), k), generator=g)].to(rows.device)
        clash = neg == rows[:, None]
        if clash.any():  # redraw negatives equal to the gold row (once; leftovers shift by one)
            redraw = pool[torch.randint(len(pool), (int(clash.sum()),), generator=g)].to(rows.device)
            neg[clash] = redraw
            clash = neg == rows[:, None]
            neg[clash] = pool[(torch.searchsorted(pool, neg[clash]) + 1) % len(pool)]
        return torch.cat([rows[:, None], neg], dim=1)

    def __call__(self, router, items, z, rows, active, g) -> LossOutput:
        cand = self.sample(rows, active, g)
        logits = candidate_logits(router, z, cand)
        target = torch.zeros(len(items), dtype=torch.long, device=z.device)
        return LossOutput(F.cross_entropy(logits, target, reduction="none"), logits, cand)


class CandidateSource(Protocol):
    """Builds per-example candidate rows and soft targets for :class:`CandidateSoftmax`."""

    def __call__(
        self, router: TrainableRouter, items: list[TrainItem], rows: torch.Tensor, z: torch.Tensor, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(candidates, targets)``, both ``(b, K)``; ``z`` is detached."""
        ...


class CandidateSoftmax:
    """Cross-entropy against soft targets over candidate sets from ``source``."""

    def __init__(self, source: CandidateSource):
        self.source = source

    def __call__(self, router, items, z, rows, active, g) -> LossOutput:
        cand, target = self.source(router, items, rows, z.detach(), g)
        logits = candidate_logits(router, z, cand)
        return LossOutput(-(target * F.log_softmax(logits, dim=-1)).sum(-1), logits, cand)


def default_loss(name: str, n_candidates: int) -> RoutingLoss:
    """The loss a :class:`~hubroute.training.config.TrainingConfig` names (``full`` or ``sampled``)."""
    return FullSoftmax() if name == "full" else SampledSoftmax(n_candidates)
