"""CARvE: the continual anchored contrastive router, as a composition of four strategies.

Per experience (DESIGN.md §5):

- :class:`~hubroute.continual.replay.CoresetReplay` — ``ratio`` of each earlier experience kept,
  chosen per domain by farthest-point sampling in a fixed encoder's space;
- :class:`~hubroute.continual.anchoring.Anchoring` — from the second experience on, the first
  ``anchor_fraction`` of the steps anchor old model vectors and the projection to the snapshot
  taken at the end of the previous experience, with scaled learning rates, old-row steps and
  replay weights;
- :class:`~hubroute.continual.negatives.HardNegatives` — the loss over candidate sets of mined
  hard, semantic, far and random negatives with soft targets;
- :class:`~hubroute.continual.domain_batches.DomainBatching` — domain-aware batches.

Every default lives in :class:`~hubroute.continual.defaults.CARvEConfig`. Ablations are other
compositions: ``replay+anchoring+hard_negatives+domain_batches`` replays a random sample,
``coreset+anchoring+domain_batches`` trains with the full softmax, and so on.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any

import torch

from hubroute.continual.anchoring import Anchoring
from hubroute.continual.compose import Compose
from hubroute.continual.defaults import CARvEConfig
from hubroute.continual.domain_batches import DomainBatching
from hubroute.continual.negatives import HardNegatives
from hubroute.continual.replay import CoresetReplay

_TYPES = typing.get_type_hints(CARvEConfig)
_ANCHORING = (
    "anchor",
    "lam_emb",
    "lam_proj",
    "anchor_fraction",
    *(f"phase{p}_{k}" for p in (1, 2) for k in ("lr_proj", "lr_encoder", "lr_old_rows", "replay_weight")),
)


class CARvEStrategy(Compose):
    """CARvE (see the module docstring): keyword arguments are :class:`CARvEConfig`'s settings,
    or pass a whole ``config``. Components, in order: coreset replay, anchoring, hard negatives,
    domain batches."""

    def __init__(self, config: CARvEConfig | None = None, **settings: Any):
        base = config or CARvEConfig()
        unknown = sorted(set(settings) - set(CARvEConfig.field_names()))
        if unknown:
            from hubroute.errors import HubrouteError

            raise HubrouteError(f"unknown CARvE setting(s) {', '.join(unknown)}")
        self.config = CARvEConfig(**(base.to_dict() | settings))
        c = self.config
        super().__init__(
            [
                CoresetReplay(c.ratio, 1.0, c.min_per_domain, c.max_per_model, c.coreset_encoder, c.seed),
                Anchoring(**{k: getattr(c, k) for k in _ANCHORING}),
                HardNegatives(c.k, c.n_hard, c.n_semantic, c.n_far, c.remine_every, c.gold_mass),
                DomainBatching(c.domains_per_batch),
            ]
        )

    def get_params(self) -> dict[str, Any]:
        return self.config.to_dict()

    __signature__ = inspect.Signature(
        [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=CARvEConfig | None)]
        + [
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=_TYPES[f.name])
            for f in dataclasses.fields(CARvEConfig)
        ]
    )

    @property
    def name(self) -> str:
        return "carve"

    # the components, by role
    @property
    def replay(self) -> CoresetReplay:
        """The coreset replay component (its ``buffer_``)."""
        return self.strategies[0]  # type: ignore[return-value]

    @property
    def anchoring(self) -> Anchoring:
        """The anchoring component (its ``anchor_`` snapshot)."""
        return self.strategies[1]  # type: ignore[return-value]

    @property
    def hard_negatives(self) -> HardNegatives:
        """The candidate-set component (its ``sampler_``)."""
        return self.strategies[2]  # type: ignore[return-value]

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        if "components" in state:
            return super().load_state(tensors, state)
        # saved before CARvE was a composition: one flat state (buffer, anchor tensors)
        self.replay.load_state({}, state)
        self.anchoring.load_state(tensors, {})
        return None
