"""Checkpoint anchoring: keep old model vectors and the projection near the last snapshot.

At the end of an experience :meth:`Anchor.capture` stores the unit model vectors and the
projection. While anchoring is on, the penalty is ``lam_emb * L_emb + lam_proj * L_proj`` with

- ``L_emb = mean over old active rows of (1 - cos(v_t, v_{t-1}))`` — rows appended after the
  snapshot (new models) are not anchored;
- ``L_proj = mean((W_t - W_{t-1})^2)`` over the projection's weights.

:class:`Anchoring` is CARvE's two-phase schedule as a strategy: from the second experience on,
the first ``anchor_fraction`` of the steps (phase 1) add the penalty, scale the learning rates
of the projection and the encoder, the steps of old model rows and the weight of replayed
examples; the rest (phase 2) train with the ``phase2_*`` factors and no penalty.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from hubroute.continual.base import Strategy, TrainItem
from hubroute.continual.defaults import CARVE
from hubroute.errors import HubrouteError
from hubroute.hub import Experience

if TYPE_CHECKING:
    from hubroute.continual.protocol import TrainableRouter
    from hubroute.training.trainer import Batch, Trainer

ANCHOR_MODES = ("both", "emb", "proj", "none")


class Anchor:
    """The anchoring penalty (see the module docstring).

    ``mode``: ``both``, ``emb`` (model vectors only), ``proj`` (projection only) or ``none``;
    ``lam_emb``, ``lam_proj``: weights of the two terms. Learned state: ``table_`` (unit rows at
    the snapshot) and ``proj_`` (projection weights at the snapshot), ``None`` before the first.
    """

    def __init__(self, mode: str = CARVE.anchor, lam_emb: float = CARVE.lam_emb, lam_proj: float = CARVE.lam_proj):
        if mode not in ANCHOR_MODES:
            raise HubrouteError(f"unknown anchor mode {mode!r}; choose one of {', '.join(ANCHOR_MODES)}")
        if lam_emb < 0 or lam_proj < 0:
            raise HubrouteError("anchoring weights must be >= 0")
        self.mode, self.lam_emb, self.lam_proj = mode, lam_emb, lam_proj
        self.table_: torch.Tensor | None = None
        self.proj_: torch.Tensor | None = None

    def get_params(self) -> dict[str, Any]:
        """JSON-ready constructor arguments."""
        return {"mode": self.mode, "lam_emb": self.lam_emb, "lam_proj": self.lam_proj}

    @property
    def ready(self) -> bool:
        """Whether a snapshot exists and some term is switched on."""
        return self.table_ is not None and self.mode != "none"

    @property
    def n_rows(self) -> int:
        """Rows that existed at the snapshot (0 before the first)."""
        return 0 if self.table_ is None else int(self.table_.shape[0])

    def capture(self, router: TrainableRouter) -> None:
        """Snapshot the router's unit model vectors and projection."""
        self.table_ = router.row_vectors().detach().clone()
        self.proj_ = router.proj_.weight.detach().clone()

    def rebase(self, router: TrainableRouter, rows: list[int]) -> None:
        """Take the router's current vectors of ``rows`` as their snapshot (rows reset from data
        between experiences are anchored where the reset put them)."""
        old = [r for r in rows if r < self.n_rows]
        if old:
            idx = torch.as_tensor(old, device=self.table_.device)
            self.table_[idx] = router.row_vectors().detach()[idx].to(self.table_.device)

    def terms(self, router: TrainableRouter) -> dict[str, torch.Tensor]:
        """The unweighted drift terms ``emb`` and ``proj`` (zero before the first snapshot)."""
        zero = torch.zeros((), device=router.proj_.weight.device)
        if self.table_ is None:
            return {"emb": zero, "proj": zero}
        n = self.n_rows
        active = torch.from_numpy(router.registry_.active_mask[:n]).to(self.table_.device)
        cos = (F.normalize(router.table_[:n], dim=-1) * self.table_).sum(-1)
        emb = (1 - cos[active]).mean() if bool(active.any()) else zero
        proj = ((router.proj_.weight - self.proj_) ** 2).mean()
        return {"emb": emb, "proj": proj}

    def penalty(self, router: TrainableRouter) -> torch.Tensor | None:
        """``lam_emb * L_emb + lam_proj * L_proj`` for the switched-on terms, or ``None``."""
        if not self.ready:
            return None
        t = self.terms(router)
        total = torch.zeros((), device=router.proj_.weight.device)
        if self.mode in ("both", "emb"):
            total = total + self.lam_emb * t["emb"]
        if self.mode in ("both", "proj"):
            total = total + self.lam_proj * t["proj"]
        return total

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The snapshot, for saving (empty before the first)."""
        if self.table_ is None:
            return {}
        return {"anchor.table": self.table_, "anchor.proj": self.proj_}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_tensors` returned."""
        self.table_ = tensors.get("anchor.table")
        self.proj_ = tensors.get("anchor.proj")


class Anchoring(Strategy):
    """CARvE's two-phase anchoring schedule (see the module docstring).

    ``anchor``: the penalty's terms (``both``, ``emb``, ``proj`` or ``none``: the schedule
    without a penalty); ``lam_emb``, ``lam_proj``; ``anchor_fraction``: phase 1's share of an
    experience's steps; ``phase{1,2}_lr_proj``, ``phase{1,2}_lr_encoder``,
    ``phase{1,2}_lr_old_rows`` (factor on each step of the rows that existed at the snapshot)
    and ``phase{1,2}_replay_weight`` (factor on the loss weight of replayed examples).
    Learned state: ``anchor_`` (the snapshot), ``phase_`` (1 or 2, while training).
    """

    def __init__(
        self,
        anchor: str = CARVE.anchor,
        lam_emb: float = CARVE.lam_emb,
        lam_proj: float = CARVE.lam_proj,
        anchor_fraction: float = CARVE.anchor_fraction,
        phase1_lr_proj: float = CARVE.phase1_lr_proj,
        phase1_lr_encoder: float = CARVE.phase1_lr_encoder,
        phase1_lr_old_rows: float = CARVE.phase1_lr_old_rows,
        phase1_replay_weight: float = CARVE.phase1_replay_weight,
        phase2_lr_proj: float = CARVE.phase2_lr_proj,
        phase2_lr_encoder: float = CARVE.phase2_lr_encoder,
        phase2_lr_old_rows: float = CARVE.phase2_lr_old_rows,
        phase2_replay_weight: float = CARVE.phase2_replay_weight,
    ):
        if not 0 <= anchor_fraction <= 1:
            raise HubrouteError("need 0 <= anchor_fraction <= 1")
        self.anchor_ = Anchor(anchor, lam_emb, lam_proj)
        self.anchor_fraction = anchor_fraction
        self.phases = {  # per phase, keyed as the constructor names them after "phaseN_"
            1: {"lr_proj": phase1_lr_proj, "lr_encoder": phase1_lr_encoder,
                "lr_old_rows": phase1_lr_old_rows, "replay_weight": phase1_replay_weight},
            2: {"lr_proj": phase2_lr_proj, "lr_encoder": phase2_lr_encoder,
                "lr_old_rows": phase2_lr_old_rows, "replay_weight": phase2_replay_weight},
        }  # fmt: skip
        self.phase_ = 2

    def get_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "anchor": self.anchor_.mode,
            "lam_emb": self.anchor_.lam_emb,
            "lam_proj": self.anchor_.lam_proj,
            "anchor_fraction": self.anchor_fraction,
        }
        for phase, values in self.phases.items():
            params.update({f"phase{phase}_{key}": value for key, value in values.items()})
        return params

    def on_step(self, trainer: Trainer, step: int, n_steps: int) -> None:
        self.phase_ = 1 if self.anchor_.table_ is not None and step < self.anchor_fraction * n_steps else 2

    def lr_scales(self, trainer: Trainer) -> dict[str, float]:
        p = self.phases[self.phase_]
        return {"proj": p["lr_proj"], "encoder": p["lr_encoder"]}

    def weight_factor(self, item: TrainItem) -> float:
        return self.phases[self.phase_]["replay_weight"] if item.replayed else 1.0

    def row_step_scale(self, trainer: Trainer) -> torch.Tensor | None:
        n_old = self.anchor_.n_rows
        factor = self.phases[self.phase_]["lr_old_rows"]
        if n_old == 0 or factor == 1.0:
            return None
        scale = torch.ones(len(trainer.router.registry_), device=trainer.router.device)
        scale[:n_old] = factor
        return scale

    def on_rows_set(self, trainer: Trainer, rows: list[int]) -> None:
        self.anchor_.rebase(trainer.router, rows)

    def penalty(self, trainer: Trainer, batch: Batch) -> torch.Tensor | None:
        return self.anchor_.penalty(trainer.router) if self.phase_ == 1 else None

    def after_experience(self, trainer: Trainer, experience: Experience) -> None:
        self.anchor_.capture(trainer.router)
        self.phase_ = 2

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return self.anchor_.state_tensors()

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        self.anchor_.load_state(tensors)
