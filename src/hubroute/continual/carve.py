"""CARvE: the continual anchored contrastive router, as a strategy of the embedding router.

Per experience (DESIGN.md §5):

- **loss** over a candidate set per example (:class:`~hubroute.continual.negatives.CandidateSampler`:
  gold, mined hard negatives, same-domain / same-category, far and random negatives) with soft
  targets;
- **checkpoint anchoring** (:class:`~hubroute.continual.anchoring.Anchor`) against the snapshot
  taken at the end of the previous experience, during the first ``anchor_fraction`` of the
  steps (phase 1). Phase 1 also scales the learning rates of the projection, the encoder and
  the old model rows and weighs replayed examples by ``phase1_replay_weight``; phase 2 uses the
  ``phase2_*`` settings and no anchoring;
- **coreset replay**: ``ratio`` of each earlier experience kept, chosen per domain by
  farthest-point sampling in a fixed encoder's space (``replay="coreset"``) or at random
  (``replay="random"``);
- **domain-aware batches** (:func:`~hubroute.continual.sampler.domain_batches`).

Every component switches off from the constructor for ablations: ``anchor="none"|"emb"|"proj"``,
``replay="random"``, ``candidates=False`` (the router's own loss), ``domain_batching=False``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hubroute.continual.anchoring import Anchor
from hubroute.continual.base import TrainItem
from hubroute.continual.coreset import select_coreset
from hubroute.continual.negatives import CandidateSampler
from hubroute.continual.rehearsal import ReplayStrategy
from hubroute.continual.sampler import domain_batches
from hubroute.errors import HubrouteError
from hubroute.hub import Experience, RoutingExample

if TYPE_CHECKING:
    from hubroute.encoders import Encoder
    from hubroute.routers.embedding import Batch, EmbeddingRouter

REPLAY_MODES = ("coreset", "random")


class CARvEStrategy(ReplayStrategy):
    """CARvE (see the module docstring). Defaults follow the paper's public configuration.

    Replay: ``ratio``, ``replay`` (coreset/random), ``min_per_domain``, ``max_per_model``,
    ``coreset_encoder`` (the fixed space for farthest-point sampling). Anchoring: ``anchor``
    (both/emb/proj/none), ``lam_emb``, ``lam_proj``, ``anchor_fraction``; per-phase multipliers
    ``phase{1,2}_lr_proj``, ``phase{1,2}_lr_encoder``, ``phase{1,2}_lr_old_rows`` and
    ``phase{1,2}_replay_weight``. Candidates: ``candidates``, ``k``, ``n_hard``, ``n_semantic``,
    ``n_far``, ``remine_every``, ``gold_mass``. Batches: ``domain_batching``,
    ``domains_per_batch``. ``seed``.
    Learned state: ``buffer_`` (replayed examples), ``anchor_`` (snapshot), ``sampler_`` (hard
    negative cache), ``phase_`` (1 or 2, during training).
    """

    name = "carve"

    def __init__(
        self,
        ratio: float = 0.1,
        replay: str = "coreset",
        min_per_domain: int = 5,
        max_per_model: int = 3,
        coreset_encoder: str = "default",
        anchor: str = "both",
        lam_emb: float = 1e4,
        lam_proj: float = 5e4,
        anchor_fraction: float = 0.4,
        phase1_lr_proj: float = 0.1,
        phase1_lr_encoder: float = 1.0,
        phase1_lr_old_rows: float = 0.1,
        phase1_replay_weight: float = 5.0,
        phase2_lr_proj: float = 1.0,
        phase2_lr_encoder: float = 1.0,
        phase2_lr_old_rows: float = 1.0,
        phase2_replay_weight: float = 1.0,
        candidates: bool = True,
        k: int = 64,
        n_hard: int = 15,
        n_semantic: int = 38,
        n_far: int = 10,
        remine_every: int = 100,
        gold_mass: float = 0.98,
        domain_batching: bool = True,
        domains_per_batch: int = 4,
        seed: int = 0,
    ):
        super().__init__(ratio=ratio, weight=1.0, seed=seed)
        if replay not in REPLAY_MODES:
            raise HubrouteError(f"unknown replay {replay!r}; choose one of {', '.join(REPLAY_MODES)}")
        if not 0 <= anchor_fraction <= 1 or min_per_domain < 0 or max_per_model < 1 or domains_per_batch < 1:
            raise HubrouteError(
                "need 0 <= anchor_fraction <= 1, min_per_domain >= 0, max_per_model >= 1, domains_per_batch >= 1"
            )
        self.replay, self.min_per_domain, self.max_per_model = replay, min_per_domain, max_per_model
        self.coreset_encoder = coreset_encoder
        self.anchor_fraction = anchor_fraction
        self.phases = {  # per phase, keyed as the constructor names them after "phaseN_"
            1: {"lr_proj": phase1_lr_proj, "lr_encoder": phase1_lr_encoder,
                "lr_old_rows": phase1_lr_old_rows, "replay_weight": phase1_replay_weight},
            2: {"lr_proj": phase2_lr_proj, "lr_encoder": phase2_lr_encoder,
                "lr_old_rows": phase2_lr_old_rows, "replay_weight": phase2_replay_weight},
        }  # fmt: skip
        self.use_candidates, self.domain_batching = candidates, domain_batching
        self.domains_per_batch = domains_per_batch
        self.anchor_ = Anchor(anchor, lam_emb, lam_proj)
        self.sampler_ = CandidateSampler(k, n_hard, n_semantic, n_far, remine_every, gold_mass)
        self.phase_ = 2
        self._step = 0
        self._encoder: Encoder | None = None

    def get_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "ratio": self.ratio,
            "replay": self.replay,
            "min_per_domain": self.min_per_domain,
            "max_per_model": self.max_per_model,
            "coreset_encoder": self.coreset_encoder,
            "anchor": self.anchor_.mode,
            "lam_emb": self.anchor_.lam_emb,
            "lam_proj": self.anchor_.lam_proj,
            "anchor_fraction": self.anchor_fraction,
            "candidates": self.use_candidates,
            **self.sampler_.get_params(),
            "domain_batching": self.domain_batching,
            "domains_per_batch": self.domains_per_batch,
            "seed": self.seed,
        }
        for phase, values in self.phases.items():
            params.update({f"phase{phase}_{key}": value for key, value in values.items()})
        return params

    # -- replay ----------------------------------------------------------------------------
    def select(self, router: EmbeddingRouter, experience: Experience) -> list[RoutingExample]:
        """Coreset (or random sample) of ``experience``'s training set at the replay budget."""
        if self.replay == "random":
            return super().select(router, experience)
        if self._encoder is None:
            if router.frozen_ is not None and self.coreset_encoder == router.encoder_name:
                self._encoder = router.frozen_  # the router's own frozen encoder: same space
            else:
                from hubroute.encoders import load_encoder

                self._encoder = load_encoder(self.coreset_encoder, device=str(router.device))
        return select_coreset(
            experience.train, self.budget(experience), self._encoder.encode, self.min_per_domain, self.max_per_model
        )

    # -- the training loop ---------------------------------------------------------------
    def before_experience(self, router: EmbeddingRouter, experience: Experience) -> None:
        self.sampler_.hard_.clear()  # mined under the previous experience's router

    def batches(self, router: EmbeddingRouter, items: list[TrainItem], g: torch.Generator) -> list[list[int]]:
        if not self.domain_batching:
            return router.default_batches(items, g)
        rng = np.random.default_rng(int(torch.randint(2**31 - 1, (1,), generator=g)))
        return domain_batches(
            [it.example.domain for it in items],
            [it.example.model_id for it in items],
            router.batch_size,
            self.domains_per_batch,
            rng,
        )

    def on_step(self, router: EmbeddingRouter, step: int, n_steps: int, optimizer: torch.optim.Optimizer) -> None:
        self._step = step
        self.phase_ = 1 if self.anchor_.table_ is not None and step < self.anchor_fraction * n_steps else 2
        base = {"proj": router.lr_proj, "encoder": router.lr_encoder, "rows": router.lr_rows}
        for group in optimizer.param_groups:
            name = group.get("name")
            if name in base:
                group["lr"] = base[name] * self.phases[self.phase_].get(f"lr_{name}", 1.0)

    def item_weight(self, item: TrainItem) -> float:
        return item.weight * (self.phases[self.phase_]["replay_weight"] if item.replayed else 1.0)

    def row_step_scale(self, router: EmbeddingRouter) -> torch.Tensor | None:
        n_old = self.anchor_.n_rows
        factor = self.phases[self.phase_]["lr_old_rows"]
        if n_old == 0 or factor == 1.0:
            return None
        scale = torch.ones(len(router.registry_), device=router.device)
        scale[:n_old] = factor
        return scale

    def candidates(
        self,
        router: EmbeddingRouter,
        items: list[TrainItem],
        rows: torch.Tensor,
        z: torch.Tensor,
        g: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self.use_candidates:
            return None
        rng = np.random.default_rng(int(torch.randint(2**31 - 1, (1,), generator=g)))
        return self.sampler_.build(
            router.registry_,
            [it.example.domain for it in items],
            rows.cpu().numpy(),
            z,
            router.row_vectors().detach(),
            self._step,
            rng,
        )

    def on_rows_set(self, router: EmbeddingRouter, rows: list[int]) -> None:
        self.anchor_.rebase(router, rows)

    def penalty(self, router: EmbeddingRouter, batch: Batch) -> torch.Tensor | None:
        return self.anchor_.penalty(router) if self.phase_ == 1 else None

    def after_experience(self, router: EmbeddingRouter, experience: Experience) -> None:
        super().after_experience(router, experience)
        self.anchor_.capture(router)
        self.phase_ = 2

    # -- persistence -----------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        return self.anchor_.state_tensors()

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        super().load_state(tensors, state)
        self.anchor_.load_state(tensors)
