"""Settings of the training loop of a trainable router (what an experience costs to learn)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from hubroute.errors import HubrouteError

LOSSES = ("full", "sampled")
_FIELD_TYPES = {"int": int, "float": float, "str": str}


@dataclass(frozen=True)
class TrainingConfig:
    """How :class:`~hubroute.training.trainer.Trainer` learns one experience.

    ``epochs`` and ``batch_size``; AdamW learning rates per parameter group (``lr_encoder`` for a
    trainable encoder, ``lr_proj`` for the projection, ``lr_rows`` for the model table) and the
    encoder's ``weight_decay``; ``loss``: softmax over every active row (``full``) or over the
    gold row and ``n_candidates - 1`` random active rows (``sampled``). A strategy may supply its
    own loss (CARvE's candidate sets). ``lr_proj`` = 1e-4 was chosen on held-out val (better than
    1e-3 for CARvE and replay; ``bench/results/carve_frozen_heldout``).
    """

    epochs: int = 4
    batch_size: int = 64
    lr_encoder: float = 1e-4
    lr_proj: float = 1e-4
    lr_rows: float = 3e-4
    weight_decay: float = 0.01
    loss: str = "full"
    n_candidates: int = 64

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise HubrouteError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.epochs < 0 or self.batch_size < 1 or self.n_candidates < 2:
            raise HubrouteError("need epochs >= 0, batch_size >= 1 and n_candidates >= 2")
        if min(self.lr_encoder, self.lr_proj, self.lr_rows, self.weight_decay) < 0:
            raise HubrouteError("learning rates and weight_decay must be >= 0")

    @classmethod
    def field_names(cls) -> set[str]:
        """The names of the settings."""
        return {f.name for f in fields(cls)}

    @classmethod
    def coerce(cls, value: TrainingConfig | dict[str, Any] | None) -> TrainingConfig:
        """A config from itself, a dict of settings (unknown keys are an error) or None."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise HubrouteError(f"training settings must be a mapping, got {type(value).__name__}")
        unknown = sorted(set(value) - cls.field_names())
        if unknown:
            raise HubrouteError(
                f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(sorted(cls.field_names()))}"
            )
        from pydantic import TypeAdapter, ValidationError

        try:
            return TypeAdapter(cls).validate_python(value)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise HubrouteError(f"bad training setting {where}={err.get('input')!r}: {err['msg']}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return asdict(self)
