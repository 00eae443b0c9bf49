"""The text side of the trainable embedding router: features of prompts and cards.

:class:`FrozenFeatures` reads them from a frozen, cached :mod:`hubroute.encoders` encoder (only
the projection and the model table train). :class:`TrainableEncoder` runs a
sentence-transformers model whose weights train, all of them (``full``) or through LoRA adapters
(``lora``, peft); its forward pass encodes length-sorted chunks so a batch does not pad every
prompt to its longest one.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hubroute.encoders import Encoder, load_encoder, resolve_model_path
from hubroute.errors import DataError, HubrouteError
from hubroute.extras import require

INFERENCE_CHUNK = 8  # prompts per encoder call when routing (length-sorted; bench/inference_speed.py)
# prompts per encoder call in a training step (length-sorted), so a batch does not pad every
# prompt to its longest one (CARvE's domain batches group long prompts with short ones)
TRAIN_CHUNK = 16


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapters of a ``lora`` encoder: rank ``r``, ``alpha``, ``dropout``, and the module
    names to adapt (``target_modules``; None adapts every linear layer of the encoder, which
    for BERT-style models is ``query``, ``key``, ``value`` and ``dense``)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None

    @classmethod
    def coerce(cls, value: LoraSettings | dict[str, Any] | None) -> LoraSettings:
        """Settings from themselves, a dict (unknown keys are an error) or None."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        unknown = sorted(set(value) - {"r", "alpha", "dropout", "target_modules"})
        if unknown:
            raise HubrouteError(
                f"unknown LoRA setting(s) {', '.join(unknown)}; known: r, alpha, dropout, target_modules"
            )
        tm = value.get("target_modules")
        return cls(**{**value, "target_modules": tuple(tm) if tm is not None else None})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        d = asdict(self)
        d["target_modules"] = list(self.target_modules) if self.target_modules is not None else None
        return d


def linear_module_names(model: nn.Module) -> list[str]:
    """The distinct last name components of every ``nn.Linear`` in ``model``, sorted: what LoRA
    adapts by default, whatever the encoder's architecture (``query``/``key``/``value``/``dense``
    for BERT, ``q``/``k``/``v``/``o``/``dense`` for MPNet)."""
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})


class FrozenFeatures:
    """Features from a frozen encoder (cached on disk); nothing here trains."""

    trainable = False

    def __init__(self, encoder_name: str, device: torch.device):
        self.encoder: Encoder = load_encoder(encoder_name, device=str(device))
        self.device = device
        self.dim = self.encoder.dim

    def features(self, texts: Sequence[str], *, grad: bool = False) -> torch.Tensor:
        """``(n, dim)`` encoder outputs (never with gradient)."""
        return torch.from_numpy(self.encoder.encode(list(texts))).to(self.device)

    def frozen_copy(self) -> FrozenFeatures:
        """Itself: it never changes."""
        return self


class TrainableEncoder:
    """A sentence-transformers model that trains (``mode``: ``full`` or ``lora``).

    ``precision="bf16"`` runs it under bfloat16 autocast while training, and while routing on a
    GPU (CPU routing stays fp32: autocast casts the weights on every call; converted weights come
    from :meth:`convert`).
    """

    trainable = True

    def __init__(
        self,
        encoder_name: str,
        mode: str,
        *,
        device: torch.device,
        max_seq_length: int = 128,
        precision: str = "fp32",
        lora: LoraSettings | None = None,
    ):
        from sentence_transformers import SentenceTransformer

        self.mode, self.device, self.precision = mode, device, precision
        st = SentenceTransformer(resolve_model_path(encoder_name), device=str(device))
        st.max_seq_length = max_seq_length
        if mode == "lora":
            peft = require("peft", "lora")
            lora = lora or LoraSettings()
            targets = list(lora.target_modules) if lora.target_modules else linear_module_names(st[0].auto_model)
            cfg = peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets)
            st[0].model = peft.get_peft_model(st[0].auto_model, cfg, adapter_name="default")
        self.model: Any = st
        self.dim = int(st.get_embedding_dimension())

    def features(self, texts: Sequence[str], *, grad: bool = False, model: Any = None) -> torch.Tensor:
        """``(n, dim)`` outputs of ``model`` (default: this encoder's), with gradient when
        ``grad``; texts are encoded in length-sorted chunks (``TRAIN_CHUNK`` with gradient,
        ``INFERENCE_CHUNK`` without) and returned in their own order."""
        model = model if model is not None else self.model
        if model.training != grad:  # .train() walks every submodule; skip it when nothing changes
            model.train(grad)
        if not len(texts):
            return torch.zeros((0, self.dim), device=self.device)
        # Per-example outputs do not depend on the chunking (no batch statistics), only the
        # padding cost does.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        step = TRAIN_CHUNK if grad else INFERENCE_CHUNK
        bf16 = self.precision == "bf16" and (grad or self.device.type == "cuda")
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16)
        out = []
        for i in range(0, len(texts), step):
            feats = model.preprocess([texts[j] for j in order[i : i + step]])
            feats = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in feats.items()}
            with torch.set_grad_enabled(grad), autocast:
                out.append(model(feats)["sentence_embedding"].float())
        position = torch.empty(len(order), dtype=torch.long)
        position[torch.as_tensor(order)] = torch.arange(len(order))
        return torch.cat(out)[position.to(self.device)]  # a gather: gradients flow back per example

    def frozen_copy(self) -> _FrozenCopy:
        """A deep copy in eval mode without gradients (a snapshot's encoder)."""
        return _FrozenCopy(self, copy.deepcopy(self.model).eval().requires_grad_(False))

    def named_parameters(self) -> dict[str, torch.Tensor]:
        """The weights that train, by their state-dict names."""
        return {k: p for k, p in self.model.named_parameters() if p.requires_grad}

    def weights(self) -> dict[str, torch.Tensor]:
        """What a saved router keeps of the encoder: every weight (``full``) or the adapters
        (``lora``), cloned."""
        return {
            k: v.detach().clone() for k, v in self.model.state_dict().items() if self.mode == "full" or "lora_" in k
        }

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Load what :meth:`weights` returned; names the encoder lacks are an error."""
        missing = set(state) - set(self.model.state_dict())
        if missing:
            raise DataError(f"saved encoder weights do not fit the encoder: {sorted(missing)[:3]}")
        self.model.load_state_dict(state, strict=False)

    def adapter_model(self) -> Any:
        """The peft model of a ``lora`` encoder."""
        if self.mode != "lora":
            raise HubrouteError("the encoder has no LoRA adapters (finetune='lora' adds them)")
        return self.model[0].auto_model

    def convert(self, precision: str, cache_dir: str | Path | None) -> None:
        """Convert the model for routing only (see :func:`hubroute.encoders.convert_for_inference`)."""
        from hubroute.encoders import convert_for_inference

        self.model = convert_for_inference(self.model, precision, cache_dir)


class _FrozenCopy:
    """A frozen copy of a :class:`TrainableEncoder`'s model, encoding like the original did."""

    trainable = False

    def __init__(self, owner: TrainableEncoder, model: Any):
        self._owner, self._model = owner, model

    def features(self, texts: Sequence[str], *, grad: bool = False) -> torch.Tensor:
        return self._owner.features(texts, grad=False, model=self._model)


PromptEncoder = FrozenFeatures | TrainableEncoder
