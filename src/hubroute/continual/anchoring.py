"""Checkpoint anchoring: keep old model vectors and the projection near the last snapshot.

At the end of an experience :meth:`Anchor.capture` stores the unit model vectors and the
projection. While anchoring is on, the penalty is ``lam_emb * L_emb + lam_proj * L_proj`` with

- ``L_emb = mean over old active rows of (1 - cos(v_t, v_{t-1}))`` — rows appended after the
  snapshot (new models) are not anchored;
- ``L_proj = mean((W_t - W_{t-1})^2)`` over the projection's weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from hubroute.errors import HubrouteError

if TYPE_CHECKING:
    from hubroute.routers.embedding import EmbeddingRouter

ANCHOR_MODES = ("both", "emb", "proj", "none")


class Anchor:
    """The anchoring penalty (see the module docstring).

    ``mode``: ``both``, ``emb`` (model vectors only), ``proj`` (projection only) or ``none``;
    ``lam_emb``, ``lam_proj``: weights of the two terms. Learned state: ``table_`` (unit rows at
    the snapshot) and ``proj_`` (projection weights at the snapshot), ``None`` before the first.
    """

    def __init__(self, mode: str = "both", lam_emb: float = 1e4, lam_proj: float = 5e4):
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

    def capture(self, router: EmbeddingRouter) -> None:
        """Snapshot the router's unit model vectors and projection."""
        self.table_ = router.row_vectors().detach().clone()
        self.proj_ = router.proj_.weight.detach().clone()

    def rebase(self, router: EmbeddingRouter, rows: list[int]) -> None:
        """Take the router's current vectors of ``rows`` as their snapshot (rows reset from data
        between experiences are anchored where the reset put them)."""
        old = [r for r in rows if r < self.n_rows]
        if old:
            idx = torch.as_tensor(old, device=self.table_.device)
            self.table_[idx] = router.row_vectors().detach()[idx].to(self.table_.device)

    def terms(self, router: EmbeddingRouter) -> dict[str, torch.Tensor]:
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

    def penalty(self, router: EmbeddingRouter) -> torch.Tensor | None:
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
