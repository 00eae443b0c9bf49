"""CARvE's candidate sets: the gold model plus mined hard, semantic, far and random negatives.

For each training example :class:`CandidateSampler` builds ``k`` distinct active rows, gold
first:

1. **hard** — the current router's top-scoring wrong models for the example, mined without
   gradient and cached per ``(domain, gold model)``; an entry is re-mined once it is
   ``remine_every`` steps old;
2. **semantic** — other models of the gold model's domain, then of other domains in the same
   top category (``"Computer Vision"``…);
3. **far** — models of other top categories;
4. **random** fill until the set holds ``k`` rows.

Targets are soft: ``gold_mass`` on the gold row and the rest spread evenly over candidates of the
gold's domain or family (all on the gold when there is none).

:class:`HardNegatives` is the strategy that trains with these candidate sets (CARvE's loss).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hubroute.continual.base import Strategy, TrainItem
from hubroute.continual.defaults import CARVE
from hubroute.data.taxonomy import category_of
from hubroute.errors import HubrouteError
from hubroute.hub import Experience, Registry
from hubroute.training.losses import CandidateSoftmax, RoutingLoss

if TYPE_CHECKING:
    from hubroute.continual.protocol import TrainableRouter
    from hubroute.training.trainer import Trainer


class _Shuffled:
    """The rows of one pool, read in a random order that is redrawn after each pass."""

    def __init__(self, rows: np.ndarray):
        self.rows = rows
        self.order = rows
        self.pos = len(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def next(self, m: int, rng: np.random.Generator) -> np.ndarray:
        """The next ``min(m, len(pool))`` rows (distinct)."""
        m = min(m, len(self.rows))
        if self.pos + m > len(self.order):
            self.order, self.pos = self.rows[rng.permutation(len(self.rows))], 0
        self.pos += m
        return self.order[self.pos - m : self.pos]


class _RowIndex:
    """Active rows of one registry version grouped by domain and top category."""

    def __init__(self, registry: Registry):
        cards = registry.cards
        self.version = registry.version
        self.active = np.flatnonzero(registry.active_mask)
        self.domain = [c.domain for c in cards]
        codes: dict[str, int] = {}
        self.domain_code = np.array([codes.setdefault(c.domain, len(codes)) for c in cards], dtype=np.int64)
        codes = {}
        self.family_code = np.array([codes.setdefault(c.family, len(codes)) for c in cards], dtype=np.int64)
        by_domain: dict[str, list[int]] = defaultdict(list)
        by_category: dict[str, list[int]] = defaultdict(list)
        for r in self.active:
            by_domain[cards[r].domain].append(int(r))
            by_category[category_of(cards[r].domain)].append(int(r))
        self.by_domain = {d: _Shuffled(np.array(v)) for d, v in by_domain.items()}
        self.by_category = {c: _Shuffled(np.array(v)) for c, v in by_category.items()}
        self.everything = _Shuffled(self.active)
        self._far: dict[str, _Shuffled] = {}

    def far(self, category: str) -> _Shuffled:
        """Active rows outside ``category`` (cached)."""
        if category not in self._far:
            keep = [v.rows for c, v in self.by_category.items() if c != category]
            self._far[category] = _Shuffled(np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64))
        return self._far[category]


class CandidateSampler:
    """Builds per-example candidate sets and soft targets (see the module docstring).

    ``k``: set size (capped by the number of active models); ``n_hard``, ``n_semantic``,
    ``n_far``: how many of each kind at most; ``remine_every``: steps before a cached hard-negative
    entry is mined again; ``gold_mass``: target probability of the gold model. Randomness comes
    from the generator passed to :meth:`build`. Learned state: ``hard_`` —
    ``(domain, gold row) -> (step mined, rows)``; ``n_mined_``: entries mined so far.
    """

    def __init__(
        self,
        k: int = CARVE.k,
        n_hard: int = CARVE.n_hard,
        n_semantic: int = CARVE.n_semantic,
        n_far: int = CARVE.n_far,
        remine_every: int = CARVE.remine_every,
        gold_mass: float = CARVE.gold_mass,
    ):
        if k < 2 or min(n_hard, n_semantic, n_far) < 0 or remine_every < 1 or not 0 < gold_mass <= 1:
            raise HubrouteError("candidate sets need k >= 2, counts >= 0, remine_every >= 1, 0 < gold_mass <= 1")
        self.k, self.n_hard, self.n_semantic, self.n_far = k, n_hard, n_semantic, n_far
        self.remine_every, self.gold_mass = remine_every, gold_mass
        self.hard_: dict[tuple[str, int], tuple[int, list[int]]] = {}
        self.n_mined_ = 0
        self._index: _RowIndex | None = None
        self._index_key: tuple[int, int] | None = None

    def get_params(self) -> dict[str, Any]:
        """JSON-ready constructor arguments."""
        return {
            "k": self.k,
            "n_hard": self.n_hard,
            "n_semantic": self.n_semantic,
            "n_far": self.n_far,
            "remine_every": self.remine_every,
            "gold_mass": self.gold_mass,
        }

    def index(self, registry: Registry) -> _RowIndex:
        """The row grouping for the registry as it is now (rebuilt when it changed)."""
        key = (id(registry), registry.version)
        if self._index is None or self._index_key != key:
            self._index, self._index_key = _RowIndex(registry), key
        return self._index

    def mine(
        self, keys: list[tuple[str, int]], z: torch.Tensor, table: torch.Tensor, active: np.ndarray, step: int
    ) -> None:
        """Refresh the hard negatives of every stale key from the unit prompt vectors ``z``
        scored against the unit row vectors ``table`` (no gradient)."""
        never = -self.remine_every  # a key not mined yet is stale
        stale = [i for i, key in enumerate(keys) if step - self.hard_.get(key, (never, []))[0] >= self.remine_every]
        if not stale or self.n_hard == 0:
            return
        with torch.no_grad():
            s = z[stale].float() @ table.float().T
            s[:, torch.from_numpy(~active).to(s.device)] = float("-inf")
            golds = torch.tensor([keys[i][1] for i in stale], device=s.device)
            s[torch.arange(len(stale), device=s.device), golds] = float("-inf")
            n = min(self.n_hard, int(active.sum()) - 1)
            top = torch.topk(s, max(n, 0), dim=1).indices.cpu().numpy() if n > 0 else np.zeros((len(stale), 0), int)
        for j, i in enumerate(stale):
            self.hard_[keys[i]] = (step, [int(r) for r in top[j]])
        self.n_mined_ += len(stale)

    def build(
        self,
        registry: Registry,
        domains: list[str],
        rows: np.ndarray,
        z: torch.Tensor,
        table: torch.Tensor,
        step: int,
        rng: np.random.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate rows ``(b, K)`` (gold first) and soft targets ``(b, K)`` for a batch whose
        examples have ``domains`` and gold ``rows``."""
        idx = self.index(registry)
        if len(idx.active) < 2:
            raise HubrouteError("candidate sets need at least two active models")
        k = min(self.k, len(idx.active))
        keys = [(d, int(r)) for d, r in zip(domains, rows, strict=True)]
        self.mine(keys, z, table, registry.active_mask, step)
        cand = np.array([self._one(idx, domain, gold, k, rng) for domain, gold in keys], dtype=np.int64)
        return torch.from_numpy(cand).to(z.device), torch.from_numpy(self._targets(idx, cand)).to(z.device)

    def _one(self, idx: _RowIndex, domain: str, gold: int, k: int, rng: np.random.Generator) -> list[int]:
        chosen = [gold]
        seen = {gold}

        def take(pool: _Shuffled | list[int], n: int) -> None:
            """Append up to ``n`` rows of ``pool`` not chosen yet (the next few of a shuffled pool)."""
            n = min(n, k - len(chosen))
            if n <= 0 or len(pool) == 0:
                return
            rows = pool.next(n + len(seen), rng) if isinstance(pool, _Shuffled) else pool
            for r in rows:
                r = int(r)
                if r not in seen:
                    seen.add(r)
                    chosen.append(r)
                    n -= 1
                    if n == 0:
                        return

        take(self.hard_.get((domain, gold), (0, []))[1], self.n_hard)
        gold_domain = idx.domain[gold]
        category = category_of(gold_domain)
        start = len(chosen)
        empty = _Shuffled(np.zeros(0, dtype=np.int64))
        take(idx.by_domain.get(gold_domain, empty), self.n_semantic)
        take(idx.by_category.get(category, empty), self.n_semantic - (len(chosen) - start))
        take(idx.far(category), self.n_far)
        if 2 * (k - len(chosen)) > len(idx.active):  # random fill: dense case, one pass
            take(idx.everything, k - len(chosen))
        while len(chosen) < k:  # sparse case: rejection sampling
            r = int(idx.active[rng.integers(len(idx.active))])
            if r not in seen:
                seen.add(r)
                chosen.append(r)
        return chosen

    def _targets(self, idx: _RowIndex, cand: np.ndarray) -> np.ndarray:
        """Soft targets ``(b, K)`` for candidate sets ``cand`` (gold in column 0)."""
        near = (idx.domain_code[cand[:, 1:]] == idx.domain_code[cand[:, :1]]) | (
            idx.family_code[cand[:, 1:]] == idx.family_code[cand[:, :1]]
        )
        n_near = near.sum(1, keepdims=True)
        out = np.zeros(cand.shape, dtype=np.float32)
        if self.gold_mass >= 1:
            out[:, 0] = 1.0
            return out
        out[:, 1:] = np.where(near, (1 - self.gold_mass) / np.maximum(n_near, 1), 0.0)
        out[:, 0] = np.where(n_near[:, 0] > 0, self.gold_mass, 1.0)
        return out


class HardNegatives(Strategy):
    """Train with CARvE's candidate sets and soft targets (:class:`CandidateSampler`) instead of
    the trainer's own loss. Takes the sampler's parameters; the hard-negative cache is cleared
    at the start of each experience (it was mined under the previous router).
    Learned state: ``sampler_``.
    """

    def __init__(
        self,
        k: int = CARVE.k,
        n_hard: int = CARVE.n_hard,
        n_semantic: int = CARVE.n_semantic,
        n_far: int = CARVE.n_far,
        remine_every: int = CARVE.remine_every,
        gold_mass: float = CARVE.gold_mass,
    ):
        self.sampler_ = CandidateSampler(k, n_hard, n_semantic, n_far, remine_every, gold_mass)
        self._step = 0

    def get_params(self) -> dict[str, Any]:
        return self.sampler_.get_params()

    def before_experience(self, trainer: Trainer, experience: Experience) -> None:
        self.sampler_.hard_.clear()

    def on_step(self, trainer: Trainer, step: int, n_steps: int) -> None:
        self._step = step

    def loss(self, trainer: Trainer) -> RoutingLoss:
        return CandidateSoftmax(self)

    def __call__(
        self, router: TrainableRouter, items: list[TrainItem], rows: torch.Tensor, z: torch.Tensor, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate sets and targets for one batch (a :class:`~hubroute.training.losses.CandidateSource`)."""
        rng = np.random.default_rng(int(torch.randint(2**31 - 1, (1,), generator=g)))
        return self.sampler_.build(
            router.registry_,
            [it.example.domain for it in items],
            rows.cpu().numpy(),
            z,
            router.row_vectors().detach(),
            self._step,
            rng,
        )
