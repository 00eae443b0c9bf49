"""The training loop: learn one experience on a trainable router with a strategy.

:class:`Trainer` owns what training needs beyond the model: the optimiser (AdamW, one
learning rate per parameter group), the seeded batching, the loss and the strategy's hooks. The
router (a :class:`~hubroute.continual.protocol.TrainableRouter`) owns the weights and how text is
embedded and scored; the strategy decides what to train on and how (see
:mod:`hubroute.continual.base`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from hubroute import progress
from hubroute.continual.base import Strategy, TrainItem
from hubroute.hub import Experience
from hubroute.training import distributed
from hubroute.training.batching import shuffled_batches
from hubroute.training.config import TrainingConfig
from hubroute.training.losses import RoutingLoss, default_loss

if TYPE_CHECKING:
    from hubroute.routers.embedding import EmbeddingRouter


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


class Trainer:
    """Learns experiences on ``router`` with ``config`` and ``strategy`` (see the module docstring).

    ``history``: one record per epoch (experience, epoch, mean loss, steps), appended to the
    router's ``history_``.
    """

    def __init__(self, router: EmbeddingRouter, config: TrainingConfig, strategy: Strategy):
        self.router, self.config, self.strategy = router, config, strategy

    # -- one experience ------------------------------------------------------------------
    def fit(self, experience: Experience) -> None:
        """Learn ``experience``: the strategy picks the items, new rows are set from their
        prompts (and known rows refreshed when the router asks for it), then ``epochs`` of
        training, then the strategy's closing hook."""
        router, strategy = self.router, self.strategy
        strategy.before_experience(self, experience)
        items = strategy.training_data(self, experience, [TrainItem(e) for e in experience.train])
        active = router.registry_.active_mask
        items = [it for it in items if active[router.registry_.row(it.example.model_id)]]
        if router.row_refresh:
            refreshed = router.refresh_rows(experience.train)
            if refreshed:
                strategy.on_rows_set(self, refreshed)
        router.init_pending_rows([it.example for it in items])
        if self.config.epochs and items:
            self.train(items, tag=experience.name)
        strategy.after_experience(self, experience)

    # -- batches and losses --------------------------------------------------------------
    def default_batches(self, items: list[TrainItem], g: torch.Generator) -> list[list[int]]:
        """One epoch's shuffled batches; grouped by prompt length when the encoder trains, so a
        batch pads to similar lengths."""
        lengths = [len(it.example.prompt) for it in items]
        return shuffled_batches(lengths, self.config.batch_size, g, group_by_length=self.router.finetune != "frozen")

    def loss_fn(self, with_strategy: bool = True) -> RoutingLoss:
        """The strategy's loss when it has one (and ``with_strategy``), else the configured one."""
        given = self.strategy.loss(self) if with_strategy else None
        return given if given is not None else default_loss(self.config.loss, self.config.n_candidates)

    def batch_loss(
        self,
        items: list[TrainItem],
        g: torch.Generator | None = None,
        *,
        with_strategy: bool = True,
        norm: float | None = None,
    ) -> tuple[torch.Tensor, Batch]:
        """Weighted cross-entropy of one batch, and the :class:`Batch` it was computed on.

        With ``with_strategy`` the strategy's loss and item weights apply; without, the configured
        loss and the items' own weights (EWC's Fisher information uses that). ``norm`` divides
        the weighted sum instead of the batch's total weight (a shard of a larger batch).
        """
        router = self.router
        g = g or torch.Generator().manual_seed(router.seed)
        prompts = [it.example.prompt for it in items]
        rows = torch.as_tensor(router.registry_.rows(it.example.model_id for it in items), device=router.device)
        w = torch.tensor(self.item_weights(items, with_strategy), dtype=torch.float32, device=router.device)
        active = torch.from_numpy(router.registry_.active_mask).to(router.device)
        z = router.embed(prompts, grad=True)
        out = self.loss_fn(with_strategy)(router, items, z, rows, active, g)
        loss = (out.per_example * w).sum() / (w.sum() if norm is None else norm)
        return loss, Batch(prompts, rows, w, z, out.logits, out.candidates, active)

    def item_weights(self, items: list[TrainItem], with_strategy: bool = True) -> list[float]:
        """Each item's loss weight: its own, times the strategy's factor ``with_strategy``."""
        if with_strategy:
            return [it.weight * self.strategy.weight_factor(it) for it in items]
        return [it.weight for it in items]

    def optimizer(self) -> torch.optim.Optimizer:
        """AdamW over the projection (``proj``), the model table (``rows``) and the trainable
        encoder weights (``encoder``, with weight decay), one learning rate per group."""
        router, cfg = self.router, self.config
        groups = [
            {"name": "proj", "params": [router.proj_.weight], "lr": cfg.lr_proj, "weight_decay": 0.0},
            {"name": "rows", "params": [router.table_], "lr": cfg.lr_rows, "weight_decay": 0.0},
        ]
        enc = [p for k, p in router.trainable_parameters().items() if k.startswith("enc.")]
        if enc:
            groups.append({"name": "encoder", "params": enc, "lr": cfg.lr_encoder, "weight_decay": cfg.weight_decay})
        return torch.optim.AdamW(groups)

    # -- the loop ------------------------------------------------------------------------
    def train(self, items: list[TrainItem], *, tag: str = "") -> None:
        """Run ``epochs`` of AdamW over ``items``, batched by the strategy (or
        :meth:`default_batches`) with a seeded generator.

        Before each step the strategy scales the groups' learning rates; after it every row moves
        by at most the strategy's :meth:`~hubroute.continual.base.Strategy.row_step_scale` share
        of its update, and rows of retired models do not move at all.
        """
        router, strategy, cfg = self.router, self.strategy, self.config
        opt = self.optimizer()
        base = {group["name"]: group["lr"] for group in opt.param_groups}
        g = torch.Generator().manual_seed(router.seed * 7919 + router.n_trained_)
        epochs = []
        for _ in range(cfg.epochs):
            batches = strategy.batches(self, items, g)
            epochs.append(batches if batches is not None else self.default_batches(items, g))
        n_steps = sum(len(b) for b in epochs)
        active = torch.from_numpy(router.registry_.active_mask).to(router.device)
        ddp = None
        if distributed.world()[1] > 1:
            params = [p for p in router.trainable_parameters().values() if p.requires_grad]
            ddp = distributed.wrap(params, self._shard_loss)
        step = 0
        with progress.task(f"train {tag or 'items'}: {n_steps} steps", n_steps) as advance:
            for epoch, batches in enumerate(epochs):
                losses = []
                for idx in batches:
                    losses.append(self._step([items[i] for i in idx], opt, base, g, active, step, n_steps, ddp))
                    step += 1
                    advance(1)
                router.history_.append(
                    {"experience": tag, "epoch": epoch, "loss": float(np.mean(losses)), "steps": len(losses)}
                )
        del ddp
        router.zero_grad()

    def _shard_loss(self, items: list[TrainItem], g: torch.Generator) -> torch.Tensor:
        """This rank's part of one batch's loss (penalty included), scaled so that the gradient
        averaged over the ranks is the gradient of the whole batch's loss. A batch smaller than
        the world is computed whole on every rank."""
        size = distributed.world()[1]
        if len(items) < size:
            loss, batch = self.batch_loss(items, g)
            scale = 1.0
        else:
            norm = sum(self.item_weights(items))
            loss, batch = self.batch_loss(items[distributed.shard(len(items))], g, norm=norm)
            scale = float(size)
        extra = self.strategy.penalty(self, batch)
        return loss * scale if extra is None else loss * scale + extra

    def _step(
        self,
        batch_items: list[TrainItem],
        opt: torch.optim.Optimizer,
        base: dict[str, float],
        g: torch.Generator,
        active: torch.Tensor,
        step: int,
        n_steps: int,
        ddp: torch.nn.Module | None = None,
    ) -> float:
        """One optimiser step on one batch; returns its loss (penalty included). With ``ddp``
        (several processes) this rank computes its shard and the gradients are averaged."""
        router, strategy = self.router, self.strategy
        strategy.on_step(self, step, n_steps)
        scales = strategy.lr_scales(self)
        for group in opt.param_groups:
            group["lr"] = base[group["name"]] * scales.get(group["name"], 1.0)
        scale = strategy.row_step_scale(self)
        scale = active.float() if scale is None else scale.to(router.device) * active
        before = router.table_.detach().clone() if bool((scale < 1).any()) else None
        if ddp is None:
            loss, batch = self.batch_loss(batch_items, g)
            extra = strategy.penalty(self, batch)
            total = loss if extra is None else loss + extra
        else:
            total = ddp(batch_items, g)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if before is not None:
            with torch.no_grad():
                router.table_.copy_(before + scale[:, None] * (router.table_ - before))
        if ddp is not None:  # the whole batch's loss: the shards' scaled losses averaged
            return distributed.all_sum(float(total.detach())) / distributed.world()[1]
        return float(total.detach())
