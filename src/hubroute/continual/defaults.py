"""CARvE's settings in one place: the paper's public configuration (DESIGN.md §5).

:class:`CARvEConfig` holds every default of CARvE's components (coreset replay, two-phase
anchoring, candidate sets with mined hard negatives, domain-aware batches); each component takes
its defaults from :data:`CARVE`, and :class:`~hubroute.continual.carve.CARvEStrategy` is built
from one config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class CARvEConfig:
    """Every CARvE setting, with the paper's defaults.

    Replay: ``ratio`` of each experience kept as a coreset (``min_per_domain``,
    ``max_per_model``, farthest points in ``coreset_encoder``'s space). Anchoring: ``anchor``
    terms (``both``, ``emb``, ``proj`` or ``none``) weighted ``lam_emb`` / ``lam_proj`` during
    the first ``anchor_fraction`` of the steps (phase 1); per-phase factors on the learning
    rates of the projection, the encoder and the old model rows and on the weight of replayed
    examples. Candidate sets: ``k`` rows per example of which ``n_hard`` mined hard negatives
    (re-mined every ``remine_every`` steps), ``n_semantic`` same-domain or same-category and
    ``n_far`` other-category rows; ``gold_mass`` on the gold row. Batches: ``domains_per_batch``.
    """

    ratio: float = 0.1
    min_per_domain: int = 5
    max_per_model: int = 3
    coreset_encoder: str = "default"
    anchor: str = "both"
    lam_emb: float = 1e4
    lam_proj: float = 5e4
    anchor_fraction: float = 0.4
    phase1_lr_proj: float = 0.1
    phase1_lr_encoder: float = 1.0
    phase1_lr_old_rows: float = 0.1
    phase1_replay_weight: float = 5.0
    phase2_lr_proj: float = 1.0
    phase2_lr_encoder: float = 1.0
    phase2_lr_old_rows: float = 1.0
    phase2_replay_weight: float = 1.0
    k: int = 64
    n_hard: int = 15
    n_semantic: int = 38
    n_far: int = 10
    remine_every: int = 100
    gold_mass: float = 0.98
    domains_per_batch: int = 4
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        """The names of the settings, in order."""
        return [f.name for f in fields(cls)]


CARVE = CARvEConfig()
