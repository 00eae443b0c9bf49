"""The trainable embedding router shared by every trained baseline and by CARvE: the model.

``prompt -> encoder -> linear projection to d -> L2 norm`` is scored against an append-only
table of learned model vectors, one row per registry row, L2-normalised:
``score = cos(z, v) / tau``; routing is an exact matrix product over the active rows.

The encoder is ``frozen`` (features come from the cached :mod:`hubroute.encoders` encoder, so
training touches only the projection and the table: seconds on a CPU), ``full`` (every encoder
weight trains) or ``lora`` (low-rank adapters through peft); see
:mod:`hubroute.routers.prompt_encoder`. New rows start from a random vector, the card
embedding, or the mean of the model's training prompts (``row_init``; the card may count as
``card_weight`` extra prompts in that mean).

This class is the model only. Learning an experience is the job of
:class:`~hubroute.training.trainer.Trainer` (optimiser, loop, losses) run with a
:class:`~hubroute.continual.base.Strategy` (what to train on and how); the router holds their
settings (``training``, ``strategy``) so that ``fit(experience)`` follows the router contract.
Rows of retired models receive no update and are never routed to.
"""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from hubroute.continual import Compose, make_strategy
from hubroute.continual.base import Strategy
from hubroute.encoders import Encoder, resolve_profile
from hubroute.errors import DataError, HubrouteError
from hubroute.hub import Experience, ModelCard, Registry, RoutingExample
from hubroute.routers.base import Router
from hubroute.routers.indexed import IndexedRouter
from hubroute.routers.prompt_encoder import FrozenFeatures, LoraSettings, PromptEncoder, TrainableEncoder
from hubroute.training.config import TrainingConfig
from hubroute.training.trainer import Trainer

FINETUNE_MODES = ("frozen", "full", "lora")
ROW_INITS = ("random", "card", "prompt_mean")
PRECISIONS = ("fp32", "bf16")
WEIGHTS_FILE = "weights.safetensors"
STRATEGY_TENSORS = "strategy.safetensors"
STATE_FILE = "state.json"
_LEGACY_LORA = {"lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout"}


class Snapshot:
    """A frozen copy of a router's scoring function (teacher for LwF)."""

    def __init__(self, router: EmbeddingRouter):
        self.tau = router.tau
        self.proj = copy.deepcopy(router.proj_).requires_grad_(False)
        self.table = router.row_vectors().detach().clone()
        self.n_rows = self.table.shape[0]
        self._encoder = router.encoder_.frozen_copy()

    def embed(self, prompts: Sequence[str]) -> torch.Tensor:
        """Unit prompt vectors as the router computed them at snapshot time."""
        with torch.no_grad():
            return F.normalize(self.proj(self._encoder.features(prompts, grad=False)), dim=-1)

    def scores(self, prompts: Sequence[str]) -> torch.Tensor:
        """``(n, n_rows)`` scores over the rows that existed at snapshot time."""
        return self.embed(prompts) @ self.table.T / self.tau


class EmbeddingRouter(IndexedRouter, Router):
    """Trainable router (see the module docstring).

    Model: ``encoder`` (name or path), ``finetune`` (frozen/full/lora), ``precision`` (``bf16``
    trains the encoder under bfloat16 autocast), ``max_seq_length``, ``lora``
    (:class:`~hubroute.routers.prompt_encoder.LoraSettings` or a dict), ``dim`` (projection
    size), ``tau`` (temperature), ``row_init`` and ``card_weight`` (with ``prompt_mean``, the card
    embedding counts as that many prompts), ``row_refresh`` (fold a known model's new training
    prompts into its row as a running mean before training; :meth:`refresh_rows`), ``seed``,
    ``device``. Learning: ``training``
    (:class:`~hubroute.training.config.TrainingConfig` or a dict: epochs, batch size, learning
    rates, loss) and ``strategy`` (a name or class path from
    :data:`hubroute.continual.STRATEGIES`, ``"a+b"`` for a composition, or a
    :class:`~hubroute.continual.base.Strategy`) with ``strategy_params``.

    Learned state: ``encoder_``, ``proj_``, ``table_``, ``strategy_``, ``n_trained_``,
    ``history_``, ``pending_rows_`` (rows waiting for their first prompts), ``row_mass_`` (row ->
    length of the sum of the unit prompt vectors it was set from).
    """

    kind = "embedding"

    def __init__(
        self,
        encoder: str = "default",
        strategy: str | Strategy = "naive",
        strategy_params: dict[str, Any] | None = None,
        finetune: str = "frozen",
        dim: int = 384,
        tau: float = 0.05,
        row_init: str = "prompt_mean",
        card_weight: float = 0.0,
        row_refresh: bool = False,
        training: TrainingConfig | dict[str, Any] | None = None,
        precision: str = "fp32",
        max_seq_length: int = 128,
        lora: LoraSettings | dict[str, Any] | None = None,
        seed: int = 0,
        device: str | None = None,
        index: str = "exact",
        index_options: dict[str, Any] | None = None,
        registry: Registry | None = None,
    ):
        super().__init__(registry)
        self._set_index(index, index_options)
        for value, allowed, what in (
            (finetune, FINETUNE_MODES, "finetune"),
            (row_init, ROW_INITS, "row_init"),
            (precision, PRECISIONS, "precision"),
        ):
            if value not in allowed:
                raise HubrouteError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
        if tau <= 0 or dim < 1 or not card_weight >= 0 or max_seq_length < 1:
            raise HubrouteError("need tau > 0, dim >= 1, card_weight >= 0 and max_seq_length >= 1")
        self.encoder_name = resolve_profile(encoder)
        self.finetune, self.dim, self.tau = finetune, dim, tau
        self.row_init, self.card_weight, self.row_refresh = row_init, float(card_weight), bool(row_refresh)
        self.training = TrainingConfig.coerce(training)
        self.precision, self.max_seq_length = precision, max_seq_length
        self.lora = LoraSettings.coerce(lora)
        self.seed = seed
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.strategy_ = (
            strategy if isinstance(strategy, Strategy) else make_strategy(strategy, **(strategy_params or {}))
        )
        self.encoder_: PromptEncoder | None = None
        self.proj_: nn.Linear | None = None
        self.table_: nn.Parameter | None = None
        self.n_trained_ = 0
        self.pending_rows_: set[int] = set()
        self.row_mass_: dict[int, float] = {}
        self.history_: list[dict[str, Any]] = []
        self._initial: dict[str, torch.Tensor] | None = None

    # -- construction --------------------------------------------------------------------
    @classmethod
    def normalize_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Fold shorthand keys into their groups: training settings given at the top level
        (``epochs``, ``lr_proj``…) into ``training``, ``lora_r`` / ``lora_alpha`` /
        ``lora_dropout`` into ``lora`` (how routers were configured before the groups existed)."""
        params = dict(params)
        training = {k: params.pop(k) for k in list(params) if k in TrainingConfig.field_names()}
        if training:
            base = params.get("training") or {}
            base = base.to_dict() if isinstance(base, TrainingConfig) else dict(base)
            params["training"] = base | training
        lora = {_LEGACY_LORA[k]: params.pop(k) for k in list(params) if k in _LEGACY_LORA}
        if lora:
            base = params.get("lora") or {}
            base = base.to_dict() if isinstance(base, LoraSettings) else dict(base)
            params["lora"] = base | lora
        return params

    def get_params(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder_name,
            "strategy": "compose" if type(self.strategy_) is Compose else self.strategy_.name,
            "strategy_params": self.strategy_.get_params(),
            "finetune": self.finetune,
            "dim": self.dim,
            "tau": self.tau,
            "row_init": self.row_init,
            "card_weight": self.card_weight,
            "row_refresh": self.row_refresh,
            "training": self.training.to_dict(),
            "precision": self.precision,
            "max_seq_length": self.max_seq_length,
            "lora": self.lora.to_dict(),
            "seed": self.seed,
            "index": self.index,
            "index_options": self.index_options,
        }

    def _build(self) -> None:
        """Load the encoder and create the projection (once)."""
        if self.proj_ is not None:
            return
        torch.manual_seed(self.seed)
        if self.finetune == "frozen":
            self.encoder_ = FrozenFeatures(self.encoder_name, self.device)
        else:
            self.encoder_ = TrainableEncoder(
                self.encoder_name,
                self.finetune,
                device=self.device,
                max_seq_length=self.max_seq_length,
                precision=self.precision,
                lora=self.lora,
            )
        enc_dim = self.encoder_.dim
        proj = nn.Linear(enc_dim, self.dim, bias=False)
        with torch.no_grad():
            if self.dim == enc_dim:
                proj.weight.copy_(torch.eye(enc_dim))  # start in the encoder's own space
            else:
                nn.init.orthogonal_(proj.weight, generator=torch.Generator().manual_seed(self.seed))
        self.proj_ = proj.to(self.device)
        self.table_ = nn.Parameter(torch.zeros((0, self.dim), device=self.device))
        self._initial = self._weights_state()

    def _weights_state(self) -> dict[str, torch.Tensor]:
        """Projection and trainable encoder weights (not the table), cloned."""
        state = {"proj": self.proj_.weight.detach().clone()}
        if isinstance(self.encoder_, TrainableEncoder):
            state.update({f"enc.{k}": v for k, v in self.encoder_.weights().items()})
        return state

    def _load_weights_state(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            self.proj_.weight.copy_(state["proj"])
        enc = {k[4:]: v for k, v in state.items() if k.startswith("enc.")}
        if enc and isinstance(self.encoder_, TrainableEncoder):
            self.encoder_.load_weights(enc)

    def reset_weights(self) -> None:
        """Back to the initial projection and encoder; every row re-initialised (for ``joint``)."""
        self._build()
        self._load_weights_state(self._initial)
        rows = np.arange(len(self.registry_))
        with torch.no_grad():
            self.table_ = nn.Parameter(self._init_rows(rows))
        if self.row_init == "prompt_mean":
            self.pending_rows_ = set(rows.tolist())
        self.row_mass_ = {}
        self._vectors_changed()

    # -- what strategies see (hubroute.continual.protocol.TrainableRouter) ---------------
    def embed(self, texts: Sequence[str], *, grad: bool = False) -> torch.Tensor:
        """Unit prompt vectors ``(n, dim)``."""
        self._build()
        with torch.set_grad_enabled(grad):
            return F.normalize(self.proj_(self.encoder_.features(texts, grad=grad)), dim=-1)

    def row_vectors(self) -> torch.Tensor:
        """Unit model vectors, one per registry row."""
        return F.normalize(self.table_, dim=-1)

    def trainable_parameters(self) -> dict[str, torch.Tensor]:
        """Every tensor the optimiser updates, by name (``proj``, ``table``, ``enc.*``)."""
        self._build()
        out: dict[str, torch.Tensor] = {"proj": self.proj_.weight, "table": self.table_}
        if isinstance(self.encoder_, TrainableEncoder):
            out.update({f"enc.{k}": p for k, p in self.encoder_.named_parameters().items()})
        return out

    def zero_grad(self) -> None:
        """Clear the gradients of every trainable tensor."""
        for p in self.trainable_parameters().values():
            p.grad = None

    def snapshot(self) -> Snapshot:
        """A frozen copy of the current scoring function."""
        self._build()
        return Snapshot(self)

    def feature_encoder(self) -> Encoder | None:
        """The frozen encoder that computes features (None when the encoder trains)."""
        self._build()
        return self.encoder_.encoder if isinstance(self.encoder_, FrozenFeatures) else None

    def adapter_model(self) -> Any:
        """The encoder's peft model (``finetune="lora"`` only)."""
        self._build()
        if not isinstance(self.encoder_, TrainableEncoder):
            raise HubrouteError("the encoder has no LoRA adapters (finetune='lora' adds them)")
        return self.encoder_.adapter_model()

    # -- routing -------------------------------------------------------------------------
    def encoders(self) -> list[Any]:
        self._build()
        return [self.encoder_.encoder] if isinstance(self.encoder_, FrozenFeatures) else []

    def prepare_inference(self, precision: str = "fp32", cache_dir: str | Path | None = None) -> EmbeddingRouter:
        """Convert the encoder (frozen or trained) for routing only; see :meth:`Router.prepare_inference`."""
        self._build()
        super().prepare_inference(precision, cache_dir)
        if isinstance(self.encoder_, TrainableEncoder):
            self.encoder_.convert(precision, cache_dir)
        return self

    def scores(self, prompts: Sequence[str]) -> np.ndarray:
        self._build()
        with torch.no_grad():
            z = self.embed(prompts)
            return (z @ self.row_vectors().T / self.tau).float().cpu().numpy()

    def row_matrix(self) -> np.ndarray:
        self._build()
        return self.row_vectors().detach().float().cpu().numpy()

    def query_matrix(self, prompts: Sequence[str]) -> np.ndarray:
        with torch.no_grad():
            return self.embed(prompts).float().cpu().numpy()

    @property
    def score_scale(self) -> float:
        return 1.0 / self.tau

    # -- rows ----------------------------------------------------------------------------
    def _init_rows(self, rows: np.ndarray, cards: Sequence[ModelCard] | None = None) -> torch.Tensor:
        """Initial vectors for ``rows`` per ``row_init`` (``prompt_mean`` starts from the card
        and is replaced once the model's training prompts are seen); ``cards``: the rows' cards
        when they are not registered yet."""
        if self.row_init == "random":
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(rows[0]) if len(rows) else self.seed)
            return F.normalize(torch.randn((len(rows), self.dim), generator=g), dim=-1).to(self.device)
        cards = cards if cards is not None else [self.registry_.cards[r] for r in rows]
        return self.embed([c.text or c.model_id for c in cards]).detach()

    def _prepare_rows(self, cards: list[ModelCard]) -> torch.Tensor | None:
        self._build()
        if self.row_init == "random":
            return None  # drawn from the row numbers when the rows are committed
        return self._init_rows(np.arange(len(cards)), cards)

    def _commit_rows(self, rows: np.ndarray, vectors: torch.Tensor | None) -> None:
        self._build()
        if vectors is None:
            vectors = self._init_rows(rows)
        with torch.no_grad():
            self.table_ = nn.Parameter(torch.cat([self.table_.detach(), vectors]))
        if self.row_init == "prompt_mean":
            self.pending_rows_.update(int(r) for r in rows)

    def _fold_prompts(self, by_row: dict[int, list[str]]) -> list[int]:
        """Fold each row's prompts into it as a running mean: the row, weighted by the length of
        the prompt-vector sum it was set from (``row_mass_``; ``card_weight`` for a row no prompt
        has set yet), plus the new unit prompt vectors, normalised. Returns the rows changed."""
        rows = sorted(by_row)
        z = self.embed([p for r in rows for p in by_row[r]]).detach()
        with torch.no_grad():
            start = 0
            for r in rows:
                n = len(by_row[r])
                old = F.normalize(self.table_[r], dim=-1) * self.row_mass_.get(r, self.card_weight)
                total = z[start : start + n].sum(0) + old
                self.table_[r] = F.normalize(total, dim=-1)
                self.row_mass_[r] = float(total.norm())
                start += n
        return rows

    def init_pending_rows(self, examples: list[RoutingExample]) -> None:
        """Set each pending row with training prompts to the mean of their unit vectors, the row's
        card vector (its value while pending) counting as ``card_weight`` of them."""
        by_row: dict[int, list[str]] = defaultdict(list)
        for x in examples:
            r = self.registry_.row(x.model_id)
            if r in self.pending_rows_:
                by_row[r].append(x.prompt)
        if by_row:
            self.pending_rows_ -= set(self._fold_prompts(by_row))

    def refresh_rows(self, examples: list[RoutingExample]) -> list[int]:
        """Fold the prompts of ``examples`` (new training data) into the rows of models set up
        in earlier experiences, as a running mean: a row whose prompt vectors summed to length
        ``m`` becomes the normalised ``m * row + sum of the new unit prompt vectors`` (for a row
        training has not moved, exactly the mean of all its prompts). Pending and retired rows
        are left alone. Returns the rows changed."""
        by_row: dict[int, list[str]] = defaultdict(list)
        active = self.registry_.active_mask
        for x in examples:
            r = self.registry_.row(x.model_id)
            if r not in self.pending_rows_ and active[r]:
                by_row[r].append(x.prompt)
        return self._fold_prompts(by_row) if by_row else []

    # -- learning ------------------------------------------------------------------------
    def trainer(self) -> Trainer:
        """A :class:`~hubroute.training.trainer.Trainer` with this router's settings and strategy."""
        self._build()
        if self.inference_precision_ != "fp32":
            raise HubrouteError(
                f"this router was converted for {self.inference_precision_} inference; load it again to train it"
            )
        return Trainer(self, self.training, self.strategy_)

    def _learn(self, experience: Experience) -> None:
        self.trainer().fit(experience)
        self.n_trained_ += 1
        self._vectors_changed()

    # -- artifacts -----------------------------------------------------------------------
    def _save_state(self, directory: Path) -> None:
        self._build()
        tensors = {k: v.detach().contiguous().cpu() for k, v in self._weights_state().items()}
        tensors["table"] = self.table_.detach().contiguous().cpu()
        save_file(tensors, str(directory / WEIGHTS_FILE))
        strat = {k: v.detach().contiguous().cpu() for k, v in self.strategy_.state_tensors().items()}
        if strat:
            save_file(strat, str(directory / STRATEGY_TENSORS))
        state = {
            "n_trained": self.n_trained_,
            "pending_rows": sorted(self.pending_rows_),
            "row_mass": {str(r): m for r, m in sorted(self.row_mass_.items())},
            "history": self.history_,
            "strategy_state": self.strategy_.state_json(),
        }
        (directory / STATE_FILE).write_text(json.dumps(state) + "\n", encoding="utf-8")
        self._save_index(directory)

    def _load_state(self, directory: Path) -> None:
        self._build()
        path = directory / WEIGHTS_FILE
        if not path.is_file():
            raise DataError("missing weights file", path)
        state = _read_json(directory / STATE_FILE)
        strat = (
            _read_tensors(directory / STRATEGY_TENSORS, self.device) if (directory / STRATEGY_TENSORS).is_file() else {}
        )
        self.strategy_.load_state(strat, state.get("strategy_state", {}))
        self.strategy_.prepare_load(self)
        tensors = _read_tensors(path, self.device)
        if "table" not in tensors or "proj" not in tensors:
            raise DataError("weights file lacks the model table or the projection", path)
        table = tensors.pop("table")
        if table.shape != (len(self.registry_), self.dim):
            raise DataError(f"table of shape {tuple(table.shape)} for {len(self.registry_)} rows x {self.dim}", path)
        self._load_weights_state(tensors)
        self.table_ = nn.Parameter(table)
        self.n_trained_ = int(state.get("n_trained", 0))
        self.pending_rows_ = set(state.get("pending_rows", []))
        if "row_mass" in state:
            self.row_mass_ = {int(r): float(m) for r, m in state["row_mass"].items()}
        else:  # saved before the mass was kept: a row set from prompts weighs as one prompt
            self.row_mass_ = {r: 1.0 for r in range(len(self.registry_)) if r not in self.pending_rows_}
        self.history_ = state.get("history", [])
        self._load_index(directory)

    def _default_card(self) -> str:
        steps = sum(h["steps"] for h in self.history_)
        seen = sorted({h["experience"] for h in self.history_})
        extra = [
            "",
            "## Training",
            "",
            f"- encoder: `{self.encoder_name}` ({self.finetune})",
            f"- strategy: `{self.strategy_.name}` `{json.dumps(self.strategy_.get_params(), sort_keys=True)}`",
            f"- experiences learned: {self.n_trained_} ({', '.join(seen) or 'none'}), {steps} optimiser steps",
        ]
        if self.history_:
            last = self.history_[-1]
            extra.append(f"- last epoch loss: {last['loss']:.4f} ({last['experience']})")
        return super()._default_card() + "\n".join(extra) + "\n"


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON file of a saved router, with one-line errors for a missing or damaged file."""
    if not path.is_file():
        raise DataError("missing file", path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"unreadable JSON ({e})", path) from None


def _read_tensors(path: Path, device: torch.device) -> dict[str, torch.Tensor]:
    """A safetensors file of a saved router, with a one-line error when it is damaged."""
    try:
        return load_file(str(path), device=str(device))
    except Exception as e:  # safetensors raises its own error types for truncated or corrupt files
        raise DataError(f"unreadable weights ({type(e).__name__}: {e})", path) from None
