"""What a continual-learning strategy may read and change of the router it trains.

Strategies see a router only through :class:`TrainableRouter` (and the
:class:`~hubroute.training.trainer.Trainer` that runs the loop), so a router that implements this
protocol can be trained by every strategy, and a strategy written against it trains every such
router.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import nn

from hubroute.hub import Registry

if TYPE_CHECKING:
    from hubroute.encoders import Encoder


@runtime_checkable
class ScoringSnapshot(Protocol):
    """A frozen copy of a router's scoring function (teacher for LwF)."""

    n_rows: int

    def scores(self, prompts: Sequence[str]) -> torch.Tensor:
        """``(n, n_rows)`` scores over the rows that existed at snapshot time."""
        ...


@runtime_checkable
class TrainableRouter(Protocol):
    """The trainable side of a router, as strategies use it.

    Read: ``registry_`` (rows, active mask), ``device``, ``tau``, ``n_trained_`` (experiences
    learned), ``finetune`` (``frozen``, ``full`` or ``lora``), ``encoder_name``, ``proj_`` (the
    projection) and ``table_`` (raw model rows; unit rows through :meth:`row_vectors`).
    Change: trainable tensors in place (anchoring and row scaling write ``table_``), the
    encoder's adapters (:meth:`adapter_model`), and everything through :meth:`reset_weights`.
    """

    registry_: Registry
    device: torch.device
    tau: float
    n_trained_: int
    finetune: str
    encoder_name: str
    proj_: nn.Linear
    table_: nn.Parameter

    def embed(self, texts: Sequence[str], *, grad: bool = False) -> torch.Tensor:
        """Unit prompt vectors ``(n, dim)`` (with gradient when ``grad``)."""
        ...

    def row_vectors(self) -> torch.Tensor:
        """Unit model vectors ``(rows, dim)`` (with gradient)."""
        ...

    def trainable_parameters(self) -> dict[str, torch.Tensor]:
        """Every tensor the optimiser updates, by name (``proj``, ``table``, ``enc.*``)."""
        ...

    def zero_grad(self) -> None:
        """Clear the gradients of every trainable tensor."""
        ...

    def snapshot(self) -> ScoringSnapshot:
        """A frozen copy of the current scoring function."""
        ...

    def reset_weights(self) -> None:
        """Back to the initial projection and encoder, every row re-initialised."""
        ...

    def feature_encoder(self) -> Encoder | None:
        """The frozen encoder that computes features, or None when the encoder trains."""
        ...

    def adapter_model(self) -> Any:
        """The encoder's peft model (LoRA adapters); an error unless ``finetune == "lora"``."""
        ...
