"""Domain-stratified coreset selection by farthest-point sampling (CARvE's replay buffer).

:func:`domain_quotas` splits a budget over domains in proportion to their frequency, with a
floor per domain (lowered when the floors alone would exceed the budget); :func:`select_coreset`
then fills each domain's quota by farthest-point sampling of the prompts in a fixed embedding
space, taking at most ``max_per_model`` prompts of any one model.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np

from hubroute.hub import RoutingExample


def domain_quotas(counts: dict[str, int], budget: int, min_per_domain: int = 5) -> dict[str, int]:
    """How many examples to keep per domain.

    Proportional shares of ``budget`` (largest remainder), each raised to a floor of
    ``min(min_per_domain, count)`` and capped by the domain's count; the total is exactly
    ``min(budget, sum(counts))``. The budget is a hard cap (a coreset is compared with random
    replay of the same size): when the floors alone would exceed it, the floor is lowered until
    they fit, and when even one example per domain does not fit, the most frequent domains get one.
    """
    total = sum(counts.values())
    budget = min(budget, total)
    if budget <= 0:
        return dict.fromkeys(counts, 0)
    names = sorted(counts)
    lowest = min_per_domain
    while lowest > 1 and sum(min(lowest, c) for c in counts.values()) > budget:
        lowest -= 1
    floor = {d: min(lowest, counts[d]) for d in names}
    if sum(floor.values()) > budget:  # fewer slots than domains: one each for the most frequent
        first = set(sorted(names, key=lambda d: (-counts[d], d))[:budget])
        floor = {d: int(d in first) for d in names}
    share = {d: budget * counts[d] / total for d in names}
    quota = {d: min(counts[d], max(floor[d], int(share[d]))) for d in names}
    left = budget - sum(quota.values())
    if left > 0:  # hand out the rest by largest remainder, then to any domain with room
        order = sorted(names, key=lambda d: (-(share[d] - int(share[d])), d))
        order += sorted(names, key=lambda d: (-(counts[d] - quota[d]), d))
        for d in order:
            if left == 0:
                break
            if quota[d] < counts[d]:
                quota[d] += 1
                left -= 1
    elif left < 0:  # take back from the largest quotas, never below a floor
        while left < 0:
            d = max((d for d in names if quota[d] > floor[d]), key=lambda d: (quota[d], d), default=None)
            if d is None:
                break
            quota[d] -= 1
            left += 1
    return quota


def farthest_points(
    x: np.ndarray, n: int, groups: Sequence[str] | None = None, max_per_group: int | None = None
) -> list[int]:
    """Indices of up to ``n`` rows of ``x`` picked by farthest-point sampling.

    Starts from the row nearest the centroid, then repeatedly takes the row farthest (Euclidean)
    from everything picked so far. With ``groups`` (one label per row) at most ``max_per_group``
    rows of any label are picked. Deterministic for a given input.
    """
    if n <= 0 or len(x) == 0:
        return []
    x = np.asarray(x, dtype=np.float64)
    dist = np.full(len(x), np.inf)
    usable = np.ones(len(x), dtype=bool)
    labels = np.asarray(groups, dtype=object) if groups is not None else None
    used: dict[str, int] = defaultdict(int)
    picked: list[int] = []
    key = ((x - x.mean(0)) ** 2).sum(1)  # first pick: nearest the centroid
    while len(picked) < n and usable.any():
        choice = int(np.flatnonzero(usable)[np.argmin(key[usable])])
        usable[choice] = False
        picked.append(choice)
        if labels is not None and max_per_group is not None:
            used[labels[choice]] += 1
            if used[labels[choice]] >= max_per_group:
                usable &= labels != labels[choice]
        dist = np.minimum(dist, ((x - x[choice]) ** 2).sum(1))
        key = -dist
    return picked


def select_coreset(
    examples: Sequence[RoutingExample],
    budget: int,
    embed: Callable[[list[str]], np.ndarray],
    min_per_domain: int = 5,
    max_per_model: int = 3,
) -> list[RoutingExample]:
    """A domain-stratified farthest-point coreset of ``examples`` (see the module docstring).

    ``embed`` maps prompts to vectors in a fixed space. The result is in a deterministic order
    (domains sorted, picks in FPS order). A domain whose models are all at ``max_per_model``
    keeps fewer than its quota.
    """
    by_domain: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(examples):
        by_domain[e.domain].append(i)
    quotas = domain_quotas({d: len(v) for d, v in by_domain.items()}, budget, min_per_domain)
    vectors = embed([e.prompt for e in examples]) if examples else np.zeros((0, 1))
    out: list[RoutingExample] = []
    for domain in sorted(by_domain):
        members = by_domain[domain]
        models = [examples[i].model_id for i in members]
        picks = farthest_points(vectors[members], quotas[domain], models, max_per_model)
        out.extend(examples[members[j]] for j in picks)
    return out
