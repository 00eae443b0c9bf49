"""The trainable embedding router shared by every trained baseline (and by CARvE).

``prompt -> encoder -> linear projection to d -> L2 norm`` is scored against an append-only
table of learned model vectors, one row per registry row, L2-normalised:
``score = cos(z, v) / tau``; routing is an exact matrix product over the active rows.

The encoder is ``frozen`` (features come from the cached :mod:`hubroute.encoders` encoder, so
training touches only the projection and the table: seconds on a CPU), ``full`` (every encoder
weight trains) or ``lora`` (low-rank adapters through peft). New rows start from a random
vector, the card embedding, or the mean of the model's training prompts (``row_init``; the card
may count as ``card_weight`` extra prompts in that mean); the loss
is a softmax over the whole registry (``full``) or over a sampled candidate set (``sampled``).
How an experience is learned on top of the previous ones is the job of a
:class:`~hubroute.continual.base.Strategy`. Rows of retired models receive no update and are
never routed to.
"""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from hubroute.continual import make_strategy
from hubroute.continual.base import Strategy, TrainItem
from hubroute.encoders import Encoder, load_encoder, resolve_model_path
from hubroute.errors import DataError, HubrouteError
from hubroute.hub import Experience, Registry, RoutingExample
from hubroute.routers.base import Router

FINETUNE_MODES = ("frozen", "full", "lora")
ROW_INITS = ("random", "card", "prompt_mean")
LOSSES = ("full", "sampled")
PRECISIONS = ("fp32", "bf16")
WEIGHTS_FILE = "weights.safetensors"
STRATEGY_TENSORS = "strategy.safetensors"
STATE_FILE = "state.json"
INFERENCE_CHUNK = 8  # prompts per encoder call when routing (length-sorted; bench/inference_speed.py)
# prompts per encoder call in a training step (length-sorted), so a batch does not pad every
# prompt to its longest one (CARvE's domain batches group long prompts with short ones)
TRAIN_CHUNK = 16


@dataclass
class Batch:
    """One training batch as the loss saw it; strategies read it to add penalties.

    ``z``: unit prompt vectors (with gradient); ``logits``: ``(b, C)`` over all rows
    (``candidates`` is None) or over each example's candidate rows; ``active``: row mask.
    """

    prompts: list[str]
    rows: torch.Tensor
    weights: torch.Tensor
    z: torch.Tensor
    logits: torch.Tensor
    candidates: torch.Tensor | None
    active: torch.Tensor


class Snapshot:
    """A frozen copy of a router's scoring function (teacher for LwF, anchor for CARvE)."""

    def __init__(self, router: EmbeddingRouter):
        self.tau = router.tau
        self.proj = copy.deepcopy(router.proj_).requires_grad_(False)
        self.table = router.row_vectors().detach().clone()
        self.n_rows = self.table.shape[0]
        self._router = router
        self._st = None if router.st_ is None else copy.deepcopy(router.st_).eval().requires_grad_(False)

    def embed(self, prompts: Sequence[str]) -> torch.Tensor:
        """Unit prompt vectors as the router computed them at snapshot time."""
        with torch.no_grad():
            feats = self._router._features(prompts, grad=False, st=self._st)
            return F.normalize(self.proj(feats), dim=-1)

    def scores(self, prompts: Sequence[str]) -> torch.Tensor:
        """``(n, n_rows)`` scores over the rows that existed at snapshot time."""
        return self.embed(prompts) @ self.table.T / self.tau


class EmbeddingRouter(Router):
    """Trainable router (see the module docstring).

    Main parameters: ``encoder`` (name or path), ``finetune`` (frozen/full/lora), ``precision``
    (``bf16`` runs the trainable encoder under bfloat16 autocast while training, and while
    routing on a GPU; CPU routing stays fp32), ``dim``
    (projection size), ``tau`` (temperature), ``row_init`` and ``card_weight`` (with
    ``prompt_mean``, the card embedding counts as that many prompts), ``row_refresh`` (fold a
    known model's new training prompts into its row as a running mean before training; see
    :meth:`_refresh_rows`), ``loss`` and ``n_candidates``,
    ``epochs``, ``batch_size``, learning rates per group (``lr_encoder``, ``lr_proj``,
    ``lr_rows``), ``strategy`` (a name from :data:`hubroute.continual.STRATEGIES` or a
    :class:`Strategy`) with ``strategy_params``, ``seed``, ``device``.
    Learned state: ``proj_``, ``table_``, ``st_`` (trainable encoder), ``strategy_``,
    ``n_trained_``, ``history_``, ``pending_rows_`` (rows waiting for their first prompts),
    ``row_mass_`` (row -> length of the sum of the unit prompt vectors it was set from).
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
        loss: str = "full",
        n_candidates: int = 64,
        epochs: int = 4,
        batch_size: int = 64,
        lr_encoder: float = 1e-4,
        lr_proj: float = 1e-3,
        lr_rows: float = 3e-4,
        weight_decay: float = 0.01,
        max_seq_length: int = 128,
        precision: str = "fp32",
        lora_r: int = 16,
        lora_alpha: int = 32,
        lora_dropout: float = 0.05,
        seed: int = 0,
        device: str | None = None,
        registry: Registry | None = None,
    ):
        super().__init__(registry)
        for value, allowed, what in (
            (finetune, FINETUNE_MODES, "finetune"),
            (row_init, ROW_INITS, "row_init"),
            (loss, LOSSES, "loss"),
            (precision, PRECISIONS, "precision"),
        ):
            if value not in allowed:
                raise HubrouteError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
        if tau <= 0 or dim < 1 or epochs < 0 or batch_size < 1 or n_candidates < 2 or not card_weight >= 0:
            raise HubrouteError(
                "need tau > 0, dim >= 1, epochs >= 0, batch_size >= 1, n_candidates >= 2, card_weight >= 0"
            )
        self.encoder_name = encoder
        self.finetune, self.dim, self.tau = finetune, dim, tau
        self.row_init, self.card_weight, self.row_refresh = row_init, float(card_weight), bool(row_refresh)
        self.loss, self.n_candidates = loss, n_candidates
        self.epochs, self.batch_size = epochs, batch_size
        self.lr_encoder, self.lr_proj, self.lr_rows, self.weight_decay = lr_encoder, lr_proj, lr_rows, weight_decay
        self.max_seq_length, self.precision = max_seq_length, precision
        self.lora_r, self.lora_alpha, self.lora_dropout = lora_r, lora_alpha, lora_dropout
        self.seed = seed
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.strategy_ = (
            strategy if isinstance(strategy, Strategy) else make_strategy(strategy, **(strategy_params or {}))
        )
        self.frozen_: Encoder | None = None
        self.st_: nn.Module | None = None
        self.proj_: nn.Linear | None = None
        self.table_: nn.Parameter | None = None
        self.n_trained_ = 0
        self.pending_rows_: set[int] = set()
        self.row_mass_: dict[int, float] = {}
        self.history_: list[dict[str, Any]] = []
        self._initial: dict[str, torch.Tensor] | None = None

    # -- construction --------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder_name,
            "strategy": self.strategy_.name,
            "strategy_params": self.strategy_.get_params(),
            "finetune": self.finetune,
            "dim": self.dim,
            "tau": self.tau,
            "row_init": self.row_init,
            "card_weight": self.card_weight,
            "row_refresh": self.row_refresh,
            "loss": self.loss,
            "n_candidates": self.n_candidates,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr_encoder": self.lr_encoder,
            "lr_proj": self.lr_proj,
            "lr_rows": self.lr_rows,
            "weight_decay": self.weight_decay,
            "max_seq_length": self.max_seq_length,
            "precision": self.precision,
            "lora_r": self.lora_r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "seed": self.seed,
        }

    def _build(self) -> None:
        """Load the encoder and create the projection (once)."""
        if self.proj_ is not None:
            return
        torch.manual_seed(self.seed)
        if self.finetune == "frozen":
            self.frozen_ = load_encoder(self.encoder_name, device=str(self.device))
            enc_dim = self.frozen_.dim
        else:
            from sentence_transformers import SentenceTransformer

            st = SentenceTransformer(resolve_model_path(self.encoder_name), device=str(self.device))
            st.max_seq_length = self.max_seq_length
            if self.finetune == "lora":
                from peft import LoraConfig, get_peft_model

                cfg = LoraConfig(
                    r=self.lora_r,
                    lora_alpha=self.lora_alpha,
                    lora_dropout=self.lora_dropout,
                    target_modules=["query", "key", "value", "dense"],
                )
                st[0].model = get_peft_model(st[0].auto_model, cfg, adapter_name="default")
            self.st_ = st
            enc_dim = int(st.get_embedding_dimension())
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
        if self.st_ is not None:
            for k, v in self.st_.state_dict().items():
                if self.finetune == "full" or "lora_" in k:
                    state[f"enc.{k}"] = v.detach().clone()
        return state

    def _load_weights_state(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            self.proj_.weight.copy_(state["proj"])
        enc = {k[4:]: v for k, v in state.items() if k.startswith("enc.")}
        if enc and self.st_ is not None:
            missing = set(enc) - set(self.st_.state_dict())
            if missing:
                raise DataError(f"saved encoder weights do not fit the encoder: {sorted(missing)[:3]}")
            self.st_.load_state_dict(enc, strict=False)

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

    # -- features and scores -------------------------------------------------------------
    def _features(self, texts: Sequence[str], *, grad: bool, st: nn.Module | None = None) -> torch.Tensor:
        """Encoder output for ``texts`` (with gradient when ``grad`` and the encoder trains)."""
        if self.finetune == "frozen":
            return torch.from_numpy(self.frozen_.encode(list(texts))).to(self.device)
        model = st if st is not None else self.st_
        if model.training != grad:  # .train() walks every submodule; skip it when nothing changes
            model.train(grad)
        if not len(texts):
            return torch.zeros((0, self.proj_.in_features), device=self.device)
        # sort by length and cut chunks (TRAIN_CHUNK with gradient, INFERENCE_CHUNK without), so
        # each chunk pads to similar lengths; the order is restored after. Per-example outputs do
        # not depend on the chunking (no batch statistics), only the padding cost does.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        step = TRAIN_CHUNK if grad else INFERENCE_CHUNK
        # bf16 autocast is for training (and GPU routing); it casts the weights on every call, so
        # CPU routing stays fp32 (converted weights: prepare_inference)
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

    def embed(self, texts: Sequence[str], *, grad: bool = False) -> torch.Tensor:
        """Unit prompt vectors ``(n, dim)``."""
        self._build()
        with torch.set_grad_enabled(grad):
            return F.normalize(self.proj_(self._features(texts, grad=grad)), dim=-1)

    def row_vectors(self) -> torch.Tensor:
        """Unit model vectors, one per registry row."""
        return F.normalize(self.table_, dim=-1)

    def encoders(self) -> list[Any]:
        return [self.frozen_] if self.frozen_ is not None else []

    def prepare_inference(self, precision: str = "fp32", cache_dir: str | Path | None = None) -> EmbeddingRouter:
        """Convert the encoder (frozen or trained) for routing only; see :meth:`Router.prepare_inference`."""
        from hubroute.inference import convert_for_inference

        self._build()
        super().prepare_inference(precision, cache_dir)
        if self.st_ is not None:
            self.st_ = convert_for_inference(self.st_, precision, cache_dir)
        return self

    def _check_trainable(self) -> None:
        if self.inference_precision_ != "fp32":
            raise HubrouteError(
                f"this router was converted for {self.inference_precision_} inference; load it again to train it"
            )

    def scores(self, prompts: Sequence[str]) -> np.ndarray:
        self._build()
        with torch.no_grad():
            z = self.embed(prompts)
            return (z @ self.row_vectors().T / self.tau).float().cpu().numpy()

    def snapshot(self) -> Snapshot:
        """A frozen copy of the current scoring function."""
        self._build()
        return Snapshot(self)

    def trainable_parameters(self) -> dict[str, torch.Tensor]:
        """Every tensor the optimiser updates, by name (``proj``, ``table``, ``enc.*``)."""
        out: dict[str, torch.Tensor] = {"proj": self.proj_.weight, "table": self.table_}
        if self.st_ is not None:
            out.update({f"enc.{k}": p for k, p in self.st_.named_parameters() if p.requires_grad})
        return out

    def zero_grad(self) -> None:
        """Clear the gradients of every trainable tensor."""
        for p in self.trainable_parameters().values():
            p.grad = None

    # -- rows ----------------------------------------------------------------------------
    def _init_rows(self, rows: np.ndarray) -> torch.Tensor:
        """Initial vectors for ``rows`` per ``row_init`` (``prompt_mean`` starts from the card
        and is replaced once the model's training prompts are seen)."""
        if self.row_init == "random":
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(rows[0]) if len(rows) else self.seed)
            return F.normalize(torch.randn((len(rows), self.dim), generator=g), dim=-1).to(self.device)
        cards = self.registry_.cards
        return self.embed([cards[r].text or cards[r].model_id for r in rows]).detach()

    def _on_add(self, rows: np.ndarray) -> None:
        self._build()
        with torch.no_grad():
            self.table_ = nn.Parameter(torch.cat([self.table_.detach(), self._init_rows(rows)]))
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

    def _init_pending_rows(self, items: list[TrainItem]) -> None:
        """Set each pending row with training prompts to the mean of their unit vectors, the row's
        card vector (its value while pending) counting as ``card_weight`` of them."""
        by_row: dict[int, list[str]] = defaultdict(list)
        for it in items:
            r = self.registry_.row(it.example.model_id)
            if r in self.pending_rows_:
                by_row[r].append(it.example.prompt)
        if by_row:
            self.pending_rows_ -= set(self._fold_prompts(by_row))

    def _refresh_rows(self, examples: list[RoutingExample]) -> list[int]:
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

    # -- training ------------------------------------------------------------------------
    def _candidates(self, rows: torch.Tensor, active: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Gold row first, then ``n_candidates - 1`` random active rows other than the gold."""
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

    def _candidate_logits(self, z: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """``(b, K)`` scores of each prompt against its own candidate rows; only the rows that
        occur in the batch are normalised and scored (cheap backward for a large table)."""
        uniq, inverse = torch.unique(cand, return_inverse=True)
        v = F.normalize(self.table_[uniq], dim=-1)
        return (z @ v.T).gather(1, inverse) / self.tau

    def batch_loss(
        self, items: list[TrainItem], g: torch.Generator | None = None, strategy: Strategy | None = None
    ) -> tuple[torch.Tensor, Batch]:
        """Weighted cross-entropy of one batch, and the :class:`Batch` it was computed on.

        ``strategy`` may supply candidate sets and soft targets (CARvE) and item weights;
        without one the router's own ``loss`` applies with the items' own weights.
        """
        g = g or torch.Generator().manual_seed(self.seed)
        prompts = [it.example.prompt for it in items]
        rows = torch.as_tensor(self.registry_.rows(it.example.model_id for it in items), device=self.device)
        weigh = strategy.item_weight if strategy is not None else (lambda it: it.weight)
        w = torch.tensor([weigh(it) for it in items], dtype=torch.float32, device=self.device)
        active = torch.from_numpy(self.registry_.active_mask).to(self.device)
        z = self.embed(prompts, grad=True)
        given = None if strategy is None else strategy.candidates(self, items, rows, z.detach(), g)
        if given is not None:
            cand, target = given
            logits = self._candidate_logits(z, cand)
            ce = -(target * F.log_softmax(logits, dim=-1)).sum(-1)
        else:
            v = self.row_vectors()
            if self.loss == "full":
                logits = (z @ v.T / self.tau).masked_fill(~active, float("-inf"))
                target, cand = rows, None
            else:
                cand = self._candidates(rows, active, g)
                logits = self._candidate_logits(z, cand)
                target = torch.zeros(len(items), dtype=torch.long, device=self.device)
            ce = F.cross_entropy(logits, target, reduction="none")
        loss = (ce * w).sum() / w.sum()
        return loss, Batch(prompts, rows, w, z, logits, cand, active)

    def _optimizer(self) -> torch.optim.Optimizer:
        groups = [
            {"name": "proj", "params": [self.proj_.weight], "lr": self.lr_proj, "weight_decay": 0.0},
            {"name": "rows", "params": [self.table_], "lr": self.lr_rows, "weight_decay": 0.0},
        ]
        enc = [p for k, p in self.trainable_parameters().items() if k.startswith("enc.")]
        if enc:
            groups.append({"name": "encoder", "params": enc, "lr": self.lr_encoder, "weight_decay": self.weight_decay})
        return torch.optim.AdamW(groups)

    def _learn(self, experience: Experience) -> None:
        self._build()
        self._check_trainable()
        strategy = self.strategy_
        strategy.before_experience(self, experience)
        items = strategy.training_data(self, experience)
        active = self.registry_.active_mask
        items = [it for it in items if active[self.registry_.row(it.example.model_id)]]
        if self.row_refresh:
            refreshed = self._refresh_rows(experience.train)
            if refreshed:
                strategy.on_rows_set(self, refreshed)
        self._init_pending_rows(items)
        if self.epochs and items:
            self.train_items(items, strategy, tag=experience.name)
        strategy.after_experience(self, experience)
        self.n_trained_ += 1

    def default_batches(self, items: list[TrainItem], g: torch.Generator) -> list[list[int]]:
        """One epoch's batches of item indices, shuffled by ``g``.

        When the encoder trains, batches are grouped by length (each run of 16 batches is sorted
        by prompt length before it is cut), so a batch pads to similar lengths; the batch order
        is shuffled again afterwards.
        """
        order = torch.randperm(len(items), generator=g).tolist()
        bs = self.batch_size
        if self.finetune == "frozen":
            return [order[i : i + bs] for i in range(0, len(order), bs)]
        batches: list[list[int]] = []
        for i in range(0, len(order), 16 * bs):
            group = sorted(order[i : i + 16 * bs], key=lambda j: -len(items[j].example.prompt))
            batches += [group[k : k + bs] for k in range(0, len(group), bs)]
        return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]

    def train_items(self, items: list[TrainItem], strategy: Strategy | None = None, *, tag: str = "") -> None:
        """Run ``epochs`` of AdamW over ``items``, batched by the strategy with a seeded generator.

        After each step every row moves by at most the strategy's :meth:`~Strategy.row_step_scale`
        share of its update; rows of retired models do not move at all.
        """
        strategy = strategy or self.strategy_
        opt = self._optimizer()
        g = torch.Generator().manual_seed(self.seed * 7919 + self.n_trained_)
        epochs = [strategy.batches(self, items, g) for _ in range(self.epochs)]
        n_steps = sum(len(b) for b in epochs)
        active = torch.from_numpy(self.registry_.active_mask).to(self.device)
        step = 0
        for epoch, batches in enumerate(epochs):
            losses = []
            for idx in batches:
                strategy.on_step(self, step, n_steps, opt)
                scale = strategy.row_step_scale(self)
                scale = active.float() if scale is None else scale.to(self.device) * active
                before = self.table_.detach().clone() if bool((scale < 1).any()) else None
                loss, batch = self.batch_loss([items[i] for i in idx], g, strategy)
                extra = strategy.penalty(self, batch)
                total = loss if extra is None else loss + extra
                opt.zero_grad(set_to_none=True)
                total.backward()
                opt.step()
                if before is not None:
                    with torch.no_grad():
                        self.table_.copy_(before + scale[:, None] * (self.table_ - before))
                losses.append(float(total.detach()))
                step += 1
            self.history_.append(
                {"experience": tag, "epoch": epoch, "loss": float(np.mean(losses)), "steps": len(losses)}
            )
        self.zero_grad()

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

    def _load_state(self, directory: Path) -> None:
        self._build()
        path = directory / WEIGHTS_FILE
        if not path.is_file():
            raise DataError("missing weights file", path)
        state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
        strat_path = directory / STRATEGY_TENSORS
        strat = load_file(str(strat_path), device=str(self.device)) if strat_path.is_file() else {}
        self.strategy_.load_state(strat, state.get("strategy_state", {}))
        self.strategy_.prepare_load(self)
        tensors = load_file(str(path), device=str(self.device))
        table = tensors.pop("table")
        if table.shape != (len(self.registry_), self.dim):
            raise DataError(f"table of shape {tuple(table.shape)} for {len(self.registry_)} rows x {self.dim}", path)
        self._load_weights_state(tensors)
        self.table_ = nn.Parameter(table)
        self.n_trained_ = int(state["n_trained"])
        self.pending_rows_ = set(state["pending_rows"])
        if "row_mass" in state:
            self.row_mass_ = {int(r): float(m) for r, m in state["row_mass"].items()}
        else:  # saved before the mass was kept: a row set from prompts weighs as one prompt
            self.row_mass_ = {r: 1.0 for r in range(len(self.registry_)) if r not in self.pending_rows_}
        self.history_ = state["history"]

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
