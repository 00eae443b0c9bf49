"""Batches of training examples for one epoch.

:func:`shuffled_batches`: a seeded shuffle cut into batches, optionally grouped by prompt length
so a batch pads to similar lengths when the encoder trains. :func:`domain_batches`: a few domains
per batch and never two examples of one gold model (CARvE): batches drawn from a few domains make
the in-domain candidates of each example hard, and keeping a gold model at most once per batch
stops a batch from pulling one row many times in one step.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence

import numpy as np
import torch

from hubroute.errors import HubrouteError


def shuffled_batches(
    lengths: Sequence[int], batch_size: int, g: torch.Generator, *, group_by_length: bool = False
) -> list[list[int]]:
    """One epoch's batches of indices ``0..len(lengths)-1``, shuffled by ``g``.

    With ``group_by_length`` each run of 16 batches is sorted by ``lengths`` (longest first)
    before it is cut, and the batch order is shuffled again afterwards.
    """
    order = torch.randperm(len(lengths), generator=g).tolist()
    bs = batch_size
    if not group_by_length:
        return [order[i : i + bs] for i in range(0, len(order), bs)]
    batches: list[list[int]] = []
    for i in range(0, len(order), 16 * bs):
        group = sorted(order[i : i + 16 * bs], key=lambda j: -lengths[j])
        batches += [group[k : k + bs] for k in range(0, len(group), bs)]
    return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]


def domain_batches(
    domains: Sequence[str],
    models: Sequence[str],
    batch_size: int,
    domains_per_batch: int,
    rng: np.random.Generator,
) -> list[list[int]]:
    """One epoch of batches of indices into ``domains``/``models`` (one entry per example).

    Each batch draws about ``batch_size / domains_per_batch`` examples from each of
    ``domains_per_batch`` domains (picked at random, weighted by what they have left), then tops
    up from other domains; no batch holds two examples of the same model. Every index appears
    exactly once. Near the end of the epoch only a few heavily labelled models may be left, which
    cannot fill a batch without repeating one; batches of fewer than ``batch_size / 4`` examples
    are therefore not kept as steps of their own: each of their examples joins the smallest
    other batch without its model (a batch may then exceed ``batch_size`` by a few).
    """
    if batch_size < 1 or domains_per_batch < 1:
        raise HubrouteError("batch_size and domains_per_batch must be >= 1")
    if len(domains) != len(models):
        raise HubrouteError("domains and models must have one entry per example")
    by_domain: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i in rng.permutation(len(domains)).tolist():
        by_domain[domains[i]][models[i]].append(i)
    queues: dict[str, deque[int]] = {}
    for d in sorted(by_domain):  # interleave a domain's models so neighbours differ
        per_model = [by_domain[d][m] for m in sorted(by_domain[d])]
        order = rng.permutation(len(per_model)).tolist()
        q: deque[int] = deque()
        for depth in range(max(len(v) for v in per_model)):
            q.extend(per_model[j][depth] for j in order if depth < len(per_model[j]))
        queues[d] = q
    per_domain = max(1, -(-batch_size // domains_per_batch))
    batches: list[list[int]] = []
    while any(queues.values()):
        names = [d for d in sorted(queues) if queues[d]]
        left = np.array([len(queues[d]) for d in names], dtype=float)
        n_pick = min(domains_per_batch, len(names))
        picked = rng.choice(len(names), size=n_pick, replace=False, p=left / left.sum()).tolist()
        rest = [j for j in rng.permutation(len(names)).tolist() if j not in picked]
        batch: list[int] = []
        in_batch: set[str] = set()
        for rank, j in enumerate(picked + rest):
            cap = per_domain if rank < n_pick else batch_size
            _fill(queues[names[j]], models, batch, in_batch, min(cap, batch_size - len(batch)))
            if len(batch) == batch_size:
                break
        batches.append(batch)
    return _absorb_small(batches, models, max(1, batch_size // 4))


def _absorb_small(batches: list[list[int]], models: Sequence[str], min_size: int) -> list[list[int]]:
    """Move the examples of batches under ``min_size`` into the smallest other batch without
    their model; examples no batch can take stay together, still without repeats."""
    keep = [b for b in batches if len(b) >= min_size]
    small = [i for b in batches if len(b) < min_size for i in b]
    if not keep or not small:
        return batches
    held = [{models[i] for i in b} for b in keep]
    rest: list[list[int]] = []
    for i in small:
        fits = [j for j in range(len(keep)) if models[i] not in held[j]]
        if fits:
            j = min(fits, key=lambda j: len(keep[j]))
            keep[j].append(i)
            held[j].add(models[i])
            continue
        for b in rest:  # no kept batch can take it: regroup, still one example per model
            if all(models[x] != models[i] for x in b):
                b.append(i)
                break
        else:
            rest.append([i])
    return keep + rest


def _fill(queue: deque[int], models: Sequence[str], batch: list[int], in_batch: set[str], n: int) -> None:
    """Move up to ``n`` examples from ``queue`` into ``batch``, skipping models already in it
    (skipped examples keep their place at the front of the queue)."""
    skipped: list[int] = []
    taken = 0
    while queue and taken < n:
        i = queue.popleft()
        if models[i] in in_batch:
            skipped.append(i)
            continue
        batch.append(i)
        in_batch.add(models[i])
        taken += 1
    queue.extendleft(reversed(skipped))
